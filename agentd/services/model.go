package services

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"sort"
	"strings"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/dns"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// model is the controller's decoded copy of the replicated services and
// endpoints, with the indexes that make one change cost what it touches:
// an endpoint is matched only against the services filed under one of its
// labels, a service only against the endpoints carrying one of its
// selector's labels. Every value is decoded once, when its bytes change.
type model struct {
	log  *slog.Logger
	svcs map[string]*svcRec
	eps  map[epKey]*epRec
	// epsByLabel: label pair -> endpoints carrying it.
	epsByLabel map[string]map[epKey]struct{}
	// svcsByPair: label pair -> services filed under it. A service is
	// filed under one pair of its selector: any endpoint it selects
	// carries every pair, so looking up an endpoint's labels finds it.
	svcsByPair map[string]map[string]struct{}
	// claimants: cluster IP or node port -> the services claiming it;
	// contested: the claims with more than one claimant.
	claimants map[claimKey]map[string]struct{}
	contested map[claimKey]struct{}
	// losers: services left out because an older one holds an address of
	// theirs (value: that older service).
	losers map[string]string
}

type epKey struct{ owner, pod string }

type epRec struct {
	raw []byte
	e   endpoint
}

type svcRec struct {
	raw     []byte
	writer  string
	svc     *herdv1.Service
	sel     map[string]string // selectorOf(svc): its selector and namespace
	filed   string            // the selector pair it is filed under; "": selects nothing
	members map[epKey]struct{}
	claims  []claimKey // nil: not in the data plane (headless, no cluster IP)
}

// claimKey is a cluster IP, or (when vip is invalid) a node port.
type claimKey struct {
	vip  netip.Addr
	port [2]uint16
}

func newModel(log *slog.Logger) *model {
	return &model{
		log:        log,
		svcs:       map[string]*svcRec{},
		eps:        map[epKey]*epRec{},
		epsByLabel: map[string]map[epKey]struct{}{},
		svcsByPair: map[string]map[string]struct{}{},
		claimants:  map[claimKey]map[string]struct{}{},
		contested:  map[claimKey]struct{}{},
		losers:     map[string]string{},
	}
}

func pair(k, v string) string { return k + "\x00" + v }

type keySet = map[string]struct{}

// setEndpoint records owner's entry for a pod (present false: withdrawn or
// its owner gone) and adds the services whose view changes to touched.
func (m *model) setEndpoint(k epKey, raw []byte, present bool, touched keySet) {
	old := m.eps[k]
	if present && old != nil && bytes.Equal(old.raw, raw) {
		return
	}
	var e endpoint
	if present {
		if err := json.Unmarshal(raw, &e); err != nil {
			m.log.Warn("skip undecodable endpoint", "node", k.owner, "pod", k.pod, "err", err)
			present = false
		}
		e.Labels = withNamespace(e.Labels, e.Namespace)
	}
	if old != nil {
		for s := range m.servicesFor(old.e.Labels) {
			delete(m.svcs[s].members, k)
			touched[s] = struct{}{}
		}
		for lk, lv := range old.e.Labels {
			p := pair(lk, lv)
			delete(m.epsByLabel[p], k)
			if len(m.epsByLabel[p]) == 0 {
				delete(m.epsByLabel, p)
			}
		}
		delete(m.eps, k)
	}
	if !present {
		return
	}
	e.node = k.owner
	m.eps[k] = &epRec{raw: raw, e: e}
	for lk, lv := range e.Labels {
		p := pair(lk, lv)
		set := m.epsByLabel[p]
		if set == nil {
			set = map[epKey]struct{}{}
			m.epsByLabel[p] = set
		}
		set[k] = struct{}{}
	}
	for s := range m.servicesFor(e.Labels) {
		m.svcs[s].members[k] = struct{}{}
		touched[s] = struct{}{}
	}
}

// servicesFor returns the services whose selector the labels satisfy.
func (m *model) servicesFor(labels map[string]string) keySet {
	out := keySet{}
	for lk, lv := range labels {
		for s := range m.svcsByPair[pair(lk, lv)] {
			if matches(labels, m.svcs[s].sel) {
				out[s] = struct{}{}
			}
		}
	}
	return out
}

// endpointsFor returns the endpoints a selector selects, looked up through
// its rarest label.
func (m *model) endpointsFor(selector map[string]string) []epKey {
	if len(selector) == 0 {
		return nil
	}
	var best map[epKey]struct{}
	first := true
	for k, v := range selector {
		set := m.epsByLabel[pair(k, v)]
		if first || len(set) < len(best) {
			best, first = set, false
		}
	}
	var out []epKey
	for k := range best {
		if matches(m.eps[k].e.Labels, selector) {
			out = append(out, k)
		}
	}
	return out
}

// setService records a service object (present false: deleted) and adds
// it to touched when it changed. It reports whether collisions must be
// settled again.
func (m *model) setService(key string, o cluster.Object, present bool, touched keySet) (claimsChanged bool) {
	old := m.svcs[key]
	if present && old != nil && old.writer == o.Writer && bytes.Equal(old.raw, o.Value) {
		return false
	}
	var s *herdv1.Service
	if present {
		var err error
		if s, err = decode(o); err != nil {
			m.log.Warn("skip undecodable service", "service", key, "err", err)
			present = false
		}
	}
	var oldClaims []claimKey
	if old != nil {
		oldClaims = old.claims
		if old.filed != "" {
			delete(m.svcsByPair[old.filed], key)
			if len(m.svcsByPair[old.filed]) == 0 {
				delete(m.svcsByPair, old.filed)
			}
		}
		m.unclaim(key, old.claims)
		delete(m.svcs, key)
		touched[key] = struct{}{}
	}
	if !present {
		return len(oldClaims) > 0
	}
	sel := selectorOf(s)
	r := &svcRec{raw: o.Value, writer: o.Writer, svc: s, sel: sel, members: map[epKey]struct{}{}, claims: claimsOf(s)}
	if len(sel) > 0 {
		// file under the pair fewest services share, so that an endpoint's
		// lookup meets few services that do not select it
		for _, k := range sortedKeys(sel) {
			if k == namespaceKey {
				continue // shared by the whole namespace: never the rarest
			}
			p := pair(k, sel[k])
			if r.filed == "" || len(m.svcsByPair[p]) < len(m.svcsByPair[r.filed]) {
				r.filed = p
			}
		}
		set := m.svcsByPair[r.filed]
		if set == nil {
			set = keySet{}
			m.svcsByPair[r.filed] = set
		}
		set[key] = struct{}{}
	}
	m.svcs[key] = r
	for _, k := range m.endpointsFor(sel) {
		r.members[k] = struct{}{}
	}
	m.claim(key, r.claims)
	touched[key] = struct{}{}
	// (its age decides collisions too, so any change counts)
	return len(oldClaims) > 0 || len(r.claims) > 0
}

// claimsOf lists what a service holds in the data plane: its cluster IP
// and node ports (none for a headless service or one without an address).
func claimsOf(s *herdv1.Service) []claimKey {
	sp := s.GetSpec()
	vip, err := netip.ParseAddr(s.GetStatus().GetClusterIp())
	if sp.GetType() == TypeHeadless || err != nil {
		return nil
	}
	out := []claimKey{{vip: vip}}
	for _, p := range sp.GetPorts() {
		if p.GetNodePort() == 0 {
			continue
		}
		proto := nft.TCP
		if strings.EqualFold(p.GetProtocol(), "UDP") {
			proto = nft.UDP
		}
		out = append(out, claimKey{port: [2]uint16{uint16(proto), uint16(p.GetNodePort())}})
	}
	return out
}

func (m *model) claim(key string, cs []claimKey) {
	for _, c := range cs {
		set := m.claimants[c]
		if set == nil {
			set = keySet{}
			m.claimants[c] = set
		}
		set[key] = struct{}{}
		if len(set) > 1 {
			m.contested[c] = struct{}{}
		}
	}
}

func (m *model) unclaim(key string, cs []claimKey) {
	for _, c := range cs {
		set := m.claimants[c]
		delete(set, key)
		switch len(set) {
		case 0:
			delete(m.claimants, c)
			fallthrough
		case 1:
			delete(m.contested, c)
		}
	}
}

// resolveClaims decides which services sharing an address are left out:
// oldest first, each takes its addresses unless one is held already (and
// then takes none), as if every service were taken in that order — only
// the services linked by shared addresses can lose, so only they are
// ordered. Services whose fate changes are added to touched.
func (m *model) resolveClaims(touched keySet) {
	if len(m.contested) == 0 && len(m.losers) == 0 {
		return
	}
	group := keySet{}
	var queue []string
	for c := range m.contested {
		for s := range m.claimants[c] {
			if _, ok := group[s]; !ok {
				group[s] = struct{}{}
				queue = append(queue, s)
			}
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, c := range m.svcs[s].claims {
			for o := range m.claimants[c] {
				if _, ok := group[o]; !ok {
					group[o] = struct{}{}
					queue = append(queue, o)
				}
			}
		}
	}
	order := make([]string, 0, len(group))
	for s := range group {
		order = append(order, s)
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := m.svcs[order[i]].svc, m.svcs[order[j]].svc
		if older(a, b) || older(b, a) {
			return older(a, b)
		}
		return order[i] < order[j] // the same age: the key decides, everywhere alike
	})
	held := map[claimKey]string{}
	losers := map[string]string{}
	for _, s := range order {
		cs := m.svcs[s].claims
		holder := ""
		for _, c := range cs {
			if h, ok := held[c]; ok {
				holder = h
				break
			}
		}
		if holder != "" {
			losers[s] = holder
			continue
		}
		for _, c := range cs {
			held[c] = s
		}
	}
	for s := range m.losers {
		if _, ok := losers[s]; !ok {
			touched[s] = struct{}{}
		}
	}
	for s := range losers {
		if _, ok := m.losers[s]; !ok {
			touched[s] = struct{}{}
		}
	}
	m.losers = losers
}

// view is what a service is in the read models now: its data-plane rules
// (inDP false: none) and its DNS entry (inDNS false: none, it is gone or
// left out).
// matched is every endpoint the selector selects, admitted or not (for
// the service's status; nil when the service is unknown).
func (m *model) view(key string, admit func(map[string]string) bool) (ns nft.Service, inDP bool, d dns.Service, inDNS bool, matched []endpoint) {
	r := m.svcs[key]
	if r == nil {
		return nft.Service{}, false, dns.Service{}, false, nil
	}
	matched = make([]endpoint, 0, len(r.members))
	for k := range r.members {
		matched = append(matched, m.eps[k].e)
	}
	sortEndpoints(matched)
	if _, lost := m.losers[key]; lost {
		return nft.Service{}, false, dns.Service{}, false, matched
	}
	sel := matched
	if admit != nil {
		sel = make([]endpoint, 0, len(matched))
		for _, e := range matched {
			if admit(e.Labels) {
				sel = append(sel, e)
			}
		}
	}
	ns, inDP = nftService(key, r.svc, sel)
	return ns, inDP, dnsService(r.svc, sel), true, matched
}

// sortEndpoints orders endpoints by IP, then owner and pod, so that every
// node lists a service's backends alike.
func sortEndpoints(eps []endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		a, b := eps[i], eps[j]
		if a.IP != b.IP {
			return a.IP < b.IP
		}
		if a.node != b.node {
			return a.node < b.node
		}
		return a.Pod < b.Pod
	})
}
