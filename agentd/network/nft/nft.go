// Package nft programs herd's service NAT data plane: one nftables table
// (`table ip herd`) whose rule count does not depend on the number of
// services. Every service port is a set of elements in maps; the rules only
// dispatch through them.
//
// Layout (see `nft list table ip herd`):
//
//	map backends  { ip . l4proto . port . slot : ip . port }  // slot i -> endpoint i, i < k
//	map classes   { ip . l4proto . port : goto slots-<k> }    // k = min(endpoints, Slots)
//	set affinity  { ip . l4proto . port }        // ports that hash the client address instead of numgen
//	set clusterips{ ip }                         // every cluster IP: non-DNATed traffic to it is rejected
//	set nodeips   { ip }                         // addresses answering NodePorts
//	set hairpin   { ip . ip }                    // (e, e) for endpoints inside the pod CIDR
//
// A port with k endpoints has exactly k backends elements and one classes
// element. The services chain looks the port up in @classes and goes to
// chain slots-<k> (slots-1 ... slots-<Slots>, all created up front, so the
// rule count depends on Slots only): jhash of the client address mod k if
// the port is in @affinity, else numgen random mod k, then DNAT through
// @backends. A port without endpoints has no classes element: a VIP port
// falls through to the filter rule that rejects anything still addressed
// to a cluster IP; a NodePort is left to the node's own stack.
//
// Only the first Slots endpoints of a port (default 64) receive traffic.
// Raising Slots costs no map elements, but every slot chain is loaded on
// each full sync, and each one binding @backends makes the kernel walk
// that fixed-size map's buckets: 128 slots made a full sync of 1k services
// about 1.6x slower.
//
// NodePorts live in the same backends/affinity/classes maps under the
// pseudo address 0.0.0.0 (never a cluster IP), so one lookup path serves
// both.
package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the one nftables table herd owns (family ip).
const TableName = "herd"

// Marker is stored as the comment of every herd set; a table named herd
// without it is not herd's and is never modified.
const Marker = "managed-by=herd"

// Protocol is an L4 protocol of a service port.
type Protocol uint8

// Protocols (IANA numbers, as matched by meta l4proto).
const (
	TCP Protocol = unix.IPPROTO_TCP
	UDP Protocol = unix.IPPROTO_UDP
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Endpoint is one ready backend of a service port.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
}

// Port is one port of a service.
type Port struct {
	Protocol  Protocol
	Port      uint16
	NodePort  uint16     // 0: none
	Endpoints []Endpoint // ready endpoints only
}

// Service is what the data plane needs to know about a service.
type Service struct {
	Key             string // namespace/name
	ClusterIP       netip.Addr
	Ports           []Port
	SessionAffinity bool // by client IP
}

// Config configures a Dataplane.
type Config struct {
	Netns       string // path of a network namespace; "" = the current one
	ServiceCIDR netip.Prefix
	PodCIDR     netip.Prefix // cluster-wide pod range
	NodeIPs     []netip.Addr // addresses that answer NodePorts
	Slots       int          // max backend slots (served endpoints) per service port; default 64
}

// Dataplane owns `table ip herd` in one network namespace.
type Dataplane struct {
	mu    sync.Mutex
	cfg   Config
	conn  *nftables.Conn
	nsFd  int
	table *nftables.Table
	sets  sets
	svcs  map[string]Service
	// refcounts for elements shared between services
	vips     map[netip.Addr]int
	hairpin  map[netip.Addr]int
	vipOwner map[netip.Addr]string
	npOwner  map[[2]uint16]string
	// size of the backends map and elements in it
	capacity, nBackends int
}

type sets struct {
	backends, affinity, clusterips, nodeips, hairpin, classes *nftables.Set
}

var (
	typeSlot    = nftables.TypeMark // 4-byte host-endian integer that nft can print
	keyBackends = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, typeSlot)
	valBackends = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	keyPort     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	keyIPPair   = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
)

// chunk is the number of elements per netlink message (attributes are
// limited to 64 KiB).
const chunk = 1000

// New opens the namespace and takes ownership of `table ip herd` (creating it
// empty if absent). It refuses a table of that name that lacks herd's marker.
func New(cfg Config) (*Dataplane, error) {
	if cfg.Slots == 0 {
		cfg.Slots = 64
	}
	if cfg.Slots < 1 || cfg.Slots > 1<<16 {
		return nil, fmt.Errorf("nft: slots %d out of range", cfg.Slots)
	}
	for _, ip := range cfg.NodeIPs {
		if !ip.Is4() {
			return nil, fmt.Errorf("nft: node IP %s is not IPv4", ip)
		}
	}
	d := &Dataplane{cfg: cfg, nsFd: -1, svcs: map[string]Service{}, vips: map[netip.Addr]int{}, hairpin: map[netip.Addr]int{}}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if cfg.Netns != "" {
		fd, err := unix.Open(cfg.Netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("nft: open netns: %w", err)
		}
		d.nsFd = fd
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		d.closeFd()
		return nil, fmt.Errorf("nft: %w", err)
	}
	d.conn = c
	d.table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	if err := d.checkOwned(); err != nil {
		d.release()
		return nil, err
	}
	if err := d.Sync(context.Background(), nil); err != nil {
		d.release()
		return nil, err
	}
	return d, nil
}

// bigBuffers lets one transaction carry hundreds of thousands of elements
// (the whole batch goes to the kernel in one sendmsg, as nft does).
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 256<<20); e != nil {
			serr = e
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	}); err != nil {
		return err
	}
	return serr
}

// checkOwned fails if a `table ip herd` exists that herd did not create:
// herd's table carries Marker as the comment of the rules of its services
// chain (and of its sets, for people reading `nft list`; google/nftables
// does not parse set comments back).
func (d *Dataplane) checkOwned() error {
	tables, err := d.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("nft: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name != TableName {
			continue
		}
		chains, err := d.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("nft: list chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name != TableName || ch.Name != "services" {
				continue
			}
			rules, err := d.conn.GetRules(t, ch)
			if err != nil {
				return fmt.Errorf("nft: list rules: %w", err)
			}
			for _, r := range rules {
				if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && c == Marker {
					return nil
				}
			}
		}
		return fmt.Errorf("nft: table ip %s exists without herd's marker; refusing to touch it", TableName)
	}
	return nil
}

func (d *Dataplane) closeFd() {
	if d.nsFd >= 0 {
		unix.Close(d.nsFd)
		d.nsFd = -1
	}
}

// release releases the connection without touching the table.
func (d *Dataplane) release() {
	if d.conn != nil {
		_ = d.conn.CloseLasting()
	}
	d.closeFd()
}

// Close removes herd's table and releases the connection.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn.DelTable(d.table)
	err := d.conn.Flush()
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		err = nil
	}
	d.release()
	return err
}

// --- element encoding -------------------------------------------------------

func ip4(a netip.Addr) []byte { b := a.As4(); return b[:] }

func portKey(ip netip.Addr, p Protocol, port uint16) []byte {
	k := make([]byte, 0, 12)
	k = append(k, ip4(ip)...)
	k = append(k, byte(p), 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

func backendKey(ip netip.Addr, p Protocol, port uint16, slot int) []byte {
	// numgen and jhash write a host-endian u32 into the register
	return append(portKey(ip, p, port), binaryutil.NativeEndian.PutUint32(uint32(slot))...)
}

func backendVal(e Endpoint) []byte {
	v := append(ip4(e.IP), 0, 0, 0, 0)
	binary.BigEndian.PutUint16(v[4:], e.Port)
	return v
}

var nodePortAddr = netip.IPv4Unspecified()

// elems is everything one service contributes, keyed by string(key).
type elems struct {
	backends map[string][]byte
	affinity map[string]bool
	classes  map[string]int // port key -> number of backend slots
	vips     []netip.Addr
	hairpin  []netip.Addr
}

func newElems() elems {
	return elems{backends: map[string][]byte{}, affinity: map[string]bool{}, classes: map[string]int{}}
}

// slotsOf is the number of backend slots of a port: one per endpoint, at
// most Slots (endpoints past the first Slots get no traffic).
func (d *Dataplane) slotsOf(p Port) int { return min(len(p.Endpoints), d.cfg.Slots) }

// verdicts[k] is the @classes verdict of a port with k slots.
func (d *Dataplane) verdicts() []*expr.Verdict {
	v := make([]*expr.Verdict, d.cfg.Slots+1)
	for k := 1; k <= d.cfg.Slots; k++ {
		v[k] = &expr.Verdict{Kind: expr.VerdictGoto, Chain: slotChain(k)}
	}
	return v
}

func (d *Dataplane) elemsOf(s Service) elems {
	e := newElems()
	if !s.ClusterIP.IsValid() {
		return e
	}
	e.vips = append(e.vips, s.ClusterIP)
	for _, p := range s.Ports {
		addrs := []struct {
			ip   netip.Addr
			port uint16
		}{{s.ClusterIP, p.Port}}
		if p.NodePort != 0 {
			addrs = append(addrs, struct {
				ip   netip.Addr
				port uint16
			}{nodePortAddr, p.NodePort})
		}
		for _, a := range addrs {
			if s.SessionAffinity {
				e.affinity[string(portKey(a.ip, p.Protocol, a.port))] = true
			}
			k := d.slotsOf(p)
			if k == 0 {
				continue
			}
			e.classes[string(portKey(a.ip, p.Protocol, a.port))] = k
			for slot := 0; slot < k; slot++ {
				e.backends[string(backendKey(a.ip, p.Protocol, a.port, slot))] = backendVal(p.Endpoints[slot])
			}
		}
	}
	e.hairpin = d.elemsHairpin(s)
	return e
}

// elemsHairpin lists the distinct endpoints of s inside the pod CIDR.
func (d *Dataplane) elemsHairpin(s Service) []netip.Addr {
	var out []netip.Addr
	for _, p := range s.Ports {
		for _, ep := range p.Endpoints {
			if d.cfg.PodCIDR.IsValid() && d.cfg.PodCIDR.Contains(ep.IP) && !slices.Contains(out, ep.IP) {
				out = append(out, ep.IP)
			}
		}
	}
	return out
}

func (d *Dataplane) validate(s Service) error {
	if err := validate(s); err != nil {
		return err
	}
	if d.cfg.ServiceCIDR.IsValid() && !d.cfg.ServiceCIDR.Contains(s.ClusterIP) {
		return fmt.Errorf("nft: service %s: cluster IP %s outside the service CIDR %s", s.Key, s.ClusterIP, d.cfg.ServiceCIDR)
	}
	return nil
}

func validate(s Service) error {
	if s.Key == "" {
		return errors.New("nft: service without key")
	}
	if !s.ClusterIP.Is4() {
		return fmt.Errorf("nft: service %s: cluster IP %s is not IPv4", s.Key, s.ClusterIP)
	}
	if s.ClusterIP.IsUnspecified() {
		return fmt.Errorf("nft: service %s: unspecified cluster IP", s.Key)
	}
	for _, p := range s.Ports {
		if p.Protocol != TCP && p.Protocol != UDP {
			return fmt.Errorf("nft: service %s: unsupported protocol %d", s.Key, p.Protocol)
		}
		if p.Port == 0 {
			return fmt.Errorf("nft: service %s: port 0", s.Key)
		}
		for _, e := range p.Endpoints {
			if !e.IP.Is4() || e.Port == 0 {
				return fmt.Errorf("nft: service %s: bad endpoint %s:%d", s.Key, e.IP, e.Port)
			}
		}
	}
	return nil
}

// conflicts refuses two services sharing a cluster IP or a NodePort, and
// duplicate ports within a service.
func conflicts(svcs []Service) error {
	vips := map[netip.Addr]string{}
	nodePorts := map[[2]uint16]string{}
	for _, s := range svcs {
		if o, ok := vips[s.ClusterIP]; ok && o != s.Key {
			return fmt.Errorf("nft: services %s and %s share cluster IP %s", o, s.Key, s.ClusterIP)
		}
		vips[s.ClusterIP] = s.Key
		ports := map[[2]uint16]bool{}
		for _, p := range s.Ports {
			k := [2]uint16{uint16(p.Protocol), p.Port}
			if ports[k] {
				return fmt.Errorf("nft: service %s: port %s/%d twice", s.Key, p.Protocol, p.Port)
			}
			ports[k] = true
			if p.NodePort == 0 {
				continue
			}
			np := [2]uint16{uint16(p.Protocol), p.NodePort}
			if o, ok := nodePorts[np]; ok {
				return fmt.Errorf("nft: services %s and %s share node port %s/%d", o, s.Key, p.Protocol, p.NodePort)
			}
			nodePorts[np] = s.Key
		}
	}
	return nil
}

func nodePortOf(p Port) [2]uint16 { return [2]uint16{uint16(p.Protocol), p.NodePort} }

// index records which service owns each cluster IP and node port.
func (d *Dataplane) index(s Service, add bool) {
	if add {
		d.vipOwner[s.ClusterIP] = s.Key
	} else if d.vipOwner[s.ClusterIP] == s.Key {
		delete(d.vipOwner, s.ClusterIP)
	}
	for _, p := range s.Ports {
		if p.NodePort == 0 {
			continue
		}
		if add {
			d.npOwner[nodePortOf(p)] = s.Key
		} else if d.npOwner[nodePortOf(p)] == s.Key {
			delete(d.npOwner, nodePortOf(p))
		}
	}
}

func clone(s Service) Service {
	s.Ports = slices.Clone(s.Ports)
	for i := range s.Ports {
		s.Ports[i].Endpoints = slices.Clone(s.Ports[i].Endpoints)
	}
	return s
}

// --- batches ---------------------------------------------------------------

func (d *Dataplane) add(s *nftables.Set, el []nftables.SetElement) error {
	for len(el) > 0 {
		n := min(chunk, len(el))
		if err := d.conn.SetAddElements(s, el[:n]); err != nil {
			return err
		}
		el = el[n:]
	}
	return nil
}

func (d *Dataplane) del(s *nftables.Set, el []nftables.SetElement) error {
	for len(el) > 0 {
		n := min(chunk, len(el))
		if err := d.conn.SetDeleteElements(s, el[:n]); err != nil {
			return err
		}
		el = el[n:]
	}
	return nil
}

func ipElems(ips []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ips))
	for _, ip := range ips {
		out = append(out, nftables.SetElement{Key: ip4(ip)})
	}
	return out
}

func pairElems(ips []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ips))
	for _, ip := range ips {
		out = append(out, nftables.SetElement{Key: append(ip4(ip), ip4(ip)...)})
	}
	return out
}

// Sync replaces the whole content of the table with svcs, in one atomic
// netlink transaction (delete table + recreate).
func (d *Dataplane) Sync(ctx context.Context, svcs []Service) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range svcs {
		if err := d.validate(s); err != nil {
			return err
		}
		if seen[s.Key] {
			return fmt.Errorf("nft: duplicate service %s", s.Key)
		}
		seen[s.Key] = true
	}
	if err := conflicts(svcs); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncLocked(svcs)
}

func (d *Dataplane) syncLocked(svcs []Service) error {
	c := d.conn
	svcMap := make(map[string]Service, len(svcs))
	vips := make(map[netip.Addr]int, len(svcs))
	hairpin := map[netip.Addr]int{}
	// Elements are generated straight into one arena (no per-element maps
	// or allocations): a full sync of 10k services is 640k elements.
	nb, nc := 0, 0
	for _, s := range svcs {
		for _, p := range s.Ports {
			if k := d.slotsOf(p); k > 0 {
				nb += k
				nc++
				if p.NodePort != 0 {
					nb += k
					nc++
				}
			}
		}
	}
	// The backends map is a fixed-size kernel hash (much faster to fill than
	// the resizable one); leave room for growth, Upsert resyncs when full.
	// classes (the same size) has at most one element per backend. The
	// kernel gives a fixed-size hash roundup_pow_of_two(size*4/3) buckets,
	// and walks all of them once per chain binding @backends when the rules
	// are loaded (a fixed cost of every full sync): 3<<n is exactly 4<<n
	// buckets, a power of two would get twice as many.
	capacity := uint32(3 << 10)
	for capacity < uint32(2*nb) {
		capacity <<= 1
	}
	c.AddTable(d.table) // no-op if present; makes the delete below valid
	c.DelTable(d.table)
	d.table = c.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
	if err := d.addSkeleton(capacity); err != nil {
		return err
	}
	arena := make([]byte, 0, nb*24+nc*12)
	backends := make([]nftables.SetElement, 0, nb)
	classes := make([]nftables.SetElement, 0, nc)
	verdicts := d.verdicts()
	var affinity []nftables.SetElement
	addPort := func(ip netip.Addr, p Port, port uint16, aff bool) {
		if aff {
			affinity = append(affinity, nftables.SetElement{Key: portKey(ip, p.Protocol, port)})
		}
		k := d.slotsOf(p)
		if k == 0 {
			return
		}
		a := ip.As4()
		off := len(arena)
		arena = append(arena, a[0], a[1], a[2], a[3], byte(p.Protocol), 0, 0, 0, byte(port>>8), byte(port), 0, 0)
		classes = append(classes, nftables.SetElement{Key: arena[off : off+12 : off+12], VerdictData: verdicts[k]})
		for slot := 0; slot < k; slot++ {
			e := p.Endpoints[slot]
			ea := e.IP.As4()
			off := len(arena)
			arena = append(arena, a[0], a[1], a[2], a[3], byte(p.Protocol), 0, 0, 0, byte(port>>8), byte(port), 0, 0)
			arena = binary.NativeEndian.AppendUint32(arena, uint32(slot))
			arena = append(arena, ea[0], ea[1], ea[2], ea[3], byte(e.Port>>8), byte(e.Port), 0, 0)
			backends = append(backends, nftables.SetElement{Key: arena[off : off+16 : off+16], Val: arena[off+16 : off+24 : off+24]})
		}
	}
	for _, s := range svcs {
		s = clone(s)
		svcMap[s.Key] = s
		vips[s.ClusterIP]++
		for _, p := range s.Ports {
			addPort(s.ClusterIP, p, p.Port, s.SessionAffinity)
			if p.NodePort != 0 {
				addPort(nodePortAddr, p, p.NodePort, s.SessionAffinity)
			}
		}
		for _, ip := range d.elemsHairpin(s) {
			hairpin[ip]++
		}
	}
	errs := []error{
		d.add(d.sets.backends, backends),
		d.add(d.sets.classes, classes), // after the slot chains and backends they point at
		d.add(d.sets.affinity, affinity),
		d.add(d.sets.clusterips, ipElems(mapKeys(vips))),
		d.add(d.sets.nodeips, ipElems(d.cfg.NodeIPs)),
		d.add(d.sets.hairpin, pairElems(mapKeys(hairpin))),
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nft: sync: %w", err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: sync: %w", err)
	}
	d.svcs, d.vips, d.hairpin = svcMap, vips, hairpin
	d.vipOwner, d.npOwner = make(map[netip.Addr]string, len(svcMap)), map[[2]uint16]string{}
	for _, s := range svcMap {
		d.index(s, true)
	}
	d.capacity, d.nBackends = int(capacity), len(backends)
	return nil
}

func mapKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Upsert adds or replaces one service, in one atomic transaction that only
// touches that service's elements.
func (d *Dataplane) Upsert(ctx context.Context, s Service) error {
	return d.Apply(ctx, []Service{s}, nil)
}

// Delete removes one service (no-op if unknown).
func (d *Dataplane) Delete(ctx context.Context, key string) error {
	return d.Apply(ctx, nil, []string{key})
}

// change is one service's part of a batch: old (if had) becomes s (nil:
// deleted).
type change struct {
	old Service
	had bool
	s   *Service
}

// Apply adds or replaces the services in upserts and removes those in
// deletes (unknown keys are no-ops), in one atomic transaction that touches
// only their elements: the kernel switches from the old rules to the new
// ones at once, so a burst of changes costs one commit. A cluster IP or
// node port may move between services of the same batch.
func (d *Dataplane) Apply(ctx context.Context, upserts []Service, deletes []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	touched := make(map[string]bool, len(upserts)+len(deletes))
	for i, s := range upserts {
		if err := d.validate(s); err != nil {
			return err
		}
		if touched[s.Key] {
			return fmt.Errorf("nft: service %s twice in one batch", s.Key)
		}
		touched[s.Key] = true
		upserts[i] = clone(s)
	}
	for _, k := range deletes {
		if touched[k] {
			return fmt.Errorf("nft: service %s twice in one batch", k)
		}
		touched[k] = true
	}
	if err := conflicts(upserts); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// An address held by a service outside the batch stays its own.
	for _, s := range upserts {
		if o, ok := d.vipOwner[s.ClusterIP]; ok && o != s.Key && !touched[o] {
			return fmt.Errorf("nft: services %s and %s share cluster IP %s", o, s.Key, s.ClusterIP)
		}
		for _, p := range s.Ports {
			if o, ok := d.npOwner[nodePortOf(p)]; ok && p.NodePort != 0 && o != s.Key && !touched[o] {
				return fmt.Errorf("nft: services %s and %s share node port %s/%d", o, s.Key, p.Protocol, p.NodePort)
			}
		}
	}
	changes := make([]change, 0, len(touched))
	for i := range upserts {
		old, had := d.svcs[upserts[i].Key]
		changes = append(changes, change{old: old, had: had, s: &upserts[i]})
	}
	for _, k := range deletes {
		if old, had := d.svcs[k]; had {
			changes = append(changes, change{old: old, had: true})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return d.apply(changes)
}

// apply diffs each change's old elements against its new ones and commits
// them all in one batch.
func (d *Dataplane) apply(changes []change) error {
	var bDel, bAdd, aDel, aAdd, cDel, cAdd []nftables.SetElement
	var oldVIPs, newVIPs, oldHP, newHP []netip.Addr
	verdicts := d.verdicts()
	for _, ch := range changes {
		oe, ne := newElems(), newElems()
		if ch.had {
			oe = d.elemsOf(ch.old)
		}
		if ch.s != nil {
			ne = d.elemsOf(*ch.s)
		}
		// a port whose slot count changes is deleted and re-added
		for k, n := range oe.classes {
			if ne.classes[k] != n {
				cDel = append(cDel, nftables.SetElement{Key: []byte(k)})
			}
		}
		for k, n := range ne.classes {
			if oe.classes[k] != n {
				cAdd = append(cAdd, nftables.SetElement{Key: []byte(k), VerdictData: verdicts[n]})
			}
		}
		for k, v := range oe.backends {
			nv, ok := ne.backends[k]
			if !ok || string(nv) != string(v) {
				bDel = append(bDel, nftables.SetElement{Key: []byte(k)})
			}
		}
		for k, v := range ne.backends {
			ov, ok := oe.backends[k]
			if !ok || string(ov) != string(v) {
				bAdd = append(bAdd, nftables.SetElement{Key: []byte(k), Val: v})
			}
		}
		for k := range oe.affinity {
			if !ne.affinity[k] {
				aDel = append(aDel, nftables.SetElement{Key: []byte(k)})
			}
		}
		for k := range ne.affinity {
			if !oe.affinity[k] {
				aAdd = append(aAdd, nftables.SetElement{Key: []byte(k)})
			}
		}
		oldVIPs, newVIPs = append(oldVIPs, oe.vips...), append(newVIPs, ne.vips...)
		oldHP, newHP = append(oldHP, oe.hairpin...), append(newHP, ne.hairpin...)
	}
	if n := d.nBackends + len(bAdd) - len(bDel); n > d.capacity {
		// the map is full: rebuild everything with a larger one
		gone := make(map[string]bool, len(changes))
		for _, ch := range changes {
			gone[ch.old.Key] = true
		}
		all := make([]Service, 0, len(d.svcs)+len(changes))
		for k, o := range d.svcs {
			if !gone[k] {
				all = append(all, o)
			}
		}
		for _, ch := range changes {
			if ch.s != nil {
				all = append(all, *ch.s)
			}
		}
		return d.syncLocked(all)
	}
	// Shared elements (cluster IPs, hairpin pairs) change with their
	// reference counts over the whole batch, so that one moving between
	// services of the batch is neither deleted twice nor left out.
	vips, vDel, vAdd := refDiff(d.vips, oldVIPs, newVIPs)
	hp, hDel, hAdd := refDiff(d.hairpin, oldHP, newHP)
	// One atomic batch: deletions first (classes before the backends they
	// count), additions last (backends before the classes that count them).
	errs := []error{
		d.del(d.sets.classes, cDel),
		d.del(d.sets.backends, bDel),
		d.del(d.sets.affinity, aDel),
		d.del(d.sets.clusterips, ipElems(vDel)),
		d.del(d.sets.hairpin, pairElems(hDel)),
		d.add(d.sets.backends, bAdd),
		d.add(d.sets.classes, cAdd),
		d.add(d.sets.affinity, aAdd),
		d.add(d.sets.clusterips, ipElems(vAdd)),
		d.add(d.sets.hairpin, pairElems(hAdd)),
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	if err := d.conn.Flush(); err != nil {
		return fmt.Errorf("nft: update %s: %w (a full Sync repairs the table)", batchName(changes), err)
	}
	for _, ch := range changes {
		if ch.had {
			d.index(ch.old, false)
			delete(d.svcs, ch.old.Key)
		}
	}
	for _, ch := range changes {
		if ch.s != nil {
			d.svcs[ch.s.Key] = *ch.s
			d.index(*ch.s, true)
		}
	}
	setCounts(d.vips, vips)
	setCounts(d.hairpin, hp)
	d.nBackends += len(bAdd) - len(bDel)
	return nil
}

// batchName names a batch in errors: its service, or how many.
func batchName(changes []change) string {
	if len(changes) == 1 {
		return svcKey(changes[0].old, changes[0].s)
	}
	return fmt.Sprintf("%d services", len(changes))
}

func svcKey(old Service, s *Service) string {
	if s != nil {
		return s.Key
	}
	return old.Key
}

// refDiff works out -old +cur for the elements they name, without
// copying counts (a data plane of 10k services has 100k hairpin
// endpoints: a copy per change would cost more than the change): it
// returns the touched elements' new counts, to be set with setCounts once
// the kernel took the batch, and the elements that disappear and appear.
func refDiff(counts map[netip.Addr]int, old, cur []netip.Addr) (map[netip.Addr]int, []netip.Addr, []netip.Addr) {
	after := make(map[netip.Addr]int, len(old)+len(cur))
	for _, ip := range old {
		if _, ok := after[ip]; !ok {
			after[ip] = counts[ip]
		}
		after[ip]--
	}
	for _, ip := range cur {
		if _, ok := after[ip]; !ok {
			after[ip] = counts[ip]
		}
		after[ip]++
	}
	var del, add []netip.Addr
	for ip, n := range after {
		switch before := counts[ip]; {
		case before > 0 && n <= 0:
			del = append(del, ip)
		case before <= 0 && n > 0:
			add = append(add, ip)
		}
	}
	return after, del, add
}

// setCounts writes refDiff's new counts into counts.
func setCounts(counts, after map[netip.Addr]int) {
	for ip, n := range after {
		if n <= 0 {
			delete(counts, ip)
		} else {
			counts[ip] = n
		}
	}
}

// Services returns the keys currently programmed.
func (d *Dataplane) Services() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := mapKeys(d.svcs)
	slices.Sort(keys)
	return keys
}
