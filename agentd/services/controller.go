package services

import (
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/dns"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Dataplane is the node's service NAT (agentd/network/nft).
type Dataplane interface {
	Sync(ctx context.Context, svcs []nft.Service) error
	Upsert(ctx context.Context, s nft.Service) error
	Delete(ctx context.Context, key string) error
}

// Events is the cluster's event stream plus the reads the controller does.
type Events interface {
	Store
	Subscribe() <-chan cluster.Event
	Unsubscribe(<-chan cluster.Event)
	// EntrySeq: see cluster.Cluster.EntrySeq (for WaitApplied).
	EntrySeq(owner, kind, key string) (uint64, bool)
}

// Controller keeps the read models — the nft maps and the DNS table — equal
// to the replicated services and endpoints. Every change is applied
// incrementally (only services whose rules differ are rewritten); a full
// resync at start and every ResyncEvery repairs anything changed behind
// herd's back.
type Controller struct {
	ev          Events
	dp          Dataplane // nil: DNS only
	log         *slog.Logger
	ResyncEvery time.Duration

	// Reassign, if set, is called (in the background) for services this
	// node wrote that collide with an older service on a cluster IP or
	// node port: two nodes allocated at the same moment.
	Reassign func(key string)

	// Admit, if set, decides per endpoint (by its pod's labels) whether it
	// may be a backend at all; nil admits every ready endpoint. A
	// BlueGreen deployment's driver uses it to route only to the serving
	// revision. Set it before Run.
	Admit func(labels map[string]string) bool

	dnsTable atomic.Pointer[map[string]dns.Service]
	applied  map[string]nft.Service
	synced   chan struct{}
	passes   *passes // applied.go
}

// NewController returns a controller; call Run. dp may be nil.
func NewController(ev Events, dp Dataplane, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{ev: ev, dp: dp, log: log, ResyncEvery: time.Minute, synced: make(chan struct{}), passes: newPasses()}
	empty := map[string]dns.Service{}
	c.dnsTable.Store(&empty)
	return c
}

// Service answers DNS lookups (dns.Source).
func (c *Controller) Service(namespace, name string) (dns.Service, bool) {
	s, ok := (*c.dnsTable.Load())[namespace+"/"+name]
	return s, ok
}

// Synced is closed after the first full sync.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Run follows the cluster until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	events := c.ev.Subscribe()
	defer c.ev.Unsubscribe(events)
	tick := time.NewTicker(c.ResyncEvery)
	defer tick.Stop()
	full := true
	first := true
	for {
		c.pass(ctx, full)
		if first {
			close(c.synced)
			first = false
		}
		full = false
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			// coalesce a burst into one pass
			for drained := false; !drained; {
				select {
				case _, ok := <-events:
					if !ok {
						return
					}
				default:
					drained = true
				}
			}
		case <-tick.C:
			full = true
		case <-c.passes.kick:
		}
	}
}

// reconcile rebuilds both read models from the write model.
func (c *Controller) reconcile(ctx context.Context, full bool) {
	objs := c.ev.List(KindService)
	eps := decodeEndpoints(c.ev.Entries(KindEndpoint))
	table := make(map[string]dns.Service, len(objs))
	want := make(map[string]nft.Service, len(objs))
	claims := newClaims()
	for _, o := range byAge(objs, c.log) {
		s := o.svc
		sel := selectEndpoints(eps, s.GetSpec().GetSelector())
		if c.Admit != nil {
			kept := sel[:0]
			for _, e := range sel {
				if c.Admit(e.Labels) {
					kept = append(kept, e)
				}
			}
			sel = kept
		}
		ns, ok := nftService(o.Key, s, sel)
		if ok {
			if older := claims.take(ns); older != "" {
				// The older service keeps the address; this one stays out
				// of the read models until its writer reassigns it.
				c.log.Error("service collides with an older one; left out until reassigned", "service", o.Key, "older", older)
				if o.Writer == c.ev.Name() && c.Reassign != nil {
					go c.Reassign(o.Key)
				}
				continue
			}
			want[o.Key] = ns
		}
		table[o.Key] = dnsService(s, sel)
	}
	c.dnsTable.Store(&table)
	if c.dp == nil {
		return
	}
	if full || c.applied == nil {
		list := make([]nft.Service, 0, len(want))
		for _, k := range sortedKeys(want) {
			list = append(list, want[k])
		}
		if err := c.dp.Sync(ctx, list); err != nil {
			c.log.Error("service rules: full sync", "err", err)
			c.applied = nil // try again on the next event
			return
		}
		c.applied = want
		return
	}
	for k, s := range want {
		if old, ok := c.applied[k]; ok && reflect.DeepEqual(old, s) {
			continue
		}
		if err := c.dp.Upsert(ctx, s); err != nil {
			c.log.Error("service rules: update", "service", k, "err", err)
			c.applied = nil
			return
		}
		c.applied[k] = s
	}
	for k := range c.applied {
		if _, ok := want[k]; ok {
			continue
		}
		if err := c.dp.Delete(ctx, k); err != nil {
			c.log.Error("service rules: delete", "service", k, "err", err)
			c.applied = nil
			return
		}
		delete(c.applied, k)
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

type aged struct {
	cluster.Object
	svc *herdv1.Service
}

// byAge decodes services, oldest first (creation time, then uid), so that
// on a collision the older service wins everywhere alike.
func byAge(objs []cluster.Object, log *slog.Logger) []aged {
	out := make([]aged, 0, len(objs))
	for _, o := range objs {
		s, err := decode(o)
		if err != nil {
			log.Warn("skip undecodable service", "service", o.Key, "err", err)
			continue
		}
		out = append(out, aged{o, s})
	}
	sort.SliceStable(out, func(i, j int) bool { return older(out[i].svc, out[j].svc) })
	return out
}

// claims records which service holds each cluster IP and node port.
type claims struct {
	vips  map[netip.Addr]string
	ports map[[2]uint16]string
}

func newClaims() *claims {
	return &claims{vips: map[netip.Addr]string{}, ports: map[[2]uint16]string{}}
}

// take claims s's cluster IP and node ports; it returns the holder when one
// is taken already (and then claims nothing).
func (c *claims) take(s nft.Service) string {
	if k, ok := c.vips[s.ClusterIP]; ok {
		return k
	}
	for _, p := range s.Ports {
		if k, ok := c.ports[[2]uint16{uint16(p.Protocol), p.NodePort}]; ok && p.NodePort != 0 {
			return k
		}
	}
	c.vips[s.ClusterIP] = s.Key
	for _, p := range s.Ports {
		if p.NodePort != 0 {
			c.ports[[2]uint16{uint16(p.Protocol), p.NodePort}] = s.Key
		}
	}
	return ""
}
