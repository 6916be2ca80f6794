//go:build linux

package podnet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI plugins not installed in /usr/lib/cni")
	}
}

// newNode creates a "node" network namespace owned by the test, with lo up.
func newNode(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node")
	if err := createNetns(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeNetns(path) })
	if err := withNetlink(path, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

func newPodNet(t *testing.T, node, cidr string) *PodNet {
	t.Helper()
	if node == "" {
		t.Fatal("tests must never use the test process's own netns")
	}
	p, err := New(Config{
		PodCIDR:   netip.MustParsePrefix(cidr),
		StateDir:  t.TempDir(),
		HostNetns: node,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		uids, _ := p.List()
		for _, u := range uids {
			_ = p.Teardown(context.Background(), u)
		}
	})
	return p
}

// listen opens a TCP listener inside the netns at path.
func listen(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(path, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// dial connects from inside the netns at path.
func dial(path, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(path, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	})
	return c, err
}

// serveRemoteAddr answers each connection with the client's address as seen
// by the server.
func serveRemoteAddr(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

func seenAs(t *testing.T, from, addr string) string {
	t.Helper()
	c, err := dial(from, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return line[:len(line)-1]
}

func links(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	if err := withNetlink(path, func(h *netlink.Handle) error {
		ls, err := h.LinkList()
		for _, l := range ls {
			names = append(names, l.Attrs().Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func checkPodNetns(t *testing.T, p *PodNet, res Result) {
	t.Helper()
	if !isNetnsMount(res.NetnsPath) {
		t.Fatalf("%s is not a mounted netns", res.NetnsPath)
	}
	if !p.cfg.PodCIDR.Contains(res.IP) || res.IP == res.Gateway {
		t.Fatalf("IP %v not a pod address in %v", res.IP, p.cfg.PodCIDR)
	}
	if want := p.cfg.PodCIDR.Addr().Next(); res.Gateway != want {
		t.Fatalf("gateway %v, want %v", res.Gateway, want)
	}
	if err := withNetlink(res.NetnsPath, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("lo is down")
		}
		eth, err := h.LinkByName(IfName)
		if err != nil {
			return err
		}
		if eth.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("eth0 is down")
		}
		addrs, err := h.AddrList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if x, _ := netip.AddrFromSlice(a.IP); x.Unmap() == res.IP {
				ones, _ := a.Mask.Size()
				if ones != p.cfg.PodCIDR.Bits() {
					return fmt.Errorf("eth0 prefix /%d", ones)
				}
				return nil
			}
		}
		return fmt.Errorf("eth0 lacks %v: %v", res.IP, addrs)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestSameNodePodToPod(t *testing.T) {
	requireRoot(t)
	node := newNode(t)
	p := newPodNet(t, node, "10.244.1.0/24")
	ctx := context.Background()

	t0 := time.Now()
	a, err := p.Setup(ctx, "pod-a", "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first Setup (creates bridge): %v", time.Since(t0))
	t0 = time.Now()
	b, err := p.Setup(ctx, "pod-b", "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second Setup: %v", time.Since(t0))
	checkPodNetns(t, p, a)
	checkPodNetns(t, p, b)
	if a.IP == b.IP {
		t.Fatalf("both pods got %v", a.IP)
	}
	if a.NetnsPath != p.NetnsPath("pod-a") {
		t.Fatalf("netns path %s", a.NetnsPath)
	}

	ln := listen(t, a.NetnsPath, netip.AddrPortFrom(a.IP, 8080).String())
	serveRemoteAddr(ln)
	if got := seenAs(t, b.NetnsPath, netip.AddrPortFrom(a.IP, 8080).String()); got != b.IP.String() {
		t.Fatalf("server saw %s, want %s", got, b.IP)
	}
	// Pod to its gateway's node netns works too (the node can reach pods).
	lnNode := listen(t, node, netip.AddrPortFrom(a.Gateway, 9090).String())
	serveRemoteAddr(lnNode)
	if got := seenAs(t, a.NetnsPath, netip.AddrPortFrom(a.Gateway, 9090).String()); got != a.IP.String() {
		t.Fatalf("node saw %s, want %s", got, a.IP)
	}

	t0 = time.Now()
	if err := p.Teardown(ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	t.Logf("Teardown: %v", time.Since(t0))
	if _, err := os.Stat(a.NetnsPath); !os.IsNotExist(err) {
		t.Fatalf("netns file still there: %v", err)
	}
	if ip := p.ipamLookup(NetnsPrefix + "pod-a"); ip.IsValid() {
		t.Fatalf("IP %v still reserved", ip)
	}
	uids, err := p.List()
	if err != nil || !slices.Equal(uids, []string{"pod-b"}) {
		t.Fatalf("List = %v, %v", uids, err)
	}
}

func TestSetupIdempotent(t *testing.T) {
	requireRoot(t)
	p := newPodNet(t, newNode(t), "10.244.3.0/24")
	ctx := context.Background()
	r1, err := p.Setup(ctx, "u1", "one")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r2, err := p.Setup(ctx, "u1", "one")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("repeat Setup (no-op): %v", time.Since(t0))
	if r1 != r2 {
		t.Fatalf("repeat Setup: %+v != %+v", r2, r1)
	}
	// Another pod in between so a fresh allocation would get another IP.
	if _, err := p.Setup(ctx, "u2", "two"); err != nil {
		t.Fatal(err)
	}
	// Crash after IPAM but before the netns survived: drop the netns behind
	// podnet's back; the marker, the CNI cache and the reservation remain.
	if err := removeNetns(r1.NetnsPath); err != nil {
		t.Fatal(err)
	}
	r3, err := p.Setup(ctx, "u1", "one")
	if err != nil {
		t.Fatal(err)
	}
	if r3.IP != r1.IP {
		t.Fatalf("retry after crash got %v, want %v", r3.IP, r1.IP)
	}
	checkPodNetns(t, p, r3)
	// Crash with only the IPAM reservation left (no marker, no cache).
	if err := os.Remove(p.markerPath("u1")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(p.cfg.StateDir, "cache")); err != nil {
		t.Fatal(err)
	}
	r4, err := p.Setup(ctx, "u1", "one")
	if err != nil {
		t.Fatal(err)
	}
	if r4.IP != r1.IP {
		t.Fatalf("retry with only IPAM state got %v, want %v", r4.IP, r1.IP)
	}
	checkPodNetns(t, p, r4)
}

func TestConcurrentSetup(t *testing.T) {
	requireRoot(t)
	p := newPodNet(t, newNode(t), "10.244.4.0/24")
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	res := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two callers per uid: the same pod set up twice at once.
			res[i], errs[i] = p.Setup(ctx, fmt.Sprintf("c%d", i/2), "c")
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		uid := fmt.Sprintf("c%d", i/2)
		if o, ok := seen[res[i].IP]; ok && o != uid {
			t.Fatalf("%v given to %s and %s", res[i].IP, o, uid)
		}
		seen[res[i].IP] = uid
	}
	if len(seen) != n/2 {
		t.Fatalf("want %d distinct IPs, got %v", n/2, seen)
	}
}

func TestTeardownReleasesIPAndExhaustion(t *testing.T) {
	requireRoot(t)
	node := newNode(t)
	// A /30 has exactly one pod address besides the gateway.
	p := newPodNet(t, node, "10.244.9.0/30")
	ctx := context.Background()
	a, err := p.Setup(ctx, "only", "only")
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("10.244.9.2"); a.IP != want {
		t.Fatalf("got %v want %v", a.IP, want)
	}
	before := links(t, node)
	cacheBefore, _ := os.ReadDir(filepath.Join(p.cfg.StateDir, "cache", "results"))

	if _, err := p.Setup(ctx, "second", "second"); err == nil {
		t.Fatal("Setup in an exhausted CIDR succeeded")
	} else {
		t.Logf("exhausted: %v", err)
	}
	// Nothing left behind.
	if _, err := os.Stat(p.NetnsPath("second")); !os.IsNotExist(err) {
		t.Fatalf("netns file left: %v", err)
	}
	if _, err := os.Stat(p.markerPath("second")); !os.IsNotExist(err) {
		t.Fatalf("marker left: %v", err)
	}
	if after := links(t, node); !slices.Equal(before, after) {
		t.Fatalf("links changed: %v -> %v", before, after)
	}
	cacheAfter, _ := os.ReadDir(filepath.Join(p.cfg.StateDir, "cache", "results"))
	if len(cacheAfter) != len(cacheBefore) {
		t.Fatalf("CNI cache entries %d -> %d", len(cacheBefore), len(cacheAfter))
	}
	if ip := p.ipamLookup(NetnsPrefix + "second"); ip.IsValid() {
		t.Fatalf("failed pod holds %v", ip)
	}
	if uids, _ := p.List(); !slices.Equal(uids, []string{"only"}) {
		t.Fatalf("List = %v", uids)
	}

	// Teardown releases the only IP: the next pod gets it.
	if err := p.Teardown(ctx, "only"); err != nil {
		t.Fatal(err)
	}
	if err := p.Teardown(ctx, "only"); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	b, err := p.Setup(ctx, "second", "second")
	if err != nil {
		t.Fatal(err)
	}
	if b.IP != a.IP {
		t.Fatalf("released IP not reused: %v", b.IP)
	}
	checkPodNetns(t, p, b)
}

func TestListAndTeardownOnlyHerds(t *testing.T) {
	requireRoot(t)
	p := newPodNet(t, newNode(t), "10.244.5.0/24")
	ctx := context.Background()
	if _, err := p.Setup(ctx, "mine", "mine"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(p.cfg.StateDir, "netns")
	// A foreign netns with the herd prefix but no marker, and one without the
	// prefix.
	foreign := filepath.Join(dir, NetnsPrefix+"foreign")
	if err := createNetns(foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeNetns(foreign) })
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	uids, err := p.List()
	if err != nil || !slices.Equal(uids, []string{"mine"}) {
		t.Fatalf("List = %v, %v", uids, err)
	}
	if err := p.Teardown(ctx, "foreign"); err != nil {
		t.Fatal(err)
	}
	if !isNetnsMount(foreign) {
		t.Fatal("Teardown removed a netns without herd's marker")
	}
	if err := p.Teardown(ctx, "never-existed"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "../x", "a/b", "-x", string(make([]byte, 70))} {
		if _, err := p.Setup(ctx, bad, "x"); err == nil {
			t.Fatalf("Setup accepted uid %q", bad)
		}
		if err := p.Teardown(ctx, bad); err == nil {
			t.Fatalf("Teardown accepted uid %q", bad)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []Config{
		{StateDir: "/tmp/x"},
		{PodCIDR: netip.MustParsePrefix("10.0.0.1/24"), StateDir: "/tmp/x"},
		{PodCIDR: netip.MustParsePrefix("10.0.0.0/31"), StateDir: "/tmp/x"},
		{PodCIDR: netip.MustParsePrefix("fd00::/64"), StateDir: "/tmp/x"},
		{PodCIDR: netip.MustParsePrefix("10.0.0.0/24"), StateDir: "rel"},
		{PodCIDR: netip.MustParsePrefix("10.0.0.0/24"), StateDir: "/tmp/x", Bridge: "a-very-long-bridge-name"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// setupNodes builds two node netns joined by a veth pair: node1 192.168.77.1,
// node2 192.168.77.2.
func setupNodes(t *testing.T) (string, string) {
	t.Helper()
	n1, n2 := newNode(t), newNode(t)
	h1ns, err := netns.GetFromPath(n1)
	if err != nil {
		t.Fatal(err)
	}
	defer h1ns.Close()
	h2ns, err := netns.GetFromPath(n2)
	if err != nil {
		t.Fatal(err)
	}
	defer h2ns.Close()
	// Create the pair inside node1 (never in the test process's netns) and
	// move one end to node2.
	if err := withNetlink(n1, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "n1n2"}, PeerName: "n2n1", PeerNamespace: netlink.NsFd(h2ns)}
		return h.LinkAdd(v)
	}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ ns, ifn, addr string }{{n1, "n1n2", "192.168.77.1/24"}, {n2, "n2n1", "192.168.77.2/24"}} {
		if err := withNetlink(x.ns, func(h *netlink.Handle) error {
			l, err := h.LinkByName(x.ifn)
			if err != nil {
				return err
			}
			a, _ := netlink.ParseAddr(x.addr)
			if err := h.AddrAdd(l, a); err != nil {
				return err
			}
			return h.LinkSetUp(l)
		}); err != nil {
			t.Fatal(err)
		}
	}
	return n1, n2
}

func TestCrossNodeHostGW(t *testing.T) {
	requireRoot(t)
	n1, n2 := setupNodes(t)
	p1 := newPodNet(t, n1, "10.244.1.0/24")
	p2 := newPodNet(t, n2, "10.244.2.0/24")
	ctx := context.Background()
	a, err := p1.Setup(ctx, "a", "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p2.Setup(ctx, "b", "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureRoutes(ctx, n1, testClusterCIDR, map[netip.Prefix]netip.Addr{p2.cfg.PodCIDR: netip.MustParseAddr("192.168.77.2")}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureRoutes(ctx, n2, testClusterCIDR, map[netip.Prefix]netip.Addr{p1.cfg.PodCIDR: netip.MustParseAddr("192.168.77.1")}); err != nil {
		t.Fatal(err)
	}
	ln := listen(t, b.NetnsPath, netip.AddrPortFrom(b.IP, 8080).String())
	serveRemoteAddr(ln)
	if got := seenAs(t, a.NetnsPath, netip.AddrPortFrom(b.IP, 8080).String()); got != a.IP.String() {
		t.Fatalf("server on node2 saw %s, want pod A's IP %s (no NAT)", got, a.IP)
	}
	lnA := listen(t, a.NetnsPath, netip.AddrPortFrom(a.IP, 8081).String())
	serveRemoteAddr(lnA)
	if got := seenAs(t, b.NetnsPath, netip.AddrPortFrom(a.IP, 8081).String()); got != b.IP.String() {
		t.Fatalf("server on node1 saw %s, want %s", got, b.IP)
	}

	// Peer gone: its route is removed and the pod becomes unreachable.
	if err := EnsureRoutes(ctx, n1, testClusterCIDR, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := dial(a.NetnsPath, netip.AddrPortFrom(b.IP, 8080).String()); err == nil {
		c.Close()
		t.Fatal("reached node2's pod after its route was removed")
	}
}

func TestEnsureRoutesTouchesOnlyHerdRoutes(t *testing.T) {
	requireRoot(t)
	n1, _ := setupNodes(t)
	ctx := context.Background()
	foreignDst := netip.MustParsePrefix("10.99.0.0/16")
	if err := withNetlink(n1, func(h *netlink.Handle) error {
		return h.RouteAdd(&netlink.Route{Dst: prefixToIPNet(foreignDst), Gw: net.ParseIP("192.168.77.2"), Protocol: unix.RTPROT_STATIC})
	}); err != nil {
		t.Fatal(err)
	}
	peers := map[netip.Prefix]netip.Addr{
		netip.MustParsePrefix("10.244.2.0/24"): netip.MustParseAddr("192.168.77.2"),
		netip.MustParsePrefix("10.244.3.0/24"): netip.MustParseAddr("192.168.77.3"),
	}
	if err := EnsureRoutes(ctx, n1, testClusterCIDR, peers); err != nil {
		t.Fatal(err)
	}
	if err := EnsureRoutes(ctx, n1, testClusterCIDR, peers); err != nil { // idempotent
		t.Fatal(err)
	}
	// Peer 3 moves, peer 2 leaves.
	peers = map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.244.3.0/24"): netip.MustParseAddr("192.168.77.4")}
	if err := EnsureRoutes(ctx, n1, testClusterCIDR, peers); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := withNetlink(n1, func(h *netlink.Handle) error {
		rs, err := h.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range rs {
			if r.Dst != nil && r.Gw != nil {
				got[r.Dst.String()] = fmt.Sprintf("%s proto %d", r.Gw, r.Protocol)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"10.99.0.0/16":  fmt.Sprintf("192.168.77.2 proto %d", unix.RTPROT_STATIC),
		"10.244.3.0/24": fmt.Sprintf("192.168.77.4 proto %d", RTProtHerd),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	if err := EnsureRoutes(ctx, n1, testClusterCIDR, map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.0.0.1/8"): netip.MustParseAddr("1.2.3.4")}); err == nil {
		t.Fatal("unmasked prefix accepted")
	}
}

func TestMTUAndBridgeName(t *testing.T) {
	requireRoot(t)
	node := newNode(t)
	p, err := New(Config{
		PodCIDR:   netip.MustParsePrefix("10.244.7.0/24"),
		StateDir:  t.TempDir(),
		HostNetns: node,
		Bridge:    "herdtest0",
		MTU:       1400,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Setup(context.Background(), "m", "m")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Teardown(context.Background(), "m"); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}()
	if err := withNetlink(res.NetnsPath, func(h *netlink.Handle) error {
		l, err := h.LinkByName(IfName)
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1400 {
			return fmt.Errorf("eth0 MTU %d", l.Attrs().MTU)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := withNetlink(node, func(h *netlink.Handle) error {
		br, err := h.LinkByName("herdtest0")
		if err != nil {
			return err
		}
		addrs, err := h.AddrList(br, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IP.String() == res.Gateway.String() {
				return nil
			}
		}
		return fmt.Errorf("bridge lacks gateway %v: %v", res.Gateway, addrs)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestGCAfterCrashMidSetup(t *testing.T) {
	requireRoot(t)
	p := newPodNet(t, newNode(t), "10.244.8.0/24")
	ctx := context.Background()
	r, err := p.Setup(ctx, "crashed", "crashed")
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash that lost the netns but kept the marker and the IP.
	if err := removeNetns(r.NetnsPath); err != nil {
		t.Fatal(err)
	}
	uids, err := p.List()
	if err != nil || !slices.Equal(uids, []string{"crashed"}) {
		t.Fatalf("List = %v, %v", uids, err)
	}
	if err := p.Teardown(ctx, "crashed"); err != nil {
		t.Fatal(err)
	}
	if ip := p.ipamLookup(NetnsPrefix + "crashed"); ip.IsValid() {
		t.Fatalf("IP %v still reserved after GC", ip)
	}
	if uids, _ := p.List(); len(uids) != 0 {
		t.Fatalf("List after GC = %v", uids)
	}
	ns := r.LinuxNamespace()
	if ns.Type != "network" || ns.Path != r.NetnsPath {
		t.Fatalf("LinuxNamespace = %+v", ns)
	}
}

// TestLatency sets up and tears down 30 pod networks and logs the figures;
// it fails only on errors (a loaded machine is slow, not wrong).
func TestLatency(t *testing.T) {
	requireRoot(t)
	p := newPodNet(t, newNode(t), "10.244.10.0/24")
	ctx := context.Background()
	const n = 30
	var setup, teardown []time.Duration
	for i := range n {
		t0 := time.Now()
		if _, err := p.Setup(ctx, fmt.Sprintf("lat%d", i), "lat"); err != nil {
			t.Fatal(err)
		}
		setup = append(setup, time.Since(t0))
	}
	for i := range n {
		t0 := time.Now()
		if err := p.Teardown(ctx, fmt.Sprintf("lat%d", i)); err != nil {
			t.Fatal(err)
		}
		teardown = append(teardown, time.Since(t0))
	}
	pct := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[int(q*float64(len(s)-1))]
	}
	t.Logf("Setup    p50 %v p99 %v (n=%d)", pct(setup, .5), pct(setup, .99), n)
	t.Logf("Teardown p50 %v p99 %v (n=%d)", pct(teardown, .5), pct(teardown, .99), n)
}

// TestZZNoNamespaceLeak runs last (tests run in source order) and checks that nothing changed the test process's own
// network namespace: every thread still sees the original one, and no herd
// bridge appeared there.
func TestZZNoNamespaceLeak(t *testing.T) {
	requireRoot(t)
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	_, bridgeErr := netlink.LinkByName("herd0")
	p := newPodNet(t, newNode(t), "10.244.6.0/24")
	for i := range 5 {
		if _, err := p.Setup(context.Background(), fmt.Sprintf("l%d", i), "l"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cur, err := netns.Get()
			if err != nil {
				errc <- err
				return
			}
			defer cur.Close()
			if !cur.Equal(self) {
				errc <- fmt.Errorf("thread %d is in netns %s, process in %s", unix.Gettid(), cur, self)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if _, err := netlink.LinkByName("herd0"); bridgeErr != nil && err == nil {
		t.Fatal("a herd0 bridge appeared in the test process's netns")
	}
}
