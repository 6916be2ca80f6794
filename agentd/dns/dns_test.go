package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// memSource is an in-memory read model.
type memSource struct {
	mu   sync.Mutex
	svcs map[string]Service
}

func (m *memSource) Service(ns, name string) (Service, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.svcs[ns+"/"+name]
	return s, ok
}

func (m *memSource) put(s Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcs[s.Namespace+"/"+s.Name] = s
}

func testSource() *memSource {
	src := &memSource{svcs: map[string]Service{}}
	src.put(Service{
		Namespace: "prod", Name: "web",
		ClusterIP: netip.MustParseAddr("10.96.0.10"),
		Ports: []Port{
			{Name: "http", Protocol: "tcp", Port: 80},
			{Name: "dns", Protocol: "udp", Port: 53},
			{Protocol: "tcp", Port: 9000}, // unnamed: no SRV
		},
	})
	src.put(Service{
		Namespace: "prod", Name: "db", Headless: true,
		Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}},
		ReadyEndpoints: []netip.Addr{
			netip.MustParseAddr("10.244.1.5"),
			netip.MustParseAddr("10.244.2.7"),
			netip.MustParseAddr("10.244.3.9"),
		},
	})
	src.put(Service{Namespace: "prod", Name: "empty", Headless: true})
	return src
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// upstream is a real miekg/dns server on 127.0.0.1 playing the node's
// resolver.
type upstream struct {
	addr    string
	queries atomic.Int64
	tcp     atomic.Int64
	names   sync.Map // lower-case qname -> true
}

const bigTXTCount = 40

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.queries.Add(1)
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			u.tcp.Add(1)
		}
		q := r.Question[0]
		u.names.Store(strings.ToLower(q.Name), true)
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		switch strings.ToLower(q.Name) {
		case "example.test.":
			if q.Qtype == mdns.TypeA {
				rr, _ := mdns.NewRR(q.Name + " 60 IN A 192.0.2.10")
				m.Answer = append(m.Answer, rr)
			}
		case "big.test.":
			for i := range bigTXTCount {
				rr, _ := mdns.NewRR(fmt.Sprintf("%s 60 IN TXT \"record-%02d-%s\"", q.Name, i, strings.Repeat("x", 40)))
				m.Answer = append(m.Answer, rr)
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			size := mdns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	})
	pc, ln, ap, err := bindBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	u.addr = ap.String()
	return u
}

func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Source == nil {
		cfg.Source = testSource()
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addrs()[0].String()
}

func query(t *testing.T, addr, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	return exchange(t, addr, network, m)
}

func exchange(t *testing.T, addr, network string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 10 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, mdns.TypeToString[m.Question[0].Qtype], err)
	}
	return resp
}

func aValues(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

func wantRcode(t *testing.T, m *mdns.Msg, rcode int) {
	t.Helper()
	if m.Rcode != rcode {
		t.Fatalf("rcode = %s, want %s\n%v", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[rcode], m)
	}
}

func TestClusterIPA(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})
	for _, network := range []string{"udp", "tcp"} {
		m := query(t, addr, network, "web.prod.svc.cluster.local.", mdns.TypeA)
		wantRcode(t, m, mdns.RcodeSuccess)
		if !m.Authoritative {
			t.Errorf("%s: answer not authoritative", network)
		}
		if got := aValues(m.Answer); !slices.Equal(got, []string{"10.96.0.10"}) {
			t.Errorf("%s: A = %v", network, got)
		}
		if ttl := m.Answer[0].Header().Ttl; ttl != defaultTTL {
			t.Errorf("%s: ttl = %d, want %d", network, ttl, defaultTTL)
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream saw %d queries for the cluster domain", n)
	}
}

func TestHeadlessMultipleA(t *testing.T) {
	_, addr := startServer(t, Config{Upstreams: []string{"127.0.0.1:1"}})
	m := query(t, addr, "udp", "db.prod.svc.cluster.local.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)
	want := []string{"10.244.1.5", "10.244.2.7", "10.244.3.9"}
	if got := aValues(m.Answer); !slices.Equal(got, want) {
		t.Fatalf("A = %v, want %v", got, want)
	}
}

func TestHeadlessNoEndpointsIsNXDOMAIN(t *testing.T) {
	_, addr := startServer(t, Config{Upstreams: []string{"127.0.0.1:1"}})
	m := query(t, addr, "udp", "empty.prod.svc.cluster.local.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeNameError)
	if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != mdns.TypeSOA {
		t.Errorf("authority = %v, want the SOA", m.Ns)
	}
}

func TestSourceChangesAreSeenAtOnce(t *testing.T) {
	src := testSource()
	_, addr := startServer(t, Config{Source: src, Upstreams: []string{"127.0.0.1:1"}})
	src.put(Service{Namespace: "prod", Name: "empty", Headless: true,
		ReadyEndpoints: []netip.Addr{netip.MustParseAddr("10.244.9.9")}})
	m := query(t, addr, "udp", "empty.prod.svc.cluster.local.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)
	if got := aValues(m.Answer); !slices.Equal(got, []string{"10.244.9.9"}) {
		t.Fatalf("A = %v", got)
	}
}

func TestSRV(t *testing.T) {
	_, addr := startServer(t, Config{Upstreams: []string{"127.0.0.1:1"}})

	m := query(t, addr, "udp", "_http._tcp.web.prod.svc.cluster.local.", mdns.TypeSRV)
	wantRcode(t, m, mdns.RcodeSuccess)
	if len(m.Answer) != 1 {
		t.Fatalf("answer = %v", m.Answer)
	}
	srv := m.Answer[0].(*mdns.SRV)
	if srv.Port != 80 || srv.Target != "web.prod.svc.cluster.local." {
		t.Errorf("SRV = %v", srv)
	}
	if got := aValues(m.Extra); !slices.Equal(got, []string{"10.96.0.10"}) {
		t.Errorf("additional A = %v", got)
	}

	m = query(t, addr, "udp", "_dns._udp.web.prod.svc.cluster.local.", mdns.TypeSRV)
	wantRcode(t, m, mdns.RcodeSuccess)
	if len(m.Answer) != 1 || m.Answer[0].(*mdns.SRV).Port != 53 {
		t.Errorf("udp SRV = %v", m.Answer)
	}

	// Headless: target the service name, additional A for every endpoint.
	m = query(t, addr, "udp", "_pg._tcp.db.prod.svc.cluster.local.", mdns.TypeSRV)
	wantRcode(t, m, mdns.RcodeSuccess)
	if len(m.Answer) != 1 || m.Answer[0].(*mdns.SRV).Port != 5432 || m.Answer[0].(*mdns.SRV).Target != "db.prod.svc.cluster.local." {
		t.Errorf("headless SRV = %v", m.Answer)
	}
	if got := aValues(m.Extra); len(got) != 3 {
		t.Errorf("headless additional A = %v", got)
	}

	// Wrong protocol, unknown port name: NXDOMAIN.
	for _, name := range []string{"_http._udp.web.prod.svc.cluster.local.", "_nope._tcp.web.prod.svc.cluster.local."} {
		wantRcode(t, query(t, addr, "udp", name, mdns.TypeSRV), mdns.RcodeNameError)
	}
	// A query on an existing SRV name: NODATA.
	m = query(t, addr, "udp", "_http._tcp.web.prod.svc.cluster.local.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)
	if len(m.Answer) != 0 {
		t.Errorf("A on SRV name answered %v", m.Answer)
	}
}

func TestCaseInsensitive(t *testing.T) {
	_, addr := startServer(t, Config{Upstreams: []string{"127.0.0.1:1"}})
	m := query(t, addr, "udp", "WeB.PrOd.SVC.Cluster.LOCAL.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)
	if got := aValues(m.Answer); !slices.Equal(got, []string{"10.96.0.10"}) {
		t.Fatalf("A = %v", got)
	}
	if m.Answer[0].Header().Name != "WeB.PrOd.SVC.Cluster.LOCAL." {
		t.Errorf("answer owner %q does not keep the query's case", m.Answer[0].Header().Name)
	}
	m = query(t, addr, "udp", "_HTTP._TCP.web.prod.svc.cluster.local.", mdns.TypeSRV)
	wantRcode(t, m, mdns.RcodeSuccess)
	if len(m.Answer) != 1 {
		t.Errorf("SRV = %v", m.Answer)
	}
}

func TestAAAAForExistingServiceIsNODATA(t *testing.T) {
	_, addr := startServer(t, Config{Upstreams: []string{"127.0.0.1:1"}})
	for _, name := range []string{"web.prod.svc.cluster.local.", "db.prod.svc.cluster.local."} {
		m := query(t, addr, "udp", name, mdns.TypeAAAA)
		wantRcode(t, m, mdns.RcodeSuccess)
		if len(m.Answer) != 0 {
			t.Errorf("%s AAAA answered %v", name, m.Answer)
		}
		if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != mdns.TypeSOA {
			t.Errorf("%s AAAA authority = %v, want SOA", name, m.Ns)
		}
	}
}

func TestUnknownIsNXDOMAINAndNeverForwarded(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})
	for _, name := range []string{
		"nope.prod.svc.cluster.local.",
		"web.nope.svc.cluster.local.",
		"a.b.web.prod.svc.cluster.local.",
		"1-2-3-4.prod.pod.cluster.local.",
		"whatever.cluster.local.",
	} {
		m := query(t, addr, "udp", name, mdns.TypeA)
		wantRcode(t, m, mdns.RcodeNameError)
		if !m.Authoritative {
			t.Errorf("%s: NXDOMAIN not authoritative", name)
		}
	}
	// Apex, svc and namespace nodes exist (empty non-terminals): NODATA.
	for _, name := range []string{"cluster.local.", "svc.cluster.local.", "prod.svc.cluster.local."} {
		m := query(t, addr, "udp", name, mdns.TypeA)
		wantRcode(t, m, mdns.RcodeSuccess)
		if len(m.Answer) != 0 {
			t.Errorf("%s answered %v", name, m.Answer)
		}
	}
	m := query(t, addr, "udp", "cluster.local.", mdns.TypeSOA)
	if len(m.Answer) != 1 || m.Answer[0].Header().Rrtype != mdns.TypeSOA {
		t.Errorf("SOA = %v", m.Answer)
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream saw %d queries for the cluster domain", n)
	}
}

func TestCustomDomainAndTTL(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Domain: "Herd.Internal.", TTL: 30, Upstreams: []string{up.addr}})
	m := query(t, addr, "udp", "web.prod.svc.herd.internal.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)
	if got := aValues(m.Answer); !slices.Equal(got, []string{"10.96.0.10"}) || m.Answer[0].Header().Ttl != 30 {
		t.Fatalf("answer = %v", m.Answer)
	}
	// cluster.local is now just another name: forwarded.
	wantRcode(t, query(t, addr, "udp", "web.prod.svc.cluster.local.", mdns.TypeA), mdns.RcodeNameError)
	if up.queries.Load() != 1 {
		t.Errorf("upstream queries = %d, want 1", up.queries.Load())
	}
}

func TestForward(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})
	for _, network := range []string{"udp", "tcp"} {
		m := query(t, addr, network, "Example.Test.", mdns.TypeA)
		wantRcode(t, m, mdns.RcodeSuccess)
		if got := aValues(m.Answer); !slices.Equal(got, []string{"192.0.2.10"}) {
			t.Fatalf("%s: forwarded A = %v", network, got)
		}
		if m.IsEdns0() != nil {
			t.Errorf("%s: reply carries an OPT the client did not send", network)
		}
		wantRcode(t, query(t, addr, network, "missing.test.", mdns.TypeA), mdns.RcodeNameError)
	}
}

func TestForwardTruncation(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})

	// The upstream's answer (~2.4 kB) does not fit its UDP reply: the server
	// retries over TCP and a TCP client gets everything.
	m := query(t, addr, "tcp", "big.test.", mdns.TypeTXT)
	wantRcode(t, m, mdns.RcodeSuccess)
	if len(m.Answer) != bigTXTCount || m.Truncated {
		t.Fatalf("tcp: %d answers (truncated %v), want %d", len(m.Answer), m.Truncated, bigTXTCount)
	}
	if up.tcp.Load() == 0 {
		t.Error("the server never fell back to TCP towards the upstream")
	}

	// A plain UDP client gets what fits in 512 bytes, with TC set.
	m = query(t, addr, "udp", "big.test.", mdns.TypeTXT)
	if !m.Truncated {
		t.Fatalf("udp without EDNS: not truncated (%d answers)", len(m.Answer))
	}
	m.Compress = true
	if b, _ := m.Pack(); len(b) > mdns.MinMsgSize {
		t.Errorf("udp reply is %d bytes", len(b))
	}

	// An EDNS client gets the EDNS size it asked for (capped at 1232).
	q := new(mdns.Msg)
	q.SetQuestion("big.test.", mdns.TypeTXT)
	q.SetEdns0(4096, false)
	c := &mdns.Client{Net: "udp", UDPSize: 4096, Timeout: 5 * time.Second}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || m.IsEdns0() == nil {
		t.Errorf("udp with EDNS: truncated %v, opt %v", m.Truncated, m.IsEdns0())
	}
	m.Compress = true
	if b, _ := m.Pack(); len(b) > ednsSize || len(b) <= mdns.MinMsgSize {
		t.Errorf("udp with EDNS reply is %d bytes", len(b))
	}
}

// blackHole is a UDP socket that reads and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// closedPort returns a 127.0.0.1 port nothing listens on (UDP or TCP).
func closedPort(t *testing.T) string {
	t.Helper()
	pc, ln, ap, err := bindBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	ln.Close()
	return ap.String()
}

// TestUpstreamDownIsSERVFAILWithinTimeout: the hard timeout bounds the
// whole forward. Ten black holes take 10 x attemptTimeout (15 s) to try one
// by one, longer than the client's 10 s: only a forward that gives up at
// the hard timeout answers SERVFAIL before the client gives up.
func TestUpstreamDownIsSERVFAILWithinTimeout(t *testing.T) {
	timeout := 800 * time.Millisecond
	upstreams := []string{closedPort(t)}
	for range 10 {
		upstreams = append(upstreams, blackHole(t))
	}
	if total := time.Duration(len(upstreams)-1) * attemptTimeout; total <= 10*time.Second {
		t.Fatalf("the black holes take %v one by one, not more than the client's timeout", total)
	}
	_, addr := startServer(t, Config{Upstreams: upstreams, Timeout: timeout})
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		m := query(t, addr, network, "example.test.", mdns.TypeA)
		wantRcode(t, m, mdns.RcodeServerFailure)
		t.Logf("%s: SERVFAIL after %v, timeout %v", network, time.Since(start), timeout)
	}
}

func TestNextUpstreamOnFailure(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{closedPort(t), up.addr}})
	m := query(t, addr, "udp", "example.test.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)
	if got := aValues(m.Answer); !slices.Equal(got, []string{"192.0.2.10"}) {
		t.Fatalf("A = %v", got)
	}
}

func TestOwnListenAddressIsNotAnUpstream(t *testing.T) {
	self := closedPort(t)
	up := startUpstream(t)
	s, addr := startServer(t, Config{Listen: []string{self}, Upstreams: []string{self, up.addr}})
	if addr != self {
		t.Fatalf("listening on %s, want %s", addr, self)
	}
	if !slices.Equal(s.upstreams, []string{up.addr}) {
		t.Fatalf("upstreams = %v, want only %s", s.upstreams, up.addr)
	}
	m := query(t, addr, "udp", "example.test.", mdns.TypeA)
	wantRcode(t, m, mdns.RcodeSuccess)

	// With only itself as upstream it has no upstream at all (it fails at
	// once instead of looping).
	self2 := closedPort(t)
	s2, addr2 := startServer(t, Config{Listen: []string{self2}, Upstreams: []string{self2}})
	if len(s2.upstreams) != 0 {
		t.Fatalf("upstreams = %v, want none", s2.upstreams)
	}
	start := time.Now()
	wantRcode(t, query(t, addr2, "udp", "example.test.", mdns.TypeA), mdns.RcodeServerFailure)
	t.Logf("self-only upstream: SERVFAIL after %v", time.Since(start))
}

func TestRefusesTransfersAndANY(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})
	wantRcode(t, query(t, addr, "tcp", "cluster.local.", mdns.TypeAXFR), mdns.RcodeRefused)
	wantRcode(t, query(t, addr, "tcp", "example.test.", mdns.TypeAXFR), mdns.RcodeRefused)
	wantRcode(t, query(t, addr, "udp", "cluster.local.", mdns.TypeIXFR), mdns.RcodeRefused)
	wantRcode(t, query(t, addr, "udp", "web.prod.svc.cluster.local.", mdns.TypeANY), mdns.RcodeNotImplemented)
	wantRcode(t, query(t, addr, "udp", "example.test.", mdns.TypeANY), mdns.RcodeNotImplemented)
	if up.queries.Load() != 0 {
		t.Errorf("refused queries reached the upstream")
	}
	// A non-QUERY opcode is not implemented.
	m := new(mdns.Msg)
	m.SetNotify("cluster.local.")
	wantRcode(t, exchange(t, addr, "udp", m), mdns.RcodeNotImplemented)
}

func TestGoResolver(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ips, err := r.LookupHost(ctx, "web.prod.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ips, []string{"10.96.0.10"}) {
		t.Errorf("web: %v", ips)
	}
	ips, err = r.LookupHost(ctx, "db.prod.svc.cluster.local.")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ips)
	if !slices.Equal(ips, []string{"10.244.1.5", "10.244.2.7", "10.244.3.9"}) {
		t.Errorf("db: %v", ips)
	}
	cname, srvs, err := r.LookupSRV(ctx, "http", "tcp", "web.prod.svc.cluster.local.")
	if err != nil {
		t.Fatal(err)
	}
	if cname != "_http._tcp.web.prod.svc.cluster.local." || len(srvs) != 1 || srvs[0].Port != 80 {
		t.Errorf("SRV: %s %v", cname, srvs)
	}
	var de *net.DNSError
	if _, err := r.LookupHost(ctx, "nope.prod.svc.cluster.local."); err == nil {
		t.Error("unknown service resolved")
	} else if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("unknown service: %v, want not found", err)
	}
	ips, err = r.LookupHost(ctx, "example.test.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ips, []string{"192.0.2.10"}) {
		t.Errorf("example.test: %v", ips)
	}
}

func TestResolvConf(t *testing.T) {
	got := string(ResolvConf(netip.MustParseAddr("10.244.1.1"), "prod", "cluster.local"))
	want := "nameserver 10.244.1.1\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
	if got != want {
		t.Errorf("ResolvConf =\n%s\nwant\n%s", got, want)
	}
	got = string(ResolvConf(netip.MustParseAddr("10.244.2.1"), "default", ""))
	if !strings.Contains(got, "search default.svc.cluster.local svc.cluster.local cluster.local\n") {
		t.Errorf("default domain: %s", got)
	}

	// What a pod would parse from it.
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cc.Servers, []string{"10.244.1.1"}) || cc.Ndots != 5 ||
		!slices.Equal(cc.Search, []string{"prod.svc.cluster.local", "svc.cluster.local", "cluster.local"}) {
		t.Errorf("parsed: %+v", cc)
	}
	if names := cc.NameList("web"); names[0] != "web.prod.svc.cluster.local." {
		t.Errorf("search list for web: %v", names)
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	content := "# generated\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\noptions edns0\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := UpstreamsFromResolvConf(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("upstreams = %v, want %v", got, want)
	}
	empty := filepath.Join(t.TempDir(), "empty.conf")
	if err := os.WriteFile(empty, []byte("search x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := UpstreamsFromResolvConf(empty); err == nil {
		t.Error("no nameserver: want an error")
	}
	if _, err := UpstreamsFromResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: want an error")
	}
}

func TestNewValidates(t *testing.T) {
	src := testSource()
	for name, cfg := range map[string]Config{
		"no source":    {Listen: []string{"127.0.0.1:0"}, Upstreams: []string{"127.0.0.1:53"}},
		"no listen":    {Source: src, Upstreams: []string{"127.0.0.1:53"}},
		"bad listen":   {Source: src, Listen: []string{"nope"}, Upstreams: []string{"127.0.0.1:53"}},
		"bad upstream": {Source: src, Listen: []string{"127.0.0.1:0"}, Upstreams: []string{"127.0.0.1"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestCloseAndContext(t *testing.T) {
	s, err := New(Config{Source: testSource(), Listen: []string{"127.0.0.1:0"}, Upstreams: []string{"127.0.0.1:1"}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	wantRcode(t, query(t, addr, "udp", "web.prod.svc.cluster.local.", mdns.TypeA), mdns.RcodeSuccess)
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port still held after the context ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
}
