// Package dns is agentd's service DNS: it answers
// <service>.<namespace>.svc.<cluster domain> from the cluster read model and
// forwards every other name to the node's upstream resolvers.
//
// herd's own machinery never depends on this server (no dependency loops): it
// exists only for pods, which get a resolv.conf (ResolvConf) pointing at the
// pod gateway address where agentd serves it.
//
// Behaviour follows the CoreDNS kubernetes plugin where the two overlap
// (plugin/kubernetes/handler.go and kubernetes.go findServices):
//   - A for a ClusterIP service: its cluster IP.
//   - A for a headless service: one record per ready endpoint; no ready
//     endpoint gives NXDOMAIN, as CoreDNS does (its findServices only clears
//     errNoItems when it appends an endpoint address).
//   - SRV _<port>._<proto>.<svc>.<ns>.svc.<domain> for named ports, target the
//     service name, with the target's A records as additional data.
//   - Any other type (AAAA included) for an existing name: NOERROR, no
//     answers (NODATA), with the SOA in the authority section.
//   - Unknown service or namespace: NXDOMAIN, authoritative, SOA in authority.
//     The cluster domain is never forwarded upstream.
//   - AXFR/IXFR: REFUSED (CoreDNS kubernetes handler). ANY: NOTIMP.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
)

// Port is one port of a service. Only named ports get SRV records.
type Port struct {
	Name     string
	Protocol string // "tcp" or "udp"
	Port     uint16
}

// Service is the read model of one service as the DNS sees it.
type Service struct {
	Namespace, Name string
	ClusterIP       netip.Addr // invalid for headless
	Headless        bool
	Ports           []Port
	ReadyEndpoints  []netip.Addr // for headless
}

// Source is the read model the server answers from. Lookups must be cheap and
// safe for concurrent use.
type Source interface {
	Service(namespace, name string) (Service, bool)
}

// Config configures a Server.
type Config struct {
	// Domain is the cluster domain; default "cluster.local".
	Domain string
	// Listen lists "ip:port" addresses served on both UDP and TCP. A port of 0
	// picks a free port, the same one for UDP and TCP (see Server.Addrs).
	Listen []string
	// Upstreams lists "ip:port" resolvers for other names; default: the
	// nameservers of /etc/resolv.conf.
	Upstreams []string
	// Source answers service lookups. Required.
	Source Source
	// TTL of answers and of negative caching; default 5 seconds.
	TTL uint32
	// Timeout is the hard limit for forwarding one query, all upstreams and
	// the TCP fallback included; default 3 seconds.
	Timeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

const (
	defaultDomain  = "cluster.local"
	defaultTTL     = 5
	defaultTimeout = 3 * time.Second
	// attemptTimeout bounds one exchange with one upstream, so a dead upstream
	// leaves time for the next one.
	attemptTimeout = 1500 * time.Millisecond
	// maxInflight bounds the queries being forwarded at once.
	maxInflight = 1024
	// ednsSize is the UDP payload size we advertise (DNS flag day 2020).
	ednsSize = 1232
)

// Server is agentd's service DNS.
type Server struct {
	domain    string // lower case, fully qualified, e.g. "cluster.local."
	svcZone   string // "svc." + domain
	listen    []string
	upstreams []string
	source    Source
	ttl       uint32
	timeout   time.Duration
	log       *slog.Logger

	mu      sync.Mutex
	servers []*mdns.Server
	addrs   []netip.AddrPort
	started bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup

	inflight chan struct{} // bounds concurrent forwarded queries
}

// New validates cfg and returns a server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("dns: Source is required")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("dns: at least one Listen address is required")
	}
	for _, l := range cfg.Listen {
		if _, err := netip.ParseAddrPort(l); err != nil {
			return nil, fmt.Errorf("dns: listen address %q: %w", l, err)
		}
	}
	domain := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(cfg.Domain)), ".")
	if domain == "" {
		domain = defaultDomain
	}
	if _, ok := mdns.IsDomainName(domain); !ok {
		return nil, fmt.Errorf("dns: invalid domain %q", cfg.Domain)
	}
	upstreams := cfg.Upstreams
	if len(upstreams) == 0 {
		u, err := UpstreamsFromResolvConf("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("dns: no upstreams given and /etc/resolv.conf unusable: %w", err)
		}
		upstreams = u
	}
	for _, u := range upstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return nil, fmt.Errorf("dns: upstream %q: %w", u, err)
		}
	}
	s := &Server{
		domain:    mdns.Fqdn(domain),
		svcZone:   "svc." + mdns.Fqdn(domain),
		listen:    append([]string(nil), cfg.Listen...),
		upstreams: append([]string(nil), upstreams...),
		source:    cfg.Source,
		ttl:       cfg.TTL,
		timeout:   cfg.Timeout,
		log:       cfg.Logger,
		done:      make(chan struct{}),
		inflight:  make(chan struct{}, maxInflight),
	}
	if s.ttl == 0 {
		s.ttl = defaultTTL
	}
	if s.timeout <= 0 {
		s.timeout = defaultTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// Start binds every listen address on UDP and TCP and serves in the
// background until ctx ends or Close is called. Binding errors are returned
// (and nothing is left listening).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: server closed")
	}
	if s.started {
		return errors.New("dns: server already started")
	}
	var (
		servers []*mdns.Server
		addrs   []netip.AddrPort
	)
	cleanup := func() {
		for _, srv := range servers {
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
		}
	}
	for _, l := range s.listen {
		pc, ln, ap, err := bindBoth(l)
		if err != nil {
			cleanup()
			return err
		}
		servers = append(servers,
			&mdns.Server{PacketConn: pc, Handler: s, UDPSize: ednsSize},
			&mdns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
		addrs = append(addrs, ap)
	}
	s.servers, s.addrs, s.started = servers, addrs, true
	s.upstreams = s.withoutSelf(s.upstreams)
	for i, srv := range servers {
		started := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func(srv *mdns.Server) {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
				s.log.Debug("dns: serve ended", "err", err)
			}
		}(srv)
		select {
		case <-started:
		case err := <-failed:
			for _, running := range servers[:i] {
				_ = running.Shutdown()
			}
			cleanup()
			s.wg.Wait()
			s.servers, s.closed = nil, true
			close(s.done)
			return fmt.Errorf("dns: serve: %w", err)
		}
	}
	s.log.Info("dns: serving", "domain", strings.TrimSuffix(s.domain, "."), "listen", addrs, "upstreams", s.upstreams)
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	return nil
}

// freebind lets agentd bind the pod gateway address before the pod bridge
// carries it (the bridge appears with the node's first pod).
var freebind = net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
	}); err != nil {
		return err
	}
	return serr
}}

// bindBoth binds addr on UDP, then TCP on the same port (retrying when the
// port was ephemeral and is taken on TCP).
func bindBoth(addr string) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	want := netip.MustParseAddrPort(addr)
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		pc, err := freebind.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, netip.AddrPort{}, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
		ap := netip.AddrPortFrom(want.Addr(), port)
		ln, err := freebind.Listen(ctx, "tcp", ap.String())
		if err == nil {
			return pc, ln, ap, nil
		}
		pc.Close()
		if want.Port() != 0 || attempt >= 20 {
			return nil, nil, netip.AddrPort{}, fmt.Errorf("dns: listen tcp %s: %w", ap, err)
		}
	}
}

// Addrs returns the bound addresses (UDP and TCP share each), valid after
// Start.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Close stops serving and releases the sockets. It is safe to call more than
// once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// withoutSelf drops upstreams that are one of our own listen addresses, so a
// query can never loop back into this server.
func (s *Server) withoutSelf(ups []string) []string {
	var out []string
	for _, u := range ups {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			continue
		}
		self := false
		for _, l := range s.addrs {
			if l.Port() != ap.Port() {
				continue
			}
			la, ua := l.Addr().Unmap(), ap.Addr().Unmap()
			if la == ua || (la.IsUnspecified() && (ua.IsLoopback() || ua.IsUnspecified())) {
				self = true
				break
			}
		}
		if self {
			s.log.Warn("dns: skipping upstream that is our own listen address", "upstream", u)
			continue
		}
		out = append(out, u)
	}
	return out
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	resp := s.handle(w, r)
	if resp == nil {
		return
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns: write reply", "err", err)
	}
}

func isUDP(w mdns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.UDPAddr)
	return ok
}

// maxSize is the largest reply the client accepts on its transport.
func maxSize(w mdns.ResponseWriter, r *mdns.Msg) int {
	if !isUDP(w) {
		return mdns.MaxMsgSize
	}
	if opt := r.IsEdns0(); opt != nil {
		sz := int(opt.UDPSize())
		if sz < mdns.MinMsgSize {
			sz = mdns.MinMsgSize
		}
		if sz > ednsSize {
			sz = ednsSize
		}
		return sz
	}
	return mdns.MinMsgSize
}

func errorReply(r *mdns.Msg, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(r, rcode)
	m.RecursionAvailable = true
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, opt.Do())
	}
	return m
}

func (s *Server) handle(w mdns.ResponseWriter, r *mdns.Msg) *mdns.Msg {
	if r.Response {
		return nil // never answer answers
	}
	if r.Opcode != mdns.OpcodeQuery {
		return errorReply(r, mdns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return errorReply(r, mdns.RcodeFormatError)
	}
	q := r.Question[0]
	switch q.Qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR:
		return errorReply(r, mdns.RcodeRefused)
	case mdns.TypeANY:
		return errorReply(r, mdns.RcodeNotImplemented)
	}
	if q.Qclass != mdns.ClassINET {
		return errorReply(r, mdns.RcodeNotImplemented)
	}
	name := strings.ToLower(q.Name)
	if mdns.IsSubDomain(s.domain, name) {
		m := s.answer(r, name)
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(ednsSize, opt.Do())
		}
		m.Truncate(maxSize(w, r))
		return m
	}
	return s.forward(w, r)
}

func (s *Server) soa() mdns.RR {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.domain, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.ttl},
		Ns:      "ns.dns." + s.domain,
		Mbox:    "hostmaster." + s.domain,
		Serial:  1,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  s.ttl,
	}
}

// answer builds the authoritative reply for a name inside the cluster domain.
// name is lower case.
func (s *Server) answer(r *mdns.Msg, name string) *mdns.Msg {
	q := r.Question[0]
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true

	nxdomain := func() *mdns.Msg {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.soa()}
		return m
	}
	nodata := func() *mdns.Msg {
		m.Ns = []mdns.RR{s.soa()}
		return m
	}

	if name == s.domain {
		if q.Qtype == mdns.TypeSOA {
			m.Answer = []mdns.RR{s.soa()}
			return m
		}
		return nodata()
	}
	if name == s.svcZone {
		return nodata()
	}
	if !mdns.IsSubDomain(s.svcZone, name) {
		return nxdomain() // pod records and anything else are not served
	}
	labels := mdns.SplitDomainName(strings.TrimSuffix(name, "."+s.svcZone))
	switch len(labels) {
	case 1:
		// <ns>.svc.<domain>: an empty non-terminal whenever the namespace has
		// services. The read model cannot list namespaces, so answer NODATA
		// rather than an NXDOMAIN that (RFC 8020) would deny every name below.
		return nodata()
	case 2:
		svc, ok := s.source.Service(labels[1], labels[0])
		if !ok {
			return nxdomain()
		}
		switch q.Qtype {
		case mdns.TypeA:
			m.Answer = s.aRecords(q.Name, svc)
			if len(m.Answer) == 0 {
				if svc.Headless {
					return nxdomain() // CoreDNS: headless service without endpoints
				}
				return nodata() // IPv6-only cluster IP
			}
			return m
		case mdns.TypeAAAA:
			m.Answer = s.aaaaRecords(q.Name, svc)
			if len(m.Answer) == 0 {
				if svc.Headless && len(svc.ReadyEndpoints) == 0 {
					return nxdomain()
				}
				return nodata()
			}
			return m
		default:
			if svc.Headless && len(svc.ReadyEndpoints) == 0 {
				return nxdomain()
			}
			return nodata()
		}
	case 4:
		portLabel, protoLabel := labels[0], labels[1]
		if !strings.HasPrefix(portLabel, "_") || !strings.HasPrefix(protoLabel, "_") {
			return nxdomain()
		}
		svc, ok := s.source.Service(labels[3], labels[2])
		if !ok {
			return nxdomain()
		}
		port, ok := findPort(svc, portLabel[1:], protoLabel[1:])
		if !ok {
			return nxdomain()
		}
		if svc.Headless && len(svc.ReadyEndpoints) == 0 {
			return nxdomain()
		}
		if q.Qtype != mdns.TypeSRV {
			return nodata()
		}
		target := svc.Name + "." + svc.Namespace + "." + s.svcZone
		target = strings.ToLower(target)
		m.Answer = []mdns.RR{&mdns.SRV{
			Hdr:      mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: s.ttl},
			Priority: 0,
			Weight:   100,
			Port:     port.Port,
			Target:   target,
		}}
		m.Extra = append(s.aRecords(target, svc), s.aaaaRecords(target, svc)...)
		return m
	default:
		return nxdomain()
	}
}

func findPort(svc Service, name, proto string) (Port, bool) {
	for _, p := range svc.Ports {
		if p.Name != "" && strings.EqualFold(p.Name, name) && strings.EqualFold(p.Protocol, proto) {
			return p, true
		}
	}
	return Port{}, false
}

func (s *Server) addrs4or6(svc Service, want4 bool) []netip.Addr {
	var in []netip.Addr
	if svc.Headless {
		in = svc.ReadyEndpoints
	} else if svc.ClusterIP.IsValid() {
		in = []netip.Addr{svc.ClusterIP}
	}
	var out []netip.Addr
	seen := make(map[netip.Addr]bool, len(in))
	for _, a := range in {
		a = a.Unmap()
		if !a.IsValid() || a.Is4() != want4 || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}

func (s *Server) aRecords(name string, svc Service) []mdns.RR {
	var rrs []mdns.RR
	for _, a := range s.addrs4or6(svc, true) {
		rrs = append(rrs, &mdns.A{
			Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: s.ttl},
			A:   a.AsSlice(),
		})
	}
	return rrs
}

func (s *Server) aaaaRecords(name string, svc Service) []mdns.RR {
	var rrs []mdns.RR
	for _, a := range s.addrs4or6(svc, false) {
		rrs = append(rrs, &mdns.AAAA{
			Hdr:  mdns.RR_Header{Name: name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: s.ttl},
			AAAA: a.AsSlice(),
		})
	}
	return rrs
}

// forward sends r to the upstreams in order: UDP first, TCP when the UDP
// answer is truncated (or the client came over TCP and a UDP answer is not
// enough), the next upstream on any failure or SERVFAIL/REFUSED, all within
// the hard timeout. Nothing answered → SERVFAIL.
func (s *Server) forward(w mdns.ResponseWriter, r *mdns.Msg) *mdns.Msg {
	if len(s.upstreams) == 0 {
		return errorReply(r, mdns.RcodeServerFailure)
	}
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		// Too many queries waiting on upstreams: shed load rather than pile
		// up goroutines and sockets.
		return errorReply(r, mdns.RcodeServerFailure)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()

	q := r.Copy()
	clientOpt := r.IsEdns0()
	if clientOpt == nil {
		// Ask upstream for a larger answer than 512 B to spare a TCP round
		// trip; the OPT is removed again before replying.
		q.SetEdns0(ednsSize, false)
	}
	var last *mdns.Msg
	for _, up := range s.upstreams {
		if ctx.Err() != nil {
			break
		}
		resp, err := s.exchange(ctx, q, up)
		if err != nil {
			s.log.Debug("dns: upstream failed", "upstream", up, "name", r.Question[0].Name, "err", err)
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			last = resp
			continue
		}
		return s.finish(w, r, resp, clientOpt)
	}
	if last != nil {
		return s.finish(w, r, last, clientOpt)
	}
	s.log.Warn("dns: no upstream answered", "name", r.Question[0].Name, "upstreams", s.upstreams)
	return errorReply(r, mdns.RcodeServerFailure)
}

func (s *Server) exchange(ctx context.Context, q *mdns.Msg, up string) (*mdns.Msg, error) {
	attempt := func(network string) (*mdns.Msg, error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		c := &mdns.Client{Net: network, UDPSize: ednsSize}
		if dl, ok := actx.Deadline(); ok {
			c.Timeout = time.Until(dl)
			if c.Timeout <= 0 {
				return nil, context.DeadlineExceeded
			}
		}
		resp, _, err := c.ExchangeContext(actx, q, up)
		return resp, err
	}
	resp, err := attempt("udp")
	if err != nil {
		return nil, err
	}
	if !resp.Truncated {
		return resp, nil
	}
	return attempt("tcp")
}

// finish adapts an upstream reply to the client: its id, its EDNS (the OPT
// we added is removed), and its transport's size limit (setting TC).
func (s *Server) finish(w mdns.ResponseWriter, r, resp *mdns.Msg, clientOpt *mdns.OPT) *mdns.Msg {
	resp.Id = r.Id
	resp.Compress = true
	if clientOpt == nil {
		extra := resp.Extra[:0]
		for _, rr := range resp.Extra {
			if rr.Header().Rrtype != mdns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		resp.Extra = extra
	}
	resp.Truncate(maxSize(w, r))
	return resp
}

// ResolvConf returns the resolv.conf a pod in namespace gets: agentd's DNS on
// the pod gateway, the Kubernetes search path and ndots:5.
func ResolvConf(gateway netip.Addr, namespace, domain string) []byte {
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if domain == "" {
		domain = defaultDomain
	}
	var b strings.Builder
	b.WriteString("nameserver " + gateway.Unmap().String() + "\n")
	b.WriteString("search " + namespace + ".svc." + domain + " svc." + domain + " " + domain + "\n")
	b.WriteString("options ndots:5\n")
	return []byte(b.String())
}

// UpstreamsFromResolvConf reads the nameserver lines of a resolv.conf file and
// returns them as "ip:port" (port 53). Link-local IPv6 zones are kept.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		port = "53"
	}
	var out []string
	for _, ns := range cc.Servers {
		a, err := netip.ParseAddr(ns)
		if err != nil {
			continue
		}
		out = append(out, net.JoinHostPort(a.String(), port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dns: no usable nameserver in %s", path)
	}
	return out, nil
}
