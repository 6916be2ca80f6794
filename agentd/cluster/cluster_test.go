package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	testKey     = bytes.Repeat([]byte{0x42}, 32)
	testCluster = netip.MustParsePrefix("10.244.0.0/16")
)

// fastTune shortens memberlist's timings so failures are detected in about
// a second, while leaving headroom for a loaded machine under -race.
func fastTune(mc *memberlist.Config) {
	mc.ProbeInterval = 300 * time.Millisecond
	mc.ProbeTimeout = 200 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 2
	mc.GossipInterval = 20 * time.Millisecond
	mc.GossipNodes = 3
	mc.PushPullInterval = time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.GossipToTheDeadTime = 2 * time.Second
	mc.DeadNodeReclaimTime = 500 * time.Millisecond
}

func testLogger() *slog.Logger {
	if os.Getenv("HERD_CLUSTER_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type nodeOpt func(*Config)

func withPersist(p Persister) nodeOpt { return func(c *Config) { c.Persist = p } }
func withPort(port int) nodeOpt       { return func(c *Config) { c.BindPort = port } }
func withKey(k []byte) nodeOpt        { return func(c *Config) { c.SecretKey = k } }
func withTune(f func(*memberlist.Config)) nodeOpt {
	return func(c *Config) {
		c.Tune = func(mc *memberlist.Config) { fastTune(mc); f(mc) }
	}
}

var nodeIPs = map[string]string{}
var nodeIPsMu sync.Mutex

func newNode(t *testing.T, name string, opts ...nodeOpt) *Cluster {
	t.Helper()
	nodeIPsMu.Lock()
	ip, ok := nodeIPs[name]
	if !ok {
		ip = fmt.Sprintf("192.0.2.%d", len(nodeIPs)+1)
		nodeIPs[name] = ip
	}
	nodeIPsMu.Unlock()
	cfg := Config{
		NodeName:     name,
		BindAddr:     "127.0.0.1",
		SecretKey:    testKey,
		ClusterCIDR:  testCluster,
		NodeCIDRBits: 24,
		NodeIP:       netip.MustParseAddr(ip),
		Persist:      &MemPersister{},
		Logger:       testLogger(),
		Tune:         fastTune,
		Identity:     testIdentity(t, name),
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

func join(t *testing.T, c *Cluster, to ...*Cluster) {
	t.Helper()
	var addrs []string
	for _, o := range to {
		addrs = append(addrs, o.Addr().String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Join(ctx, addrs); err != nil {
		t.Fatalf("%s: Join: %v", c.Name(), err)
	}
}

// eventually polls cond until it returns "" or the timeout passes. cond is
// asked at least once, and once more after the timeout: a test descheduled
// for longer than the timeout (a loaded machine) still sees a condition
// that holds.
func eventually(t *testing.T, timeout time.Duration, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		why := cond()
		if why == "" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, why)
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func liveNames(c *Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		if m.State == StateAlive {
			out = append(out, m.Name)
		}
	}
	return out
}

func cluster3(t *testing.T) (a, b, c *Cluster) {
	t.Helper()
	a, b, c = newNode(t, "a"), newNode(t, "b"), newNode(t, "c")
	join(t, a)
	join(t, b, a)
	join(t, c, a)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	return a, b, c
}

func waitMembers(t *testing.T, want []string, cs ...*Cluster) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		for _, c := range cs {
			if got := liveNames(c); !slices.Equal(got, want) {
				return fmt.Sprintf("%s sees %v, want %v", c.Name(), got, want)
			}
		}
		return ""
	})
}

func TestThreeNodesAgreeOnMembersAndPodCIDRs(t *testing.T) {
	a, b, c := cluster3(t)
	nodes := []*Cluster{a, b, c}
	eventually(t, 20*time.Second, func() string {
		ref := a.Members()
		for _, n := range nodes {
			ms := n.Members()
			if !reflect.DeepEqual(ms, ref) {
				return fmt.Sprintf("%s: %v != a: %v", n.Name(), ms, ref)
			}
		}
		seen := map[netip.Prefix]string{}
		for _, m := range ref {
			if !m.PodCIDR.IsValid() || m.PodCIDR.Bits() != 24 || !testCluster.Contains(m.PodCIDR.Addr()) {
				return fmt.Sprintf("%s: pod CIDR %v not a /24 in %v", m.Name, m.PodCIDR, testCluster)
			}
			for p, o := range seen {
				if p.Overlaps(m.PodCIDR) {
					return fmt.Sprintf("%s and %s overlap: %v", m.Name, o, p)
				}
			}
			seen[m.PodCIDR] = m.Name
			if m.NodeIP.String() != nodeIPs[m.Name] {
				return fmt.Sprintf("%s: node IP %v", m.Name, m.NodeIP)
			}
			if !m.Addr.Addr().IsLoopback() || m.Addr.Port() == 0 {
				return fmt.Sprintf("%s: addr %v", m.Name, m.Addr)
			}
		}
		return ""
	})
	for _, n := range nodes {
		if p := n.PodCIDR(); p != memberOf(a, n.Name()).PodCIDR {
			t.Errorf("%s: PodCIDR() %v, a sees %v", n.Name(), p, memberOf(a, n.Name()).PodCIDR)
		}
	}
}

func memberOf(c *Cluster, name string) Member {
	for _, m := range c.Members() {
		if m.Name == name {
			return m
		}
	}
	return Member{}
}

func TestPodCIDRStableAcrossRestart(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	bp := &MemPersister{}
	if err := b.Shutdown(); err != nil {
		t.Fatalf("shutting down b: %v", err)
	}
	b = newNode(t, "b", withPersist(bp))
	join(t, a)
	join(t, b, a)
	waitMembers(t, []string{"a", "b"}, a, b)
	if _, err := a.Put("service", "kept", []byte("across restarts")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, objectEverywhere("service", "kept", []byte("across restarts"), b))
	bCIDR, port := b.PodCIDR(), int(b.Addr().Port())
	if !bCIDR.IsValid() || bCIDR == a.PodCIDR() {
		t.Fatalf("b's pod CIDR %v (a has %v)", bCIDR, a.PodCIDR())
	}
	leave(t, b, a)

	// A new node while b is away must not take b's recorded claim.
	c := newNode(t, "c")
	join(t, c, a)
	if p := c.PodCIDR(); p == bCIDR || p == a.PodCIDR() || !p.IsValid() {
		t.Fatalf("c claimed %v; a has %v, b had %v", p, a.PodCIDR(), bCIDR)
	}

	b2 := newNode(t, "b", withPersist(bp), withPort(port))
	if p := b2.PodCIDR(); p != bCIDR {
		t.Fatalf("restarted b: PodCIDR before join %v, want persisted %v", p, bCIDR)
	}
	if o, ok := b2.Get("service", "kept"); !ok || string(o.Value) != "across restarts" {
		t.Fatalf("restarted b lost its objects: %+v %v", o, ok)
	}
	join(t, b2, a)
	waitMembers(t, []string{"a", "b", "c"}, a, b2, c)
	eventually(t, 10*time.Second, func() string {
		if p := memberOf(c, "b").PodCIDR; p != bCIDR {
			return fmt.Sprintf("c sees b with %v", p)
		}
		return ""
	})
	if p := b2.PodCIDR(); p != bCIDR {
		t.Fatalf("restarted b re-picked %v, want %v", p, bCIDR)
	}
}

// collidingName returns a name after base whose founding claim starts at
// the same block as base's (names spread founding claims; a collision
// needs two names that hash alike).
func collidingName(base string) string {
	probe := &Cluster{cfg: Config{ClusterCIDR: testCluster, NodeCIDRBits: 24}}
	probe.name = base
	want := probe.firstBlock(nil)
	for i := 0; ; i++ {
		probe.name = fmt.Sprintf("%s-%d", base, i)
		if probe.firstBlock(nil) == want {
			return probe.name
		}
	}
}

func TestPodCIDRRaceLowerNameKeeps(t *testing.T) {
	// Two nodes bootstrap alone and claim the same block; then the
	// lower-named one joins the other. n1 keeps it, the other re-picks the
	// lowest free block.
	p2 := &MemPersister{}
	name2 := collidingName("n1")
	n2 := newNode(t, name2, withPersist(p2))
	n1 := newNode(t, "n1")
	join(t, n2)
	join(t, n1)
	first := n1.PodCIDR()
	if !first.IsValid() || n2.PodCIDR() != first {
		t.Fatalf("bootstrap claims %v %v, want both the same", n1.PodCIDR(), n2.PodCIDR())
	}
	want := netip.MustParsePrefix("10.244.0.0/24")
	if first == want {
		want = netip.MustParsePrefix("10.244.1.0/24")
	}
	events := n2.Subscribe()
	join(t, n1, n2)
	eventually(t, 20*time.Second, func() string {
		if n1.PodCIDR() != first || n2.PodCIDR() == first {
			return fmt.Sprintf("n1 %v, n2 %v", n1.PodCIDR(), n2.PodCIDR())
		}
		for _, n := range []*Cluster{n1, n2} {
			if m1, m2 := memberOf(n, "n1").PodCIDR, memberOf(n, name2).PodCIDR; m1 != n1.PodCIDR() || m2 != n2.PodCIDR() {
				return fmt.Sprintf("%s sees n1 %v %s %v", n.Name(), m1, name2, m2)
			}
		}
		return ""
	})
	if n2.PodCIDR() != want {
		t.Errorf("%s re-picked %v, want %v", name2, n2.PodCIDR(), want)
	}
	waitEvent(t, events, Event{Type: EventMember, Node: name2})
	b, _ := p2.Load()
	if !bytes.Contains(b, []byte(`"pod_cidr":"`+want.String()+`"`)) {
		t.Errorf("%s's new claim not persisted: %s", name2, b)
	}
}

// TestFoundersSpreadClaims: nodes that each found a cluster claim blocks
// picked by name, not all the first one.
func TestFoundersSpreadClaims(t *testing.T) {
	seen := map[netip.Prefix]bool{}
	for _, name := range []string{"node-1", "node-2", "node-3", "node-4"} {
		n := newNode(t, name)
		join(t, n)
		seen[n.PodCIDR()] = true
	}
	if len(seen) < 3 {
		t.Fatalf("four founders share blocks: %v", seen)
	}
}

func waitEvent(t *testing.T, ch <-chan Event, want Event) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed waiting for %+v", want)
			}
			if e == want {
				return
			}
		case <-timeout:
			t.Fatalf("no event %+v", want)
		}
	}
}

func objectEverywhere(kind, key string, want []byte, cs ...*Cluster) func() string {
	return func() string {
		for _, c := range cs {
			o, ok := c.Get(kind, key)
			if want == nil && ok {
				return fmt.Sprintf("%s still has %s/%s", c.Name(), kind, key)
			}
			if want != nil && (!ok || !bytes.Equal(o.Value, want)) {
				return fmt.Sprintf("%s: %s/%s = %q %v, want %q", c.Name(), kind, key, o.Value, ok, want)
			}
		}
		return ""
	}
}

func TestObjectsReplicateAndLateJoinerCatchesUp(t *testing.T) {
	a, b, c := cluster3(t)
	sub := c.Subscribe()
	v, err := a.Put("service", "default/web", []byte("v1"))
	if err != nil || v == 0 {
		t.Fatalf("Put: %d %v", v, err)
	}
	eventually(t, 10*time.Second, objectEverywhere("service", "default/web", []byte("v1"), a, b, c))
	waitEvent(t, sub, Event{Type: EventObject, Kind: "service", Key: "default/web"})
	if o, _ := c.Get("service", "default/web"); o.Version != v || o.Writer != "a" {
		t.Errorf("c has %+v, want version %d by a", o, v)
	}
	if _, err := b.Put("service", "default/db", []byte("db")); err != nil {
		t.Fatal(err)
	}
	// a big object goes over TCP rather than UDP gossip
	big := bytes.Repeat([]byte("x"), 20000)
	if _, err := c.Put("service", "default/big", big); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, objectEverywhere("service", "default/big", big, a, b, c))

	// The late joiner gets everything through its join's push/pull, without
	// a new Put. Slow periodic push/pull on it proves that.
	d := newNode(t, "d", withTune(func(mc *memberlist.Config) { mc.PushPullInterval = time.Hour }))
	join(t, d, b)
	eventually(t, 5*time.Second, func() string {
		if got := d.List("service"); len(got) != 3 {
			return fmt.Sprintf("d lists %d services", len(got))
		}
		return ""
	})
	eventually(t, 1*time.Second, objectEverywhere("service", "default/web", []byte("v1"), d))

	if err := b.Delete("service", "default/web"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, objectEverywhere("service", "default/web", nil, a, b, c, d))
	if got := a.List("service"); len(got) != 2 {
		t.Errorf("a lists %v", got)
	}
	// An old write arriving late must not resurrect the deleted object.
	a.handle(signEnv(t, envelope{Objects: []wireObject{{Kind: "service", Key: "default/web", Value: []byte("v1"), Version: v, Writer: "a"}}}))
	if _, ok := a.Get("service", "default/web"); ok {
		t.Error("stale write resurrected a deleted object")
	}
}

func TestConcurrentPutsConverge(t *testing.T) {
	a, b, c := cluster3(t)
	var wg sync.WaitGroup
	for _, n := range []*Cluster{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, err := n.Put("service", "x", fmt.Appendf(nil, "%s-%d", n.Name(), i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, func() string {
		ref, _ := a.Get("service", "x")
		for _, n := range []*Cluster{b, c} {
			o, _ := n.Get("service", "x")
			if !bytes.Equal(o.Value, ref.Value) || o.Version != ref.Version || o.Writer != ref.Writer {
				return fmt.Sprintf("a has %q v%d/%s, %s has %q v%d/%s", ref.Value, ref.Version, ref.Writer, n.Name(), o.Value, o.Version, o.Writer)
			}
		}
		return ""
	})
	// Equal versions are ordered by writer name.
	w1 := wireObject{Kind: "k", Key: "k", Version: 7, Writer: "a", Value: []byte("1")}
	w2 := wireObject{Kind: "k", Key: "k", Version: 7, Writer: "b", Value: []byte("2")}
	if !newer(&w2, &w1) || newer(&w1, &w2) {
		t.Error("tie not broken by writer")
	}
}

func TestEntriesVanishWhenOwnerDies(t *testing.T) {
	a, b, c := cluster3(t)
	for _, n := range []*Cluster{a, b, c} {
		if err := n.PublishLocal("endpoint", "web/"+n.Name(), []byte(n.Name())); err != nil {
			t.Fatal(err)
		}
	}
	all := func(want int, cs ...*Cluster) func() string {
		return func() string {
			for _, n := range cs {
				if got := n.Entries("endpoint"); len(got) != want {
					return fmt.Sprintf("%s has %d entries: %v", n.Name(), len(got), got)
				}
			}
			return ""
		}
	}
	eventually(t, 10*time.Second, all(3, a, b, c))
	if e := a.Entries("endpoint")[2]; e.Owner != "c" || e.Key != "web/c" || string(e.Value) != "c" {
		t.Errorf("a's entry from c: %+v", e)
	}
	if e, ok := a.Entry("c", "endpoint", "web/c"); !ok || string(e.Value) != "c" || e.Owner != "c" {
		t.Errorf("a.Entry(c, web/c) = %+v, %v", e, ok)
	}
	if err := b.WithdrawLocal("endpoint", "web/b"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, all(2, a, b, c))
	if _, ok := a.Entry("b", "endpoint", "web/b"); ok {
		t.Error("a.Entry reads a withdrawn entry")
	}

	sub := a.Subscribe()
	if err := c.Shutdown(); err != nil { // no Leave: the others must declare it dead
		t.Fatalf("shutting down c: %v", err)
	}
	took := eventually(t, 5*time.Second, all(1, a, b))
	t.Logf("entries of a dead node gone after %v", took)
	if _, ok := a.Entry("c", "endpoint", "web/c"); ok {
		t.Error("a.Entry reads a dead node's entry")
	}
	waitEvent(t, sub, Event{Type: EventEntry, Kind: "endpoint", Key: "web/c", Node: "c"})
	eventually(t, 5*time.Second, func() string {
		if st := memberOf(a, "c").State; st != StateDead {
			return "a sees c " + string(st)
		}
		return ""
	})
	// Late gossip from the dead node's earlier life is ignored.
	a.handle(signEnv(t, envelope{Entries: []wireEntry{{Owner: "c", Epoch: c.epoch, Seq: 99, Kind: "endpoint", Key: "web/c2", Value: []byte("x")}}}))
	if got := a.Entries("endpoint"); len(got) != 1 {
		t.Errorf("dead node's entry came back: %v", got)
	}
}

func TestWrongKeyOrPlaintextCannotJoin(t *testing.T) {
	a := newNode(t, "a")
	join(t, a)
	wrong := newNode(t, "intruder", withKey(bytes.Repeat([]byte{1}, 32)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if n, err := wrong.Join(ctx, []string{a.Addr().String()}); err == nil {
		t.Errorf("join with the wrong key succeeded (%d)", n)
	}

	mc := memberlist.DefaultLocalConfig()
	mc.Name = "plain"
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.LogOutput = io.Discard
	plain, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = plain.Shutdown() }()
	if n, err := plain.Join([]string{a.Addr().String()}); err == nil {
		t.Errorf("plaintext join succeeded (%d)", n)
	}
	time.Sleep(time.Second)
	if got := liveNames(a); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a's members: %v", got)
	}
	if n := plain.NumMembers(); n != 1 {
		t.Errorf("plaintext node sees %d members", n)
	}
	if _, err := New(Config{NodeName: "x", BindAddr: "127.0.0.1", SecretKey: []byte("short"), ClusterCIDR: testCluster, NodeCIDRBits: 24, Persist: &MemPersister{}}); err == nil {
		t.Error("New accepted a short key")
	}
}

func TestVersionsShowLaggingMember(t *testing.T) {
	a, b, c := cluster3(t)
	v1, err := a.Put("service", "web", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	allAt := func(v uint64) func() string {
		return func() string {
			got := a.Versions("service", "web")
			want := map[string]uint64{"a": v, "b": v, "c": v}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Sprintf("versions %v, want %v", got, want)
			}
			return ""
		}
	}
	eventually(t, 10*time.Second, allAt(v1))

	c.drop.Store(true) // c stops applying what it hears
	v2, err := a.Put("service", "web", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	lag := func() string {
		got := a.Versions("service", "web")
		want := map[string]uint64{"a": v2, "b": v2, "c": v1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("versions %v, want %v", got, want)
		}
		return ""
	}
	eventually(t, 10*time.Second, lag)
	time.Sleep(2 * time.Second) // several push/pull rounds: still lagging
	if why := lag(); why != "" {
		t.Fatal(why)
	}
	if o, _ := c.Get("service", "web"); string(o.Value) != "1" {
		t.Fatalf("c has %q", o.Value)
	}

	c.drop.Store(false) // anti-entropy catches c up without a new Put
	eventually(t, 15*time.Second, allAt(v2))
	eventually(t, time.Second, objectEverywhere("service", "web", []byte("2"), a, b, c))
}

func TestTombstonesCollected(t *testing.T) {
	tune := withTune(func(*memberlist.Config) {})
	ttl := func(c *Config) { c.TombstoneTTL = 500 * time.Millisecond }
	a, b := newNode(t, "a", tune, ttl), newNode(t, "b", tune, ttl)
	join(t, a)
	join(t, b, a)
	if _, err := a.Put("service", "s", []byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, objectEverywhere("service", "s", []byte("x"), a, b))
	if err := a.Delete("service", "s"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, objectEverywhere("service", "s", nil, a, b))
	eventually(t, 10*time.Second, func() string {
		for _, n := range []*Cluster{a, b} {
			n.mu.Lock()
			_, ok := n.objects[objKey("service", "s")]
			n.mu.Unlock()
			if ok {
				return n.Name() + " still holds the tombstone"
			}
		}
		return ""
	})
}

func TestSubscribeCoalescesAndCloses(t *testing.T) {
	a := newNode(t, "a")
	join(t, a)
	ch := a.Subscribe()
	for i := range 100 {
		if _, err := a.Put("service", "hot", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	n := 0
	for len(ch) > 0 {
		<-ch
		n++
	}
	if n == 0 || n > 66 {
		t.Errorf("got %d events for 100 writes to one key", n)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatalf("shutting down a: %v", err)
	}
	for range ch {
	}
	if _, err := a.Put("service", "x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Shutdown: %v", err)
	}
}

func TestBlocks(t *testing.T) {
	c := &Cluster{cfg: Config{ClusterCIDR: netip.MustParsePrefix("fd00:10::/112"), NodeCIDRBits: 120}, objects: map[string]*objRec{}, nodes: map[string]*nodeInfo{}}
	if p, _ := c.block(3); p.String() != "fd00:10::300/120" {
		t.Errorf("block 3: %v", p)
	}
	c.cfg = Config{ClusterCIDR: netip.MustParsePrefix("10.0.0.0/23"), NodeCIDRBits: 24}
	taken := map[string]netip.Prefix{"x": netip.MustParsePrefix("10.0.0.0/24")}
	if p, err := c.pickLocked(0, taken); err != nil || p.String() != "10.0.1.0/24" {
		t.Errorf("pick: %v %v", p, err)
	}
	taken["y"] = netip.MustParsePrefix("10.0.1.0/24")
	if p, err := c.pickLocked(1, taken); err == nil {
		t.Errorf("pick from a full cluster CIDR: %v", p)
	}
	if c.blockOK(netip.MustParsePrefix("10.0.2.0/24")) || !c.blockOK(netip.MustParsePrefix("10.0.1.0/24")) {
		t.Error("blockOK")
	}
}

// leave makes n leave the cluster and shut down, and waits until observer
// sees it as left.
func leave(t *testing.T, n, observer *Cluster) {
	t.Helper()
	if err := n.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("shutting down %s: %v", n.Name(), err)
	}
	eventually(t, 10*time.Second, func() string {
		if st := memberOf(observer, n.Name()).State; st != StateLeft {
			return fmt.Sprintf("%s sees %s %v", observer.Name(), n.Name(), st)
		}
		return ""
	})
}

// TestLocalStateStaysUnderMemberlistLimit: with more relayed entries than
// memberlist takes in one push/pull (20 MiB), the state still carries every
// object and all of this node's own entries, and relays other members'
// entries only up to its budget — whole owners, never a part of one.
func TestLocalStateStaysUnderMemberlistLimit(t *testing.T) {
	a := newNode(t, "a")
	for i := range 100 {
		if err := a.PublishLocal("endpoint", fmt.Sprintf("own-%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Put("service", "default/web", []byte("svc")); err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("v"), 150)
	fp, sig := bytes.Repeat([]byte("f"), fpLen), bytes.Repeat([]byte("s"), 72) // an ECDSA P-256 signature's size
	a.mu.Lock()
	for o := range 6 {
		owner := fmt.Sprintf("peer-%d", o)
		os := &ownerState{epoch: 1, entries: map[string]*entRec{}}
		for i := range 10000 { // 6 x 10k signed endpoints of ~400 bytes: about 24 MB
			os.entries[objKey("endpoint", fmt.Sprintf("p%d", i))] = &entRec{seq: uint64(i + 1), value: value, fp: fp, sig: sig}
		}
		a.owners[owner] = os
		a.nodes[owner] = &nodeInfo{state: StateAlive}
	}
	a.mu.Unlock()
	b := a.localState()
	if len(b) >= 20<<20 {
		t.Fatalf("state of %d bytes: memberlist refuses over 20 MiB", len(b))
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	perOwner := map[string]int{}
	for _, e := range env.Entries {
		perOwner[e.Owner]++
	}
	if perOwner["a"] != 100 || len(env.Objects) != 1 {
		t.Fatalf("own entries %d (want 100), objects %d (want 1)", perOwner["a"], len(env.Objects))
	}
	relayed := 0
	for o, n := range perOwner {
		if o != "a" && n != 10000 {
			t.Fatalf("%s relayed in part: %d of 10000 entries", o, n)
		}
		if o != "a" {
			relayed++
		}
	}
	if relayed == 0 || relayed == 6 {
		t.Fatalf("%d of 6 owners relayed: want some, within the budget", relayed)
	}
	t.Logf("state %d bytes, %d owners relayed", len(b), relayed)
}

// TestEntriesOfAMemberAnnouncedLate: gossip may bring a member's entries
// before memberlist announces the member; they are not listed until it is,
// and then an event per entry says they appeared.
func TestEntriesOfAMemberAnnouncedLate(t *testing.T) {
	a := newNode(t, "a")
	a.handle(signEnv(t, envelope{Entries: []wireEntry{{Owner: "z", Epoch: 7, Seq: 1, Kind: "endpoint", Key: "web-z", Value: []byte("z")}}}))
	if _, ok := a.Entry("z", "endpoint", "web-z"); ok {
		t.Fatal("an entry of a member not announced yet is listed")
	}
	sub := a.Subscribe()
	defer a.Unsubscribe(sub)
	meta, _ := json.Marshal(nodeMeta{Epoch: 7})
	a.nodeEvent(&memberlist.Node{Name: "z", Addr: net.ParseIP("127.0.0.9"), Port: 7946, Meta: meta}, true, false)
	waitEvent(t, sub, Event{Type: EventEntry, Kind: "endpoint", Key: "web-z", Node: "z"})
	if e, ok := a.Entry("z", "endpoint", "web-z"); !ok || string(e.Value) != "z" {
		t.Fatalf("after the announcement: %+v, %v", e, ok)
	}
}
