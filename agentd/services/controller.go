package services

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/dns"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Dataplane is the node's service NAT (agentd/network/nft).
type Dataplane interface {
	// Sync replaces every service's rules.
	Sync(ctx context.Context, svcs []nft.Service) error
	// Apply upserts and deletes services in one transaction.
	Apply(ctx context.Context, upserts []nft.Service, deletes []string) error
}

// Events is the cluster's event stream plus the reads the controller does.
type Events interface {
	Store
	// Entry reads one entry as Entries would list it (absent when its
	// owner is not live).
	Entry(owner, kind, key string) (cluster.Entry, bool)
	Subscribe() <-chan cluster.Event
	Unsubscribe(<-chan cluster.Event)
	// EntrySeq: see cluster.Cluster.EntrySeq (for WaitApplied).
	EntrySeq(owner, kind, key string) (uint64, bool)
}

// Gate decides per endpoint (by its pod's labels) whether it may be a
// backend at all. A BlueGreen deployment's driver routes only to the
// serving revision through one.
type Gate interface {
	Admit(labels map[string]string) bool
	// Affected returns a selector of the endpoints whose admission the
	// event may change, or nil.
	Affected(ev cluster.Event) map[string]string
}

// Controller keeps the read models — the nft maps and the DNS table — equal
// to the replicated services and endpoints. Each event touches only what it
// changes: the services an endpoint's labels select (through an index), a
// service and the endpoints its selector selects; the events that arrive
// together are written in one nft transaction. A full resync at start and
// every ResyncEvery re-reads the store and rewrites the whole table, which
// repairs anything changed behind herd's back; it costs O(services +
// endpoints).
type Controller struct {
	ev          Events
	dp          Dataplane // nil: DNS only
	log         *slog.Logger
	ResyncEvery time.Duration

	// Reassign, if set, is called (in the background) for services this
	// node wrote that collide with an older service on a cluster IP or
	// node port: two nodes allocated at the same moment.
	Reassign func(key string)

	// Gate, if set, admits endpoints as backends; nil admits every ready
	// endpoint. Set it before Run.
	Gate Gate

	dnsMu    sync.RWMutex
	dnsTable map[string]dns.Service
	matched  map[string][]endpoint // per service, for its status (under dnsMu)

	// owned by the goroutine running passes
	m       *model
	want    map[string]nft.Service // the rules each service should have
	applied map[string]nft.Service // what the data plane holds; nil: unknown
	retry   *time.Timer

	synced chan struct{}
	passes *passes // applied.go
}

// NewController returns a controller; call Run. dp may be nil.
func NewController(ev Events, dp Dataplane, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	return &Controller{ev: ev, dp: dp, log: log, ResyncEvery: time.Minute, synced: make(chan struct{}), passes: newPasses(),
		dnsTable: map[string]dns.Service{}, matched: map[string][]endpoint{}, m: newModel(log), want: map[string]nft.Service{}}
}

// Service answers DNS lookups (dns.Source).
func (c *Controller) Service(namespace, name string) (dns.Service, bool) {
	c.dnsMu.RLock()
	defer c.dnsMu.RUnlock()
	s, ok := c.dnsTable[namespace+"/"+name]
	return s, ok
}

// Selected returns the endpoints a service's selector selects, sorted by
// IP, as of the last pass (the registry's status reads them here instead
// of decoding every endpoint); ok is false before the first pass or for a
// service the controller has not seen yet.
func (c *Controller) Selected(key string) ([]endpoint, bool) {
	c.dnsMu.RLock()
	defer c.dnsMu.RUnlock()
	eps, ok := c.matched[key]
	return eps, ok
}

// Synced is closed after the first full sync.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Run follows the cluster until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	events := c.ev.Subscribe()
	defer c.ev.Unsubscribe(events)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for ev := range events {
			c.note(ev)
		}
	}()
	tick := time.NewTicker(c.ResyncEvery)
	defer tick.Stop()
	c.pass(ctx, passFull)
	close(c.synced)
	for {
		select {
		case <-ctx.Done():
			return
		case <-closed:
			return
		case <-tick.C:
			c.pass(ctx, passFull)
		case <-c.passes.kick:
			c.pass(ctx, passChanges)
		}
	}
}

// note records what an event changed for the next pass and asks for it.
func (c *Controller) note(ev cluster.Event) {
	var sel map[string]string
	if c.Gate != nil {
		sel = c.Gate.Affected(ev)
	}
	p := c.passes
	p.mu.Lock()
	d := p.pending
	switch {
	case ev.Type == cluster.EventEntry && ev.Kind == KindEndpoint:
		d.eps[epKey{ev.Node, ev.Key}] = struct{}{}
	case ev.Type == cluster.EventObject && ev.Kind == KindService:
		d.svcs[ev.Key] = struct{}{}
	case sel != nil:
		d.gates = append(d.gates, sel)
	case ev.Kind == "" && ev.Type != cluster.EventMember:
		d.rescan = true // says not what changed: read everything again
	default:
		p.mu.Unlock()
		return // other kinds, and members (their entries have events of their own)
	}
	p.mu.Unlock()
	p.wake()
}

// reconcile brings the model and the read models up to date with what d
// names (or, for a full pass or a rescan, with everything in the store).
func (c *Controller) reconcile(ctx context.Context, kind passKind, d *dirty) {
	m := c.m
	touched := keySet{}
	if kind == passFull || d.rescan {
		c.readAll(touched)
	} else {
		claims := false
		for k := range d.svcs {
			o, ok := c.ev.Get(KindService, k)
			claims = m.setService(k, o, ok, touched) || claims
		}
		for k := range d.eps {
			e, ok := c.ev.Entry(k.owner, KindEndpoint, k.pod)
			m.setEndpoint(k, e.Value, ok, touched)
		}
		for _, sel := range d.gates {
			for _, k := range m.endpointsFor(sel) {
				for s := range m.servicesFor(m.eps[k].e.Labels) {
					touched[s] = struct{}{}
				}
			}
		}
		if claims || len(m.losers) > 0 {
			m.resolveClaims(touched)
		}
	}
	for s, older := range m.losers {
		if _, ok := touched[s]; ok {
			c.log.Error("service collides with an older one; left out until reassigned", "service", s, "older", older)
		}
		if r := m.svcs[s]; r != nil && r.writer == c.ev.Name() && c.Reassign != nil {
			go c.Reassign(s)
		}
	}
	var admit func(map[string]string) bool
	if c.Gate != nil {
		admit = c.Gate.Admit
	}
	dnsUpd := make(map[string]*dns.Service, len(touched))
	matchUpd := make(map[string][]endpoint, len(touched))
	for k := range touched {
		ns, inDP, ds, inDNS, matched := m.view(k, admit)
		matchUpd[k] = matched
		if inDP {
			c.want[k] = ns
		} else {
			delete(c.want, k)
		}
		if inDNS {
			dnsUpd[k] = &ds
		} else {
			dnsUpd[k] = nil
		}
	}
	if len(dnsUpd) > 0 {
		c.dnsMu.Lock()
		for k, ds := range dnsUpd {
			if ds == nil {
				delete(c.dnsTable, k)
			} else {
				c.dnsTable[k] = *ds
			}
		}
		for k, eps := range matchUpd {
			if eps == nil {
				delete(c.matched, k)
			} else {
				c.matched[k] = eps
			}
		}
		c.dnsMu.Unlock()
	}
	if c.dp == nil {
		return
	}
	if kind == passFull || c.applied == nil {
		list := make([]nft.Service, 0, len(c.want))
		for _, k := range sortedKeys(c.want) {
			list = append(list, c.want[k])
		}
		if err := c.dp.Sync(ctx, list); err != nil {
			c.failed("service rules: full sync", err)
			return
		}
		c.applied = maps.Clone(c.want)
		return
	}
	var upserts []nft.Service
	var deletes []string
	for k := range touched {
		s, ok := c.want[k]
		old, had := c.applied[k]
		switch {
		case ok && (!had || !reflect.DeepEqual(old, s)):
			upserts = append(upserts, s)
		case !ok && had:
			deletes = append(deletes, k)
		}
	}
	if len(upserts) == 0 && len(deletes) == 0 {
		return
	}
	if err := c.dp.Apply(ctx, upserts, deletes); err != nil {
		c.failed(fmt.Sprintf("service rules: update of %d services", len(upserts)+len(deletes)), err)
		return
	}
	for _, s := range upserts {
		c.applied[s.Key] = s
	}
	for _, k := range deletes {
		delete(c.applied, k)
	}
}

// failed forgets what the data plane holds (the next pass rewrites it
// whole) and asks for that pass in a second.
func (c *Controller) failed(what string, err error) {
	c.log.Error(what, "err", err)
	c.applied = nil
	if c.retry == nil {
		c.retry = time.AfterFunc(time.Second, c.passes.wake)
	} else {
		c.retry.Reset(time.Second)
	}
}

// readAll brings the model up to date with everything the store holds;
// every service counts as touched (admission may have changed unseen).
func (c *Controller) readAll(touched keySet) {
	m := c.m
	seen := make(keySet, len(m.svcs))
	for _, o := range c.ev.List(KindService) {
		seen[o.Key] = struct{}{}
		m.setService(o.Key, o, true, touched)
	}
	for k := range m.svcs {
		if _, ok := seen[k]; !ok {
			m.setService(k, cluster.Object{}, false, touched)
		}
	}
	live := make(map[epKey]struct{}, len(m.eps))
	for _, e := range c.ev.Entries(KindEndpoint) {
		k := epKey{e.Owner, e.Key}
		live[k] = struct{}{}
		m.setEndpoint(k, e.Value, true, touched)
	}
	for k := range m.eps {
		if _, ok := live[k]; !ok {
			m.setEndpoint(k, nil, false, touched)
		}
	}
	m.resolveClaims(touched)
	for k := range m.svcs {
		touched[k] = struct{}{}
	}
	// services gone from the store and from the rules
	for k := range c.want {
		if _, ok := m.svcs[k]; !ok {
			touched[k] = struct{}{}
		}
	}
}

func dnsService(s *herdv1.Service, eps []endpoint) dns.Service {
	sp := s.GetSpec()
	d := dns.Service{Namespace: sp.GetNamespace(), Name: sp.GetName(), Headless: sp.GetType() == TypeHeadless}
	if a, err := netip.ParseAddr(s.GetStatus().GetClusterIp()); err == nil {
		d.ClusterIP = a
	}
	for _, p := range sp.GetPorts() {
		d.Ports = append(d.Ports, dns.Port{Name: p.GetName(), Protocol: strings.ToLower(p.GetProtocol()), Port: uint16(p.GetPort())})
	}
	for _, e := range eps {
		if a, err := netip.ParseAddr(e.IP); err == nil && e.Ready {
			d.ReadyEndpoints = append(d.ReadyEndpoints, a)
		}
	}
	return d
}

// nftService is a service's data-plane view: per port, the ready
// endpoints at the resolved target port. Headless services have none.
func nftService(key string, s *herdv1.Service, eps []endpoint) (nft.Service, bool) {
	sp := s.GetSpec()
	vip, err := netip.ParseAddr(s.GetStatus().GetClusterIp())
	if sp.GetType() == TypeHeadless || err != nil {
		return nft.Service{}, false
	}
	out := nft.Service{Key: key, ClusterIP: vip, SessionAffinity: sp.GetSessionAffinity() == "ClientIP"}
	for _, p := range sp.GetPorts() {
		proto := nft.TCP
		if strings.EqualFold(p.GetProtocol(), "UDP") {
			proto = nft.UDP
		}
		np := nft.Port{Protocol: proto, Port: uint16(p.GetPort()), NodePort: uint16(p.GetNodePort())}
		for _, e := range eps {
			if !e.Ready {
				continue
			}
			ip, err := netip.ParseAddr(e.IP)
			if err != nil {
				continue
			}
			if tp := targetPort(p, e); tp != 0 {
				np.Endpoints = append(np.Endpoints, nft.Endpoint{IP: ip, Port: tp})
			}
		}
		out.Ports = append(out.Ports, np)
	}
	return out, true
}

// targetPort resolves a service port's target on one endpoint: a number
// as is, a name through the pod's container ports (0: the pod has no such
// port, so it is no backend for this port).
func targetPort(p *herdv1.ServicePort, e endpoint) uint16 {
	name := p.GetTargetPortName()
	if name == "" {
		if tp := p.GetTargetPort(); tp != 0 {
			return uint16(tp)
		}
		return uint16(p.GetPort())
	}
	for _, cp := range e.Ports {
		if cp.Name == name && strings.EqualFold(cp.Protocol, p.GetProtocol()) {
			return uint16(cp.Port)
		}
	}
	return 0
}
