package nft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	svcCIDR = netip.MustParsePrefix("10.96.0.0/12")
	podCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

func ep(ip string, port uint16) Endpoint { return Endpoint{IP: netip.MustParseAddr(ip), Port: port} }

func newDP(t testing.TB, ns string) *Dataplane {
	t.Helper()
	d, err := New(Config{Netns: nsPath(ns), ServiceCIDR: svcCIDR, PodCIDR: podCIDR, NodeIPs: []netip.Addr{netip.MustParseAddr(nodeIP)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// manySvcs makes n services with eps endpoints each on one TCP port.
func manySvcs(n, eps int) []Service {
	out := make([]Service, n)
	for i := range out {
		vip := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})
		p := Port{Protocol: TCP, Port: 80}
		for j := 0; j < eps; j++ {
			p.Endpoints = append(p.Endpoints, Endpoint{IP: netip.AddrFrom4([4]byte{10, 244, byte(j), byte(i % 250)}), Port: 8080})
		}
		out[i] = Service{Key: fmt.Sprintf("ns/svc%d", i), ClusterIP: vip, Ports: []Port{p}}
	}
	return out
}

func example() []Service {
	return []Service{
		{Key: "default/web", ClusterIP: netip.MustParseAddr("10.96.0.10"), Ports: []Port{
			{Protocol: TCP, Port: 80, NodePort: 30080, Endpoints: []Endpoint{ep("10.244.0.10", 8080), ep("10.244.0.11", 8080)}},
			{Protocol: UDP, Port: 53, Endpoints: []Endpoint{ep("10.244.0.10", 5353)}},
		}},
		{Key: "default/sticky", ClusterIP: netip.MustParseAddr("10.96.0.11"), SessionAffinity: true, Ports: []Port{
			{Protocol: TCP, Port: 80, Endpoints: []Endpoint{ep("10.244.0.12", 8080)}},
		}},
	}
}

func TestLayoutAndConstantRuleCount(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	d, err := New(Config{Netns: nsPath(ns), ServiceCIDR: svcCIDR, PodCIDR: podCIDR, NodeIPs: []netip.Addr{netip.MustParseAddr(nodeIP)}, Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if err := d.Sync(ctx, example()); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "herd").CombinedOutput(); err == nil {
		t.Logf("2-service example (Slots: 4):\n%s", out)
	} else {
		t.Logf("nft list: %v %s", err, out)
	}
	counts := map[int]int{}
	for _, n := range []int{0, 1, 1000} {
		if err := d.Sync(ctx, manySvcs(n, 10)); err != nil {
			t.Fatal(err)
		}
		c, err := d.RuleCount()
		if err != nil {
			t.Fatal(err)
		}
		counts[n] = c
	}
	if counts[1] != counts[1000] || counts[0] != counts[1] || counts[1] == 0 {
		t.Fatalf("rule count grows with services: %v", counts)
	}
	t.Logf("rules: %v", counts)
	// Close removes the table.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("table left behind: %v %q", err, out)
	}
}

func TestConflicts(t *testing.T) {
	requireRoot(t)
	d := newDP(t, newNS(t))
	ctx := context.Background()
	a := Service{Key: "a/a", ClusterIP: netip.MustParseAddr("10.96.0.1"), Ports: []Port{{Protocol: TCP, Port: 80, NodePort: 30000}}}
	b := Service{Key: "b/b", ClusterIP: netip.MustParseAddr("10.96.0.2"), Ports: []Port{{Protocol: TCP, Port: 80, NodePort: 30000}}}
	c := Service{Key: "c/c", ClusterIP: netip.MustParseAddr("10.96.0.1"), Ports: []Port{{Protocol: TCP, Port: 81}}}
	if err := d.Sync(ctx, []Service{a, b}); err == nil {
		t.Fatal("Sync accepted a NodePort used twice")
	}
	if err := d.Sync(ctx, []Service{a}); err != nil {
		t.Fatal(err)
	}
	if err := d.Upsert(ctx, b); err == nil {
		t.Fatal("Upsert accepted a NodePort used twice")
	}
	if err := d.Upsert(ctx, c); err == nil {
		t.Fatal("Upsert accepted a cluster IP used twice")
	}
	b.Ports[0].NodePort = 30001
	if err := d.Upsert(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := d.Upsert(ctx, Service{Key: "x/x", ClusterIP: netip.MustParseAddr("::1")}); err == nil {
		t.Fatal("accepted IPv6")
	}
	if err := d.Upsert(ctx, Service{Key: "x/x", ClusterIP: netip.MustParseAddr("192.0.2.1")}); err == nil {
		t.Fatal("accepted a cluster IP outside the service CIDR")
	}
}

// TestGrowth: Upserts past the backends map's size rebuild it transparently.
func TestGrowth(t *testing.T) {
	requireRoot(t)
	d := newDP(t, newNS(t))
	ctx := context.Background()
	// 64 endpoints: 64 backend elements per service (one per endpoint),
	// 6400 in all, past the initial 4096
	svcs := manySvcs(100, 64)
	for _, s := range svcs {
		if err := d.Upsert(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if d.capacity < d.nBackends || d.capacity <= 4096 || d.nBackends != 100*64 {
		t.Fatalf("capacity %d, elements %d", d.capacity, d.nBackends)
	}
	for _, s := range svcs[:50] {
		if err := d.Delete(ctx, s.Key); err != nil {
			t.Fatal(err)
		}
	}
	if d.nBackends != 50*64 || len(d.Services()) != 50 {
		t.Fatalf("elements %d, services %d", d.nBackends, len(d.Services()))
	}
}

func TestRefusesForeignTable(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	run(t, "ip", "netns", "exec", ns, "nft", "add table ip herd")
	if _, err := New(Config{Netns: nsPath(ns)}); err == nil {
		t.Fatal("took over a table without herd's marker")
	}
	// and left it alone
	run(t, "ip", "netns", "exec", ns, "nft", "list table ip herd")
	// A look-alike with a services chain whose rule has another comment.
	run(t, "ip", "netns", "exec", ns, "nft", "add chain ip herd services")
	run(t, "ip", "netns", "exec", ns, "nft", `add rule ip herd services accept comment "someone-else"`)
	if _, err := New(Config{Netns: nsPath(ns)}); err == nil {
		t.Fatal("took over a look-alike table")
	}
	if out := run(t, "ip", "netns", "exec", ns, "nft", "list table ip herd"); !strings.Contains(out, "someone-else") {
		t.Fatalf("the foreign table changed:\n%s", out)
	}
}

func TestTraffic(t *testing.T) {
	requireRoot(t)
	tp := newTopo(t, 3)
	d := newDP(t, tp.node)
	ctx := context.Background()
	vip := "10.96.0.10"
	web := Service{Key: "default/web", ClusterIP: netip.MustParseAddr(vip), Ports: []Port{
		{Protocol: TCP, Port: 80, NodePort: 30080, Endpoints: []Endpoint{ep(tp.podIPs[0], 8080), ep(tp.podIPs[1], 8080), ep(tp.podIPs[2], 8080)}},
		{Protocol: UDP, Port: 53, Endpoints: []Endpoint{ep(tp.podIPs[0], 5353), ep(tp.podIPs[1], 5353)}},
		{Protocol: TCP, Port: 81}, // no ready endpoint
	}}
	empty := Service{Key: "default/empty", ClusterIP: netip.MustParseAddr("10.96.0.20"), Ports: []Port{{Protocol: TCP, Port: 80}, {Protocol: UDP, Port: 53}}}
	if err := d.Sync(ctx, []Service{web, empty}); err != nil {
		t.Fatal(err)
	}

	spread := func(t *testing.T, from, addr string, want ...string) {
		t.Helper()
		seen := map[string]int{}
		for i := 0; i < 60; i++ {
			got, err := askTCP(from, addr, 2*time.Second)
			if err != nil {
				t.Fatalf("request %d to %s from %s: %v", i, addr, from, err)
			}
			seen[got]++
		}
		for _, w := range want {
			if seen[w] == 0 {
				t.Fatalf("%s never answered %s: %v", w, addr, seen)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("answers %v, want only %v", seen, want)
		}
	}
	refused := func(t *testing.T, from, addr string) {
		t.Helper()
		start := time.Now()
		_, err := askTCP(from, addr, 2*time.Second)
		el := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s from %s: want ECONNREFUSED, got %v after %v", addr, from, err, el)
		}
		if el > 100*time.Millisecond {
			t.Fatalf("%s from %s: refused after %v, want < 100ms", addr, from, el)
		}
	}

	t.Run("SpreadFromNode", func(t *testing.T) { spread(t, tp.node, vip+":80", "pod0", "pod1", "pod2") })
	t.Run("SpreadFromPod", func(t *testing.T) { spread(t, tp.pods[1], vip+":80", "pod0", "pod1", "pod2") })
	t.Run("NoEndpointsRefusedFast", func(t *testing.T) {
		refused(t, tp.node, "10.96.0.20:80")
		refused(t, tp.pods[0], "10.96.0.20:80")
		refused(t, tp.node, vip+":81") // a port of web with no ready endpoint
	})
	t.Run("UnusedPortRefused", func(t *testing.T) {
		refused(t, tp.node, vip+":9999")
		refused(t, tp.pods[2], vip+":9999")
	})
	t.Run("UDP", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 40; i++ {
			got, err := askUDP(tp.pods[2], vip+":53", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[got] = true
		}
		if !seen["pod0"] || !seen["pod1"] || len(seen) != 2 {
			t.Fatalf("UDP answers %v", seen)
		}
		// no endpoints: ICMP port unreachable -> ECONNREFUSED on the connected socket
		if _, err := askUDP(tp.pods[0], "10.96.0.20:53", time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("UDP to empty service from a pod: %v", err)
		}
		// from the node itself the rejected datagram fails the send at once
		if _, err := askUDP(tp.node, "10.96.0.20:53", time.Second); !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPERM) {
			t.Fatalf("UDP to empty service from the node: %v", err)
		}
		// unused UDP port on a VIP
		if _, err := askUDP(tp.pods[1], vip+":54", time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("UDP to unused port: %v", err)
		}
	})
	t.Run("Hairpin", func(t *testing.T) {
		// pod0 reaches itself through the VIP
		one := web
		one.Ports = []Port{{Protocol: TCP, Port: 80, Endpoints: []Endpoint{ep(tp.podIPs[0], 8080)}}}
		one.Key, one.ClusterIP = "default/self", netip.MustParseAddr("10.96.0.30")
		if err := d.Upsert(ctx, one); err != nil {
			t.Fatal(err)
		}
		spread(t, tp.pods[0], "10.96.0.30:80", "pod0")
	})
	t.Run("NodePort", func(t *testing.T) {
		spread(t, tp.ext, nodeIP+":30080", "pod0", "pod1", "pod2")
		spread(t, tp.node, nodeIP+":30080", "pod0", "pod1", "pod2")
	})
	t.Run("Affinity", func(t *testing.T) {
		sticky := web
		sticky.Key, sticky.ClusterIP, sticky.SessionAffinity = "default/sticky", netip.MustParseAddr("10.96.0.40"), true
		sticky.Ports = []Port{web.Ports[0]}
		sticky.Ports[0].NodePort = 30081
		if err := d.Upsert(ctx, sticky); err != nil {
			t.Fatal(err)
		}
		for _, from := range []string{tp.pods[0], tp.pods[1], tp.node, tp.ext} {
			addr := "10.96.0.40:80"
			if from == tp.ext {
				addr = nodeIP + ":30081"
			}
			seen := map[string]int{}
			for i := 0; i < 20; i++ {
				got, err := askTCP(from, addr, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				seen[got]++
			}
			if len(seen) != 1 {
				t.Fatalf("affinity broken from %s: %v", from, seen)
			}
		}
	})
	t.Run("UpsertChangesBackends", func(t *testing.T) {
		w := web
		w.Ports = append([]Port(nil), web.Ports...)
		w.Ports[0].Endpoints = []Endpoint{ep(tp.podIPs[2], 8080)}
		if err := d.Upsert(ctx, w); err != nil {
			t.Fatal(err)
		}
		spread(t, tp.node, vip+":80", "pod2")
		// endpoints removed entirely: refused at once
		w.Ports[0].Endpoints = nil
		if err := d.Upsert(ctx, w); err != nil {
			t.Fatal(err)
		}
		refused(t, tp.node, vip+":80")
		// a new port appears (8081 on every pod)
		w.Ports = append(w.Ports, Port{Protocol: TCP, Port: 8081, Endpoints: []Endpoint{ep(tp.podIPs[0], 8081), ep(tp.podIPs[1], 8081)}})
		if err := d.Upsert(ctx, w); err != nil {
			t.Fatal(err)
		}
		spread(t, tp.pods[2], vip+":8081", "pod0", "pod1")
		if err := d.Upsert(ctx, web); err != nil {
			t.Fatal(err)
		}
		spread(t, tp.node, vip+":80", "pod0", "pod1", "pod2")
	})
	t.Run("Delete", func(t *testing.T) {
		if err := d.Delete(ctx, "default/web"); err != nil {
			t.Fatal(err)
		}
		if got, err := askTCP(tp.node, vip+":80", 300*time.Millisecond); err == nil {
			t.Fatalf("deleted service still answers: %s", got)
		}
		if got, err := askTCP(tp.ext, nodeIP+":30080", 300*time.Millisecond); err == nil {
			t.Fatalf("deleted NodePort still answers: %s", got)
		}
		// other services untouched
		spread(t, tp.pods[0], "10.96.0.30:80", "pod0")
		if err := d.Delete(ctx, "default/nope"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SyncReplaces", func(t *testing.T) {
		only := Service{Key: "default/only", ClusterIP: netip.MustParseAddr("10.96.0.50"), Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: []Endpoint{ep(tp.podIPs[1], 8080)}}}}
		if err := d.Sync(ctx, []Service{only}); err != nil {
			t.Fatal(err)
		}
		spread(t, tp.node, "10.96.0.50:80", "pod1")
		if _, err := askTCP(tp.node, "10.96.0.30:80", 300*time.Millisecond); err == nil {
			t.Fatal("service dropped by Sync still answers")
		}
		if got := d.Services(); len(got) != 1 || got[0] != "default/only" {
			t.Fatalf("services %v", got)
		}
		// someone breaks the table behind herd's back; the next Sync repairs it
		run(t, "ip", "netns", "exec", tp.node, "nft", "flush chain ip herd services")
		refused(t, tp.node, "10.96.0.50:80")
		if err := d.Sync(ctx, []Service{only}); err != nil {
			t.Fatal(err)
		}
		spread(t, tp.node, "10.96.0.50:80", "pod1")
	})
}

// backendsOf counts the @backends elements of one port key and returns the
// @classes verdict chain of that key ("" if none), as `nft` lists it
// (google/nftables does not decode verdicts of map elements).
func backendsOf(t *testing.T, d *Dataplane, ns string, ip netip.Addr, p Protocol, port uint16) (int, string) {
	t.Helper()
	key := string(portKey(ip, p, port))
	els, err := d.conn.GetSetElements(d.sets.backends)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range els {
		if string(e.Key[:12]) == key {
			n++
		}
	}
	prefix := fmt.Sprintf("%s . %s . %d : goto ", ip, p, port)
	for _, f := range strings.FieldsFunc(run(t, "ip", "netns", "exec", ns, "nft", "list", "map", "ip", "herd", "classes"), func(r rune) bool { return r == '{' || r == ',' || r == '}' || r == '\n' }) {
		if c, ok := strings.CutPrefix(strings.TrimSpace(f), prefix); ok {
			return n, c
		}
	}
	return n, ""
}

// TestExactSlots: a port gets one backend slot per endpoint (at most
// Slots), its @classes element picks the matching slot chain, and new
// connections spread evenly over the endpoints.
func TestExactSlots(t *testing.T) {
	requireRoot(t)
	tp := newTopo(t, 3)
	d := newDP(t, tp.node)
	ctx := context.Background()
	three := Service{Key: "default/three", ClusterIP: netip.MustParseAddr("10.96.0.10"), Ports: []Port{
		{Protocol: TCP, Port: 80, NodePort: 30080, Endpoints: []Endpoint{ep(tp.podIPs[0], 8080), ep(tp.podIPs[1], 8080), ep(tp.podIPs[2], 8080)}},
	}}
	many := Service{Key: "default/many", ClusterIP: netip.MustParseAddr("10.96.0.11"), Ports: []Port{{Protocol: TCP, Port: 80}}}
	for i := 0; i < 100; i++ {
		many.Ports[0].Endpoints = append(many.Ports[0].Endpoints, ep(fmt.Sprintf("10.244.1.%d", i), 8080))
	}
	if err := d.Sync(ctx, []Service{three, many}); err != nil {
		t.Fatal(err)
	}
	slots := d.cfg.Slots
	check := func(ip netip.Addr, port uint16, want int) {
		t.Helper()
		n, chain := backendsOf(t, d, tp.node, ip, TCP, port)
		if n != want || chain != slotChain(want) {
			t.Fatalf("%s:%d: %d backends, class %q; want %d, %q", ip, port, n, chain, want, slotChain(want))
		}
	}
	check(three.ClusterIP, 80, 3)
	check(nodePortAddr, 30080, 3)
	check(many.ClusterIP, 80, slots)
	if d.nBackends != 3+3+slots {
		t.Fatalf("%d backend elements, want %d", d.nBackends, 3+3+slots)
	}

	const conns = 300
	seen := map[string]int{}
	for i := 0; i < conns; i++ {
		got, err := askTCP(tp.node, "10.96.0.10:80", 2*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		seen[got]++
	}
	t.Logf("%d connections over 3 endpoints: %v", conns, seen)
	for _, name := range []string{"pod0", "pod1", "pod2"} {
		if seen[name] < conns*15/100 {
			t.Fatalf("%s got %d of %d connections: %v", name, seen[name], conns, seen)
		}
	}

	// Upsert: 3 -> 2 -> 1 -> 0 -> 3 endpoints moves the port between slot
	// chains and leaves no stale slot behind.
	for _, n := range []int{2, 1, 0, 3} {
		s := clone(three)
		s.Ports[0].Endpoints = s.Ports[0].Endpoints[:n]
		if err := d.Upsert(ctx, s); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if got, chain := backendsOf(t, d, tp.node, three.ClusterIP, TCP, 80); got != 0 || chain != "" {
				t.Fatalf("no endpoints: %d backends, class %q", got, chain)
			}
			if _, err := askTCP(tp.node, "10.96.0.10:80", 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("no endpoints: want ECONNREFUSED, got %v", err)
			}
			continue
		}
		check(three.ClusterIP, 80, n)
		check(nodePortAddr, 30080, n)
		seen := map[string]bool{}
		for i := 0; i < 30; i++ {
			got, err := askTCP(tp.ext, nodeIP+":30080", 2*time.Second)
			if err != nil {
				t.Fatalf("%d endpoints, request %d: %v", n, i, err)
			}
			seen[got] = true
		}
		if len(seen) != n {
			t.Fatalf("%d endpoints: answers %v", n, seen)
		}
	}
}

// TestReopenOwnTable: a restarted agentd takes its own table back (the
// marker is found) and keeps serving what it held until it syncs.
func TestReopenOwnTable(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	cfg := Config{Netns: nsPath(ns), ServiceCIDR: svcCIDR, PodCIDR: podCIDR, NodeIPs: []netip.Addr{netip.MustParseAddr(nodeIP)}}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(context.Background(), example()); err != nil {
		t.Fatal(err)
	}
	d.release() // as a process exit would: the table stays
	d2, err := New(cfg)
	if err != nil {
		t.Fatalf("reopen herd's own table: %v\n%s", err, run(t, "ip", "netns", "exec", ns, "nft", "list table ip herd"))
	}
	t.Cleanup(func() { _ = d2.Close() })
}

// setContents is every set and map of `table ip herd` in ns, each element
// as its JSON text, sorted: two tables with equal contents compare equal
// whatever order the kernel lists them in.
func setContents(t *testing.T, ns string) map[string][]string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "ip", "herd").Output()
	if err != nil {
		t.Fatalf("nft list: %v", err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, obj := range doc.Nftables {
		for _, kind := range []string{"set", "map"} {
			raw, ok := obj[kind]
			if !ok {
				continue
			}
			var s struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			}
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			var el []string
			for _, e := range s.Elem {
				el = append(el, string(e))
			}
			sort.Strings(el)
			got[s.Name] = el
		}
	}
	return got
}

// TestApplyBatch: one Apply of several changes — a service deleted while
// another takes over its cluster IP and node port, a shared endpoint
// (hairpin pair) leaving one service and staying in another, a new
// service — leaves exactly the table a full Sync of the result builds.
// A batch that takes an address held outside it is refused whole.
func TestApplyBatch(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	nsA, nsB := newNS(t), newNS(t)
	a, b := newDP(t, nsA), newDP(t, nsB)
	if err := a.Sync(ctx, example()); err != nil {
		t.Fatal(err)
	}
	moved := Service{Key: "default/moved", ClusterIP: netip.MustParseAddr("10.96.0.10"), Ports: []Port{
		{Protocol: TCP, Port: 80, NodePort: 30080, Endpoints: []Endpoint{ep("10.244.0.12", 8080)}},
	}}
	sticky := Service{Key: "default/sticky", ClusterIP: netip.MustParseAddr("10.96.0.11"), SessionAffinity: true, Ports: []Port{
		{Protocol: TCP, Port: 80, Endpoints: []Endpoint{ep("10.244.0.12", 8080), ep("10.244.0.13", 8080)}},
	}}
	fresh := Service{Key: "other/new", ClusterIP: netip.MustParseAddr("10.96.0.12"), Ports: []Port{
		{Protocol: UDP, Port: 53, Endpoints: []Endpoint{ep("10.244.0.10", 5353)}},
	}}
	if err := a.Apply(ctx, []Service{moved, sticky, fresh}, []string{"default/web", "default/unknown"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx, []Service{moved, sticky, fresh}); err != nil {
		t.Fatal(err)
	}
	got, want := setContents(t, nsA), setContents(t, nsB)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the batch:\n%v\nfull sync of the same services:\n%v", got, want)
	}
	if keys := a.Services(); !reflect.DeepEqual(keys, []string{"default/moved", "default/sticky", "other/new"}) {
		t.Fatalf("services %v", keys)
	}

	// other/new's address is held outside this batch: nothing changes.
	thief := Service{Key: "default/thief", ClusterIP: netip.MustParseAddr("10.96.0.12")}
	if err := a.Apply(ctx, []Service{thief}, []string{"default/moved"}); err == nil || !strings.Contains(err.Error(), "share cluster IP") {
		t.Fatalf("a batch taking a held cluster IP: %v", err)
	}
	if got := setContents(t, nsA); !reflect.DeepEqual(got, want) {
		t.Fatalf("a refused batch changed the table:\n%v", got)
	}
	if err := a.Apply(ctx, []Service{moved}, []string{"default/moved"}); err == nil {
		t.Fatal("a service both upserted and deleted in one batch was accepted")
	}
}

// TestRefDiff: shared elements change by their counts, and counts only
// when setCounts is called (a refused batch leaves them as they were).
func TestRefDiff(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	counts := map[netip.Addr]int{a: 1, b: 2}
	after, del, add := refDiff(counts, []netip.Addr{a, b}, []netip.Addr{b, c})
	if !reflect.DeepEqual(del, []netip.Addr{a}) || !reflect.DeepEqual(add, []netip.Addr{c}) {
		t.Fatalf("del %v add %v, want [a] [c]", del, add)
	}
	if !reflect.DeepEqual(counts, map[netip.Addr]int{a: 1, b: 2}) {
		t.Fatalf("refDiff changed the counts: %v", counts)
	}
	setCounts(counts, after)
	if !reflect.DeepEqual(counts, map[netip.Addr]int{b: 2, c: 1}) {
		t.Fatalf("counts %v, want b:2 c:1", counts)
	}
}
