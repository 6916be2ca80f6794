package services

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/dns"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// memStore is a cluster store held in maps; the test tells the controller
// about each change as the cluster would (Controller.note).
type memStore struct {
	svcs    map[string]cluster.Object
	entries map[epKey][]byte
	dead    map[string]bool
}

func newMemStore() *memStore {
	return &memStore{svcs: map[string]cluster.Object{}, entries: map[epKey][]byte{}, dead: map[string]bool{}}
}

func (s *memStore) Name() string { return "n1" }
func (s *memStore) Get(kind, key string) (cluster.Object, bool) {
	o, ok := s.svcs[key]
	return o, ok && kind == KindService
}
func (s *memStore) List(kind string) []cluster.Object {
	var out []cluster.Object
	for _, k := range sortedKeys(s.svcs) {
		out = append(out, s.svcs[k])
	}
	return out
}
func (s *memStore) Put(string, string, []byte) (uint64, error)     { return 0, fmt.Errorf("read only") }
func (s *memStore) Delete(string, string) error                    { return fmt.Errorf("read only") }
func (s *memStore) Versions(string, string) map[string]uint64      { return nil }
func (s *memStore) Subscribe() <-chan cluster.Event                { return nil }
func (s *memStore) Unsubscribe(<-chan cluster.Event)               {}
func (s *memStore) EntrySeq(string, string, string) (uint64, bool) { return 0, false }
func (s *memStore) Entry(owner, kind, key string) (cluster.Entry, bool) {
	v, ok := s.entries[epKey{owner, key}]
	if !ok || s.dead[owner] || kind != KindEndpoint {
		return cluster.Entry{}, false
	}
	return cluster.Entry{Owner: owner, Kind: kind, Key: key, Value: v}, true
}
func (s *memStore) Entries(kind string) []cluster.Entry {
	var out []cluster.Entry
	for k, v := range s.entries {
		if !s.dead[k.owner] {
			out = append(out, cluster.Entry{Owner: k.owner, Kind: kind, Key: k.pod, Value: v})
		}
	}
	return out
}

// memPlane applies Sync and Apply to a map, refusing what the kernel would.
type memPlane struct {
	t     *testing.T
	rules map[string]nft.Service
	syncs int
}

func (p *memPlane) Sync(_ context.Context, svcs []nft.Service) error {
	p.syncs++
	p.rules = map[string]nft.Service{}
	for _, s := range svcs {
		p.rules[s.Key] = s
	}
	return nil
}

func (p *memPlane) Apply(_ context.Context, upserts []nft.Service, deletes []string) error {
	seen := map[string]bool{}
	for _, k := range deletes {
		if _, ok := p.rules[k]; !ok || seen[k] {
			p.t.Errorf("delete of %s: not in the rules, or twice", k)
		}
		seen[k] = true
		delete(p.rules, k)
	}
	for _, s := range upserts {
		if seen[s.Key] {
			p.t.Errorf("%s twice in one batch", s.Key)
		}
		seen[s.Key] = true
		if old, ok := p.rules[s.Key]; ok && reflect.DeepEqual(old, s) {
			p.t.Errorf("upsert of %s without a change", s.Key)
		}
		p.rules[s.Key] = s
	}
	return nil
}

// revGate admits, per deployment label value, one revision (none set:
// every revision).
type revGate struct{ serving map[string]string }

func (g *revGate) Admit(l map[string]string) bool {
	want, ok := g.serving[l["dep"]]
	return !ok || l["rev"] == want
}

func (g *revGate) Affected(ev cluster.Event) map[string]string {
	if ev.Kind != "gate" {
		return nil
	}
	return map[string]string{"dep": ev.Key}
}

// reference computes both read models from scratch: every service against
// every endpoint, collisions settled oldest first. It is what the
// controller did on every event before it was incremental.
func reference(st *memStore, admit func(map[string]string) bool) (map[string]nft.Service, map[string]dns.Service) {
	var eps []endpoint
	for _, e := range st.Entries(KindEndpoint) {
		var ep endpoint
		if json.Unmarshal(e.Value, &ep) == nil {
			ep.node = e.Owner
			eps = append(eps, ep)
		}
	}
	type aged struct {
		key string
		svc *herdv1.Service
	}
	var svcs []aged
	for _, o := range st.List(KindService) {
		if s, err := decode(o); err == nil {
			svcs = append(svcs, aged{o.Key, s})
		}
	}
	sort.SliceStable(svcs, func(i, j int) bool { return older(svcs[i].svc, svcs[j].svc) })
	want, table := map[string]nft.Service{}, map[string]dns.Service{}
	held := map[claimKey]bool{}
	for _, a := range svcs {
		var sel []endpoint
		for _, e := range eps {
			epNS := e.Namespace
			if epNS == "" {
				epNS = "default"
			}
			sameNS := epNS == a.svc.GetSpec().GetNamespace()
			if sameNS && len(a.svc.GetSpec().GetSelector()) > 0 && matches(e.Labels, a.svc.GetSpec().GetSelector()) && (admit == nil || admit(e.Labels)) {
				sel = append(sel, e)
			}
		}
		sortEndpoints(sel)
		cs := claimsOf(a.svc)
		lost := false
		for _, c := range cs {
			lost = lost || held[c]
		}
		if lost {
			continue
		}
		for _, c := range cs {
			held[c] = true
		}
		if ns, ok := nftService(a.key, a.svc, sel); ok {
			want[a.key] = ns
		}
		table[a.key] = dnsService(a.svc, sel)
	}
	return want, table
}

// TestIncrementalMatchesReference: after any sequence of changes — services
// put and deleted (with colliding addresses and node ports), endpoints
// published, changed and withdrawn, owners dying and coming back, a gate
// changing its mind — the controller's rules, what it wrote to the data
// plane, and its DNS table equal the from-scratch computation; each batch
// of changes is one Apply, each service in it once.
func TestIncrementalMatchesReference(t *testing.T) {
	for seed := range uint64(24) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { checkAgainstReference(t, seed) })
	}
}

func checkAgainstReference(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	st := newMemStore()
	dp := &memPlane{t: t}
	gate := &revGate{serving: map[string]string{}}
	c := NewController(st, dp, slog.New(slog.DiscardHandler))
	c.Gate = gate
	ctx := context.Background()
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	labels := func() map[string]string {
		l := map[string]string{}
		for _, k := range []string{"app", "tier", "dep", "rev"} {
			if r.IntN(3) > 0 {
				l[k] = pick("a", "b", "c")
			}
		}
		return l
	}
	owners := []string{"n1", "n2", "n3"}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var version uint64
	c.pass(ctx, passFull)
	for step := range 300 {
		for range 1 + r.IntN(4) {
			switch op := r.IntN(20); {
			case op < 6: // put a service
				// Services of two namespaces, with the same names and
				// selectors, must select only pods of their own.
				ns := pick("default", "ns")
				key := fmt.Sprintf("%s/s%d", ns, r.IntN(25))
				sel := labels()
				delete(sel, "rev")
				if r.IntN(4) == 0 {
					sel = nil
				}
				svc := &herdv1.Service{
					Spec: &herdv1.ServiceSpec{Namespace: ns, Name: key[len(ns)+1:], Type: pick(TypeClusterIP, TypeNodePort, TypeHeadless), Selector: sel,
						SessionAffinity: pick("", "ClientIP"),
						Ports:           []*herdv1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, TargetPortName: pick("", "http"), TargetPort: 8080}}},
					Status:    &herdv1.ServiceStatus{},
					CreatedAt: timestamppb.New(base.Add(time.Duration(r.IntN(4)) * time.Second)),
					Uid:       fmt.Sprintf("u%d", r.IntN(1000)),
				}
				if svc.Spec.Type != TypeHeadless {
					svc.Status.ClusterIp = fmt.Sprintf("10.96.0.%d", 1+r.IntN(12))
				}
				if svc.Spec.Type == TypeNodePort {
					svc.Spec.Ports[0].NodePort = int32(30000 + r.IntN(6))
				}
				if r.IntN(3) == 0 {
					svc.Spec.Ports = append(svc.Spec.Ports, &herdv1.ServicePort{Name: "dns", Protocol: "UDP", Port: 53})
				}
				b, err := encode(svc)
				if err != nil {
					t.Fatal(err)
				}
				version++
				st.svcs[key] = cluster.Object{Kind: KindService, Key: key, Value: b, Version: version, Writer: pick(owners...)}
				c.note(cluster.Event{Type: cluster.EventObject, Kind: KindService, Key: key})
			case op < 8: // delete a service
				key := fmt.Sprintf("%s/s%d", pick("default", "ns"), r.IntN(25))
				delete(st.svcs, key)
				c.note(cluster.Event{Type: cluster.EventObject, Kind: KindService, Key: key})
			case op < 14: // publish an endpoint
				k := epKey{pick(owners...), fmt.Sprintf("p%d", r.IntN(40))}
				// "": an older agentd's entry, in the default namespace
				e := endpoint{Pod: k.pod, IP: fmt.Sprintf("10.244.0.%d", 1+r.IntN(30)), Ready: r.IntN(4) > 0, Labels: labels(), Namespace: pick("", "default", "ns")}
				if r.IntN(2) == 0 {
					e.Ports = []endpointPort{{Name: "http", Port: int32(8000 + r.IntN(3)), Protocol: "TCP"}}
				}
				b, _ := json.Marshal(e)
				st.entries[k] = b
				if !st.dead[k.owner] {
					c.note(cluster.Event{Type: cluster.EventEntry, Kind: KindEndpoint, Key: k.pod, Node: k.owner})
				}
			case op < 16: // withdraw one
				k := epKey{pick(owners...), fmt.Sprintf("p%d", r.IntN(40))}
				delete(st.entries, k)
				c.note(cluster.Event{Type: cluster.EventEntry, Kind: KindEndpoint, Key: k.pod, Node: k.owner})
			case op < 17: // an owner dies or comes back: an event per entry
				o := pick(owners...)
				st.dead[o] = !st.dead[o]
				for k := range st.entries {
					if k.owner == o {
						c.note(cluster.Event{Type: cluster.EventEntry, Kind: KindEndpoint, Key: k.pod, Node: o})
					}
				}
				c.note(cluster.Event{Type: cluster.EventMember, Node: o})
			case op < 19: // the gate changes its mind about a deployment
				d := pick("a", "b", "c")
				if r.IntN(3) == 0 {
					delete(gate.serving, d)
				} else {
					gate.serving[d] = pick("a", "b", "c")
				}
				c.note(cluster.Event{Type: cluster.EventObject, Kind: "gate", Key: d})
			default: // an event that names nothing
				c.note(cluster.Event{Type: cluster.EventEntry})
			}
		}
		kind := passChanges
		if r.IntN(25) == 0 {
			kind = passFull
		}
		c.pass(ctx, kind)
		want, table := reference(st, gate.Admit)
		if !reflect.DeepEqual(c.want, want) {
			t.Fatalf("step %d: rules\n%v\nwant\n%v", step, c.want, want)
		}
		if !reflect.DeepEqual(dp.rules, want) {
			t.Fatalf("step %d: data plane holds\n%v\nwant\n%v", step, dp.rules, want)
		}
		c.dnsMu.RLock()
		got := c.dnsTable
		c.dnsMu.RUnlock()
		if len(got) != len(table) {
			t.Fatalf("step %d: DNS table has %d services, want %d", step, len(got), len(table))
		}
		for k, d := range table {
			if g, ok := got[k]; !ok || !reflect.DeepEqual(g, d) {
				t.Fatalf("step %d: DNS %s = %+v, want %+v", step, k, g, d)
			}
		}
	}
	if t.Failed() {
		return
	}
	// The model's indexes hold nothing stale.
	for p, set := range c.m.epsByLabel {
		for k := range set {
			e := c.m.eps[k]
			if e == nil || p != pair(namespaceKey, e.e.Labels[namespaceKey]) && p != pair("app", e.e.Labels["app"]) && p != pair("tier", e.e.Labels["tier"]) && p != pair("dep", e.e.Labels["dep"]) && p != pair("rev", e.e.Labels["rev"]) {
				t.Fatalf("endpoint index %q holds %v", p, k)
			}
		}
	}
}
