package services

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// fakeEvents is a cluster view the test changes by hand: one service and
// endpoint entries with sequence numbers. Changes emit no event unless the
// test sends one.
type fakeEvents struct {
	mu      sync.Mutex
	svc     []byte
	entries map[string]fakeEntry // by owner "/" pod
	ch      chan cluster.Event
}

type fakeEntry struct {
	owner, pod string
	seq        uint64
	ep         endpoint
}

func (f *fakeEvents) Name() string                              { return "n1" }
func (f *fakeEvents) Get(string, string) (cluster.Object, bool) { return cluster.Object{}, false }
func (f *fakeEvents) Put(string, string, []byte) (uint64, error) {
	return 0, errors.New("read only")
}
func (f *fakeEvents) Delete(string, string) error               { return errors.New("read only") }
func (f *fakeEvents) Versions(string, string) map[string]uint64 { return nil }
func (f *fakeEvents) Subscribe() <-chan cluster.Event           { return f.ch }
func (f *fakeEvents) Unsubscribe(<-chan cluster.Event)          {}

// event says something changed, not what (the controller reads everything).
func (f *fakeEvents) event() { f.ch <- cluster.Event{Type: cluster.EventEntry} }
func (f *fakeEvents) setEntry(owner, pod string, seq uint64, ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries[owner+"/"+pod] = fakeEntry{owner, pod, seq, endpoint{Pod: pod, IP: "10.244.1.2", Ready: ready, Labels: map[string]string{"app": "web"}}}
}

func (f *fakeEvents) List(kind string) []cluster.Object {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind != KindService {
		return nil
	}
	return []cluster.Object{{Kind: KindService, Key: "default/web", Value: f.svc, Version: 1, Writer: "n1"}}
}

func (f *fakeEvents) Entries(kind string) []cluster.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Entry
	for _, e := range f.entries {
		b, _ := json.Marshal(e.ep)
		out = append(out, cluster.Entry{Owner: e.owner, Kind: kind, Key: e.pod, Value: b})
	}
	return out
}

func (f *fakeEvents) Entry(owner, kind, key string) (cluster.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[owner+"/"+key]
	if !ok || kind != KindEndpoint {
		return cluster.Entry{}, false
	}
	b, _ := json.Marshal(e.ep)
	return cluster.Entry{Owner: owner, Kind: kind, Key: key, Value: b}, true
}

func (f *fakeEvents) EntrySeq(owner, kind, key string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[owner+"/"+key]
	return e.seq, ok && kind == KindEndpoint
}

// gatedPlane is a data plane whose writes wait for the test: each write
// reports what it was given on calls and then waits for release.
type gatedPlane struct {
	calls   chan nft.Service
	release chan error
	mu      sync.Mutex
	last    nft.Service // what the rules are now
}

func (g *gatedPlane) write(s nft.Service) error {
	g.calls <- s
	if err := <-g.release; err != nil {
		return err
	}
	g.mu.Lock()
	g.last = s
	g.mu.Unlock()
	return nil
}

func (g *gatedPlane) Sync(_ context.Context, svcs []nft.Service) error {
	var s nft.Service
	if len(svcs) > 0 {
		s = svcs[0]
	}
	return g.write(s)
}
func (g *gatedPlane) Apply(_ context.Context, upserts []nft.Service, _ []string) error {
	var s nft.Service
	if len(upserts) > 0 {
		s = upserts[0]
	}
	return g.write(s)
}

func (g *gatedPlane) endpoints() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, p := range g.last.Ports {
		n += len(p.Endpoints)
	}
	return n
}

func endpointsIn(s nft.Service) int {
	n := 0
	for _, p := range s.Ports {
		n += len(p.Endpoints)
	}
	return n
}

// TestWaitApplied: WaitApplied returns only once a pass that began after
// the store held the awaited change has written the rules: not when the
// store gets it, not at the end of a pass already under way, not after a
// failed write; and false when the change never arrives.
func TestWaitApplied(t *testing.T) {
	svc := &herdv1.Service{
		Spec:   &herdv1.ServiceSpec{Namespace: "default", Name: "web", Type: TypeClusterIP, Selector: map[string]string{"app": "web"}, Ports: []*herdv1.ServicePort{{Protocol: "TCP", Port: 80}}},
		Status: &herdv1.ServiceStatus{ClusterIp: "10.96.0.10"},
	}
	b, err := encode(svc)
	if err != nil {
		t.Fatal(err)
	}
	ev := &fakeEvents{svc: b, entries: map[string]fakeEntry{}, ch: make(chan cluster.Event)}
	ev.setEntry("n2", "a", 5, true)
	dp := &gatedPlane{calls: make(chan nft.Service), release: make(chan error)}
	c := NewController(ev, dp, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)

	step := func(what string, wantEndpoints int, err error) {
		t.Helper()
		select {
		case s := <-dp.calls:
			if got := endpointsIn(s); got != wantEndpoints {
				t.Fatalf("%s: writing %d endpoints, want %d", what, got, wantEndpoints)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no write", what)
		}
		dp.release <- err
	}
	step("first full sync", 1, nil)
	<-c.Synced()

	// A pass under way (started by a change of the service) read the
	// entry before the store held seq 6.
	ev.mu.Lock()
	svc.Spec.Ports = append(svc.Spec.Ports, &herdv1.ServicePort{Protocol: "TCP", Port: 81})
	ev.svc, _ = encode(svc)
	ev.mu.Unlock()
	go ev.event()
	var s nft.Service
	select {
	case s = <-dp.calls:
	case <-time.After(20 * time.Second):
		t.Fatal("no write for the service change")
	}
	ev.setEntry("n2", "a", 6, false)
	res := make(chan bool, 1)
	go func() { res <- c.WaitApplied(ctx, "n2", "a", 6) }()
	if endpointsIn(s) != 2 {
		t.Fatalf("the pass under way writes %d endpoints, want 2 (its view predates seq 6)", endpointsIn(s))
	}
	dp.release <- nil // that pass completes with the old view
	// WaitApplied kicks a pass of its own (no event is sent): its first
	// write fails, so it must not count.
	step("kicked pass", 0, errors.New("nft says no"))
	select {
	case <-res:
		t.Fatal("WaitApplied returned before a pass that saw seq 6 wrote the rules")
	default:
	}
	go ev.event() // the next event retries with a full sync
	step("full sync after the failure", 0, nil)
	select {
	case ok := <-res:
		if !ok {
			t.Fatal("WaitApplied = false")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WaitApplied did not return after the rules were written")
	}
	if n := dp.endpoints(); n != 0 {
		t.Fatalf("rules hold %d endpoints when WaitApplied returned", n)
	}

	// Already applied: a later call returns after one more pass.
	go func() { res <- c.WaitApplied(ctx, "n2", "a", 6) }()
	select {
	case ok := <-res:
		if !ok {
			t.Fatal("second WaitApplied = false")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("second WaitApplied did not return")
	}

	// A change the store never gets: false once ctx ends.
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	defer stop()
	if c.WaitApplied(short, "n2", "a", 7) {
		t.Fatal("WaitApplied = true for a seq the store never held")
	}
	if c.WaitApplied(short, "n3", "b", 1) {
		t.Fatal("WaitApplied = true for an unknown entry")
	}
}
