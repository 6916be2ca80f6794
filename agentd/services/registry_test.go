package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// newCluster is a real one-node cluster gossiping on loopback.
func newCluster(t *testing.T, name string) *cluster.Cluster {
	t.Helper()
	c, err := cluster.New(cluster.Config{
		NodeName:     name,
		BindAddr:     "127.0.0.1",
		SecretKey:    make([]byte, 32),
		ClusterCIDR:  netip.MustParsePrefix("10.250.0.0/16"),
		NodeCIDRBits: 24,
		NodeIP:       netip.MustParseAddr("127.0.0.1"),
		Persist:      &cluster.MemPersister{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	if _, err := c.Join(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func newRegistry(t *testing.T, cidr string) (*Registry, *cluster.Cluster) {
	t.Helper()
	cl := newCluster(t, "n1")
	r, err := NewRegistry(cl, Config{ServiceCIDR: netip.MustParsePrefix(cidr)})
	if err != nil {
		t.Fatal(err)
	}
	return r, cl
}

func svcSpec(name, typ string, ports ...*herdv1.ServicePort) *herdv1.ServiceSpec {
	if len(ports) == 0 {
		ports = []*herdv1.ServicePort{{Port: 80}}
	}
	return &herdv1.ServiceSpec{Name: name, Type: typ, Selector: map[string]string{"app": name}, Ports: ports}
}

func TestApplyKeepsIdentity(t *testing.T) {
	r, _ := newRegistry(t, "10.96.0.0/24")
	s1, changed, err := r.Apply(svcSpec("web", ""))
	if err != nil || !changed {
		t.Fatalf("create: changed=%v err=%v", changed, err)
	}
	ip := netip.MustParseAddr(s1.GetStatus().GetClusterIp())
	if !netip.MustParsePrefix("10.96.0.0/24").Contains(ip) || ip == netip.MustParseAddr("10.96.0.0") || ip == netip.MustParseAddr("10.96.0.255") {
		t.Fatalf("cluster IP %s", ip)
	}
	if s1.GetStatus().GetDnsName() != "web.default.svc.cluster.local" || !s1.GetStatus().GetSynced() {
		t.Fatalf("status %v", s1.GetStatus())
	}
	// The same spec again: one change.
	s2, changed, err := r.Apply(svcSpec("web", ""))
	if err != nil || changed || s2.GetStatus().GetVersion() != s1.GetStatus().GetVersion() {
		t.Fatalf("re-apply: changed=%v err=%v version %d -> %d", changed, err, s1.GetStatus().GetVersion(), s2.GetStatus().GetVersion())
	}
	// In-place update keeps the cluster IP and uid.
	up := svcSpec("web", "", &herdv1.ServicePort{Name: "http", Port: 8080}, &herdv1.ServicePort{Name: "dns", Port: 53, Protocol: "UDP"})
	up.Selector = map[string]string{"app": "other"}
	s3, changed, err := r.Apply(up)
	if err != nil || !changed {
		t.Fatalf("update: changed=%v err=%v", changed, err)
	}
	if s3.GetStatus().GetClusterIp() != ip.String() || s3.GetUid() != s1.GetUid() || s3.GetStatus().GetVersion() <= s1.GetStatus().GetVersion() {
		t.Fatalf("update changed identity: %v -> %v", s1, s3)
	}
	// The type never changes in place.
	if _, _, err := r.Apply(svcSpec("web", "NodePort")); !errors.Is(err, ErrTypeChange) {
		t.Fatalf("type change: %v", err)
	}
	// A second service gets another address; deleting the first frees
	// nothing of the second.
	other, _, err := r.Apply(svcSpec("db", ""))
	if err != nil || other.GetStatus().GetClusterIp() == ip.String() {
		t.Fatalf("second service: %v %v", other, err)
	}
	if existed, err := r.Delete("default", "web", ""); !existed || err != nil {
		t.Fatalf("delete: %v %v", existed, err)
	}
	if existed, err := r.Delete("default", "web", ""); existed || err != nil {
		t.Fatalf("delete again: %v %v", existed, err)
	}
	if _, err := r.Get("default", "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if got := r.List(""); len(got) != 1 || got[0].GetSpec().GetName() != "db" {
		t.Fatalf("list: %v", got)
	}
}

func TestHeadlessHasNoClusterIP(t *testing.T) {
	r, _ := newRegistry(t, "10.96.0.0/24")
	s, _, err := r.Apply(svcSpec("h", "Headless"))
	if err != nil || s.GetStatus().GetClusterIp() != "" {
		t.Fatalf("headless: %v %v", s, err)
	}
}

func TestNodePorts(t *testing.T) {
	r, _ := newRegistry(t, "10.96.0.0/24")
	a, _, err := r.Apply(svcSpec("a", "NodePort", &herdv1.ServicePort{Name: "http", Port: 80}, &herdv1.ServicePort{Name: "fixed", Port: 81, NodePort: 30081}))
	if err != nil {
		t.Fatal(err)
	}
	alloc := a.GetSpec().GetPorts()[0].GetNodePort()
	if alloc < 30000 || alloc > 32767 || a.GetSpec().GetPorts()[1].GetNodePort() != 30081 {
		t.Fatalf("node ports %v", a.GetSpec().GetPorts())
	}
	// An update that renumbers the service port keeps the allocated node
	// port of the port with the same name.
	b, _, err := r.Apply(svcSpec("a", "NodePort", &herdv1.ServicePort{Name: "http", Port: 8080}, &herdv1.ServicePort{Name: "fixed", Port: 81, NodePort: 30081}))
	if err != nil || b.GetSpec().GetPorts()[0].GetNodePort() != alloc {
		t.Fatalf("update lost node port %d: %v %v", alloc, b.GetSpec().GetPorts(), err)
	}
	// Another service asking for a taken node port is refused, naming it.
	_, _, err = r.Apply(svcSpec("b", "NodePort", &herdv1.ServicePort{Port: 80, NodePort: 30081}))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("taken node port: %v", err)
	}
	// The same number over UDP is free.
	if _, _, err := r.Apply(svcSpec("c", "NodePort", &herdv1.ServicePort{Port: 80, Protocol: "UDP", NodePort: 30081})); err != nil {
		t.Fatalf("udp node port: %v", err)
	}
}

func TestAllocationExhausted(t *testing.T) {
	r, _ := newRegistry(t, "10.96.0.0/28") // 14 usable addresses
	for i := range 14 {
		if _, _, err := r.Apply(svcSpec("s"+string(rune('a'+i)), "")); err != nil {
			t.Fatalf("service %d: %v", i, err)
		}
	}
	if _, _, err := r.Apply(svcSpec("full", "")); !errors.Is(err, ErrExhausted) {
		t.Fatalf("15th service: %v", err)
	}
}

// TestReassignCollision: another node allocated the same cluster IP and
// node port at the same moment (written here as that node would have, with
// a later creation time): the later service moves, the older keeps both.
func TestReassignCollision(t *testing.T) {
	r, cl := newRegistry(t, "10.96.0.0/24")
	old, _, err := r.Apply(svcSpec("old", "NodePort"))
	if err != nil {
		t.Fatal(err)
	}
	clash := &herdv1.Service{
		Spec:      proto.Clone(old.GetSpec()).(*herdv1.ServiceSpec),
		Status:    &herdv1.ServiceStatus{ClusterIp: old.GetStatus().GetClusterIp()},
		Uid:       "later",
		CreatedAt: timestamppb.New(old.GetCreatedAt().AsTime().Add(time.Millisecond)),
	}
	clash.Spec.Name = "new"
	clash.Spec.Selector = map[string]string{"app": "new"}
	b, _ := encode(clash)
	if _, err := cl.Put(KindService, "default/new", b); err != nil {
		t.Fatal(err)
	}
	// The older keeps the addresses, so the controller leaves "new" out.
	m := newModel(slog.Default())
	touched := keySet{}
	for _, o := range cl.List(KindService) {
		m.setService(o.Key, o, true, touched)
	}
	m.resolveClaims(touched)
	if len(m.losers) != 1 || m.losers["default/new"] != "default/old" {
		t.Fatalf("left out: %v, want default/new for default/old", m.losers)
	}
	if err := r.Reassign("default/new"); err != nil {
		t.Fatal(err)
	}
	if err := r.Reassign("default/old"); err != nil {
		t.Fatal(err)
	}
	gotOld, _ := r.Get("default", "old")
	gotNew, _ := r.Get("default", "new")
	if !proto.Equal(gotOld.GetSpec(), old.GetSpec()) || gotOld.GetStatus().GetClusterIp() != old.GetStatus().GetClusterIp() {
		t.Fatalf("the older service changed: %v -> %v", old, gotOld)
	}
	if gotNew.GetStatus().GetClusterIp() == old.GetStatus().GetClusterIp() ||
		gotNew.GetSpec().GetPorts()[0].GetNodePort() == old.GetSpec().GetPorts()[0].GetNodePort() {
		t.Fatalf("the later service still collides: %v vs %v", gotNew, gotOld)
	}
	if gotNew.GetUid() != "later" {
		t.Fatalf("reassign changed the uid: %s", gotNew.GetUid())
	}
}

// gatedPersister counts saves and holds the first one until released.
type gatedPersister struct {
	cluster.MemPersister
	mu      sync.Mutex
	saves   int
	gate    chan struct{}
	started chan struct{}
}

func (p *gatedPersister) Save(b []byte) error {
	p.mu.Lock()
	p.saves++
	first := p.saves == 1 && p.gate != nil
	p.mu.Unlock()
	if first {
		close(p.started)
		<-p.gate
	}
	return p.MemPersister.Save(b)
}

// TestConcurrentApplies: applies running at once never get the same
// cluster IP or node port, fill the range exactly, share saves of the
// cluster state (a write is not serialized behind every other one's
// save), and applies of one key keep one identity.
func TestConcurrentApplies(t *testing.T) {
	const n = 30 // a /27 has 30 usable addresses
	p := &gatedPersister{}
	cl, err := cluster.New(cluster.Config{
		NodeName: "n1", BindAddr: "127.0.0.1", SecretKey: make([]byte, 32),
		ClusterCIDR: netip.MustParsePrefix("10.250.0.0/16"), NodeCIDRBits: 24,
		NodeIP: netip.MustParseAddr("127.0.0.1"), Persist: p,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Shutdown() })
	if _, err := cl.Join(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(cl, Config{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/27"), NodePortMin: 30000, NodePortMax: 30000 + n - 1})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.saves = 0
	p.gate, p.started = make(chan struct{}), make(chan struct{})
	p.mu.Unlock()

	var wg sync.WaitGroup
	got := make([]*herdv1.Service, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			got[i], _, errs[i] = r.Apply(svcSpec(fmt.Sprintf("s%02d", i), TypeNodePort))
		})
	}
	// The first save is held until every apply is in flight: all of them
	// allocated while none was in the store yet.
	<-p.started
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		r.mu.Lock()
		inFlight := len(r.pending)
		r.mu.Unlock()
		if inFlight == n || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond) // let them reach the save
	close(p.gate)
	wg.Wait()

	ips, ports := map[string]string{}, map[int32]string{}
	for i, s := range got {
		if errs[i] != nil {
			t.Fatalf("apply s%02d: %v", i, errs[i])
		}
		name := s.GetSpec().GetName()
		if o, dup := ips[s.GetStatus().GetClusterIp()]; dup {
			t.Errorf("%s and %s share cluster IP %s", name, o, s.GetStatus().GetClusterIp())
		}
		ips[s.GetStatus().GetClusterIp()] = name
		np := s.GetSpec().GetPorts()[0].GetNodePort()
		if o, dup := ports[np]; dup {
			t.Errorf("%s and %s share node port %d", name, o, np)
		}
		ports[np] = name
	}
	p.mu.Lock()
	saves := p.saves
	p.mu.Unlock()
	t.Logf("%d concurrent applies, %d saves of the cluster state", n, saves)
	if saves > n/3 {
		t.Errorf("%d applies took %d saves: writes were serialized", n, saves)
	}
	if _, _, err := r.Apply(svcSpec("full", "")); !errors.Is(err, ErrExhausted) {
		t.Errorf("apply past the range: %v, want ErrExhausted", err)
	}

	// Applies of one key at once: one uid, one cluster IP.
	if _, err := r.Delete("default", "s00", ""); err != nil {
		t.Fatal(err)
	}
	same := make([]*herdv1.Service, 8)
	for i := range same {
		wg.Go(func() {
			s, _, err := r.Apply(svcSpec("same", ""))
			if err != nil {
				t.Errorf("apply same: %v", err)
			}
			same[i] = s
		})
	}
	wg.Wait()
	for _, s := range same[1:] {
		if s.GetUid() != same[0].GetUid() || s.GetStatus().GetClusterIp() != same[0].GetStatus().GetClusterIp() {
			t.Errorf("concurrent applies of one key: uid %s ip %s, and uid %s ip %s", s.GetUid(), s.GetStatus().GetClusterIp(), same[0].GetUid(), same[0].GetStatus().GetClusterIp())
		}
	}
}
