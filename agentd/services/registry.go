// Package services is agentd's service machinery: the cluster-scoped service
// registry (cluster IPs and node ports allocated once and kept), the endpoint
// publisher (this node's pods, gossiped to every member) and the controller
// that turns both into the node's read models — the nftables data plane and
// the DNS answers.
//
// Roles stay apart (CQRS): Apply/Delete are the commands, the replicated
// objects in agentd/cluster are the write model, gossip is the event stream,
// and the nft maps and the DNS table are read models rebuilt from it.
package services

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Replicated kinds.
const (
	KindService  = "service"  // key namespace/name, value a marshaled herdv1.Service
	KindEndpoint = "endpoint" // per node, key pod name, value JSON (endpoint)
)

// Service types.
const (
	TypeClusterIP = "ClusterIP"
	TypeNodePort  = "NodePort"
	TypeHeadless  = "Headless"
)

// Errors the server maps to gRPC codes.
var (
	ErrNotFound   = errors.New("service not found")
	ErrTypeChange = errors.New("the type of a service cannot change")
	ErrConflict   = errors.New("conflict")
	ErrExhausted  = errors.New("range exhausted")
)

// Store is what the registry needs from the cluster (agentd/cluster).
type Store interface {
	Name() string
	Get(kind, key string) (cluster.Object, bool)
	List(kind string) []cluster.Object
	Put(kind, key string, value []byte) (uint64, error)
	Delete(kind, key string) error
	Versions(kind, key string) map[string]uint64
	Entries(kind string) []cluster.Entry
}

// RegistryStore is what the registry needs: a Store that also deletes
// conditionally, checked under its lock (a delete naming a uid must not
// remove another incarnation written meanwhile).
type RegistryStore interface {
	Store
	DeleteIf(kind, key string, check func(cluster.Object) error) (bool, error)
}

// Config configures a Registry.
type Config struct {
	ServiceCIDR netip.Prefix // cluster IPs come from here
	Domain      string       // cluster domain; default cluster.local
	// NodePortMin and NodePortMax bound allocated node ports (default
	// 30000-32767, as Kubernetes).
	NodePortMin, NodePortMax int
}

// Registry reads and writes services.
type Registry struct {
	st  RegistryStore
	cfg Config
	// mu serializes this node's allocations. It is not held while a
	// service is written (a write saves the cluster state, which at many
	// services costs milliseconds): applies in flight hold their cluster IP
	// and node ports in pending instead, so that concurrent applies share
	// one save and still never allocate the same address.
	mu      sync.Mutex
	pending map[string]*pendingService

	// decoded services by key, reused while the stored bytes are the same
	// (every allocation looks at every service: decoding them all each
	// time made creating N services cost N^2 decodes)
	cacheMu sync.Mutex
	cache   map[string]cachedService

	// Endpoints, if set, returns the endpoints a service's selector
	// selects (the services controller keeps them); nil decodes every
	// published endpoint on each read.
	Endpoints func(key string) ([]endpoint, bool)
}

// pendingService is an apply being written: done is closed once it is in
// the store (or failed).
type pendingService struct {
	svc  *herdv1.Service
	done chan struct{}
}

type cachedService struct {
	version uint64
	writer  string
	svc     *herdv1.Service
}

// NewRegistry checks cfg.
func NewRegistry(st RegistryStore, cfg Config) (*Registry, error) {
	if !cfg.ServiceCIDR.IsValid() || !cfg.ServiceCIDR.Addr().Is4() || cfg.ServiceCIDR.Bits() > 28 {
		return nil, fmt.Errorf("services: service CIDR %v: want an IPv4 network of at least /28", cfg.ServiceCIDR)
	}
	cfg.ServiceCIDR = cfg.ServiceCIDR.Masked()
	if cfg.Domain == "" {
		cfg.Domain = "cluster.local"
	}
	if cfg.NodePortMin == 0 {
		cfg.NodePortMin, cfg.NodePortMax = 30000, 32767
	}
	if cfg.NodePortMin < 1 || cfg.NodePortMax > 65535 || cfg.NodePortMin > cfg.NodePortMax {
		return nil, fmt.Errorf("services: node port range %d-%d invalid", cfg.NodePortMin, cfg.NodePortMax)
	}
	return &Registry{st: st, cfg: cfg}, nil
}

// Key is a service's key in the cluster: namespace/name.
func Key(namespace, name string) string {
	if namespace == "" {
		namespace = "default"
	}
	return namespace + "/" + name
}

func decode(o cluster.Object) (*herdv1.Service, error) {
	s := &herdv1.Service{}
	if err := proto.Unmarshal(o.Value, s); err != nil {
		return nil, fmt.Errorf("decode service %s: %w", o.Key, err)
	}
	return s, nil
}

func encode(s *herdv1.Service) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(s)
}

// all returns every service this node holds, by key. The values are
// shared with the cache: callers must not change them.
func (r *Registry) all() map[string]*herdv1.Service {
	objs := r.st.List(KindService)
	out := make(map[string]*herdv1.Service, len(objs))
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if r.cache == nil {
		r.cache = map[string]cachedService{}
	}
	for _, o := range objs {
		if c, ok := r.cache[o.Key]; ok && c.version == o.Version && c.writer == o.Writer {
			out[o.Key] = c.svc
			continue
		}
		if s, err := decode(o); err == nil {
			out[o.Key] = s
			r.cache[o.Key] = cachedService{version: o.Version, writer: o.Writer, svc: s}
		}
	}
	for k := range r.cache {
		if _, ok := out[k]; !ok {
			delete(r.cache, k)
		}
	}
	return out
}

// Apply creates a service or updates it in place, keeping its cluster IP,
// node ports and uid. in must be valid (spec.ValidateService). Applying the
// current spec again changes nothing, unless some live member lacks the
// current version: then it is written again (a new version re-replicates it).
func (r *Registry) Apply(in *herdv1.ServiceSpec) (*herdv1.Service, bool, error) {
	d := spec.DefaultService(in)
	key := Key(d.GetNamespace(), d.GetName())
	r.mu.Lock()
	// One apply of a key at a time: the next one builds on what the
	// previous wrote (its uid and addresses).
	for p := r.pending[key]; p != nil; p = r.pending[key] {
		r.mu.Unlock()
		<-p.done
		r.mu.Lock()
	}
	locked := true
	defer func() {
		if locked {
			r.mu.Unlock()
		}
	}()
	others := r.othersLocked()
	var cur *herdv1.Service
	if o, ok := r.st.Get(KindService, key); ok {
		s, err := decode(o)
		if err != nil {
			return nil, false, err
		}
		cur = s
	}
	delete(others, key)

	next := &herdv1.Service{Spec: d}
	if cur != nil {
		if cur.GetSpec().GetType() != d.GetType() {
			return nil, false, fmt.Errorf("%w: %s is %s, not %s (delete and recreate it)", ErrTypeChange, key, cur.GetSpec().GetType(), d.GetType())
		}
		next.Uid, next.CreatedAt = cur.GetUid(), cur.GetCreatedAt()
		next.Status = &herdv1.ServiceStatus{ClusterIp: cur.GetStatus().GetClusterIp()}
	} else {
		next.Uid, next.CreatedAt = newUID(), timestamppb.Now()
		next.Status = &herdv1.ServiceStatus{}
		if d.GetType() != TypeHeadless {
			ip, err := r.allocIP(key, others)
			if err != nil {
				return nil, false, err
			}
			next.Status.ClusterIp = ip.String()
		}
	}
	if err := r.assignNodePorts(key, d, cur.GetSpec(), others); err != nil {
		return nil, false, err
	}
	if cur != nil && proto.Equal(cur, next) && r.synced(key) {
		return r.withStatus(key, cur), false, nil
	}
	b, err := encode(next)
	if err != nil {
		return nil, false, err
	}
	p := &pendingService{svc: next, done: make(chan struct{})}
	if r.pending == nil {
		r.pending = map[string]*pendingService{}
	}
	r.pending[key] = p
	r.mu.Unlock()
	locked = false
	_, err = r.st.Put(KindService, key, b)
	r.mu.Lock()
	delete(r.pending, key)
	close(p.done)
	r.mu.Unlock()
	if err != nil {
		return nil, false, fmt.Errorf("write service %s: %w", key, err)
	}
	return r.withStatus(key, next), true, nil
}

// othersLocked is every service this node holds or is writing, by key;
// r.mu must be held.
func (r *Registry) othersLocked() map[string]*herdv1.Service {
	out := r.all()
	for k, p := range r.pending {
		out[k] = p.svc
	}
	return out
}

// Reassign gives a service that collides with an older one (two nodes
// allocated at the same moment) a free cluster IP and free node ports. Only
// what collides changes; a service that no longer collides is left alone.
func (r *Registry) Reassign(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.st.Get(KindService, key)
	if !ok {
		return nil
	}
	cur, err := decode(o)
	if err != nil {
		return err
	}
	others := r.othersLocked()
	delete(others, key)
	next := proto.Clone(cur).(*herdv1.Service)
	changed := false
	for _, s := range others {
		if older(s, cur) && s.GetStatus().GetClusterIp() != "" && s.GetStatus().GetClusterIp() == cur.GetStatus().GetClusterIp() {
			ip, err := r.allocIP(key, others)
			if err != nil {
				return err
			}
			next.Status.ClusterIp = ip.String()
			changed = true
			break
		}
	}
	taken := map[string]bool{}
	for _, s := range others {
		if !older(s, cur) {
			continue
		}
		for _, p := range s.GetSpec().GetPorts() {
			if p.GetNodePort() != 0 {
				taken[fmt.Sprintf("%s/%d", p.GetProtocol(), p.GetNodePort())] = true
			}
		}
	}
	for _, p := range next.GetSpec().GetPorts() {
		if p.GetNodePort() != 0 && taken[fmt.Sprintf("%s/%d", p.GetProtocol(), p.GetNodePort())] {
			p.NodePort = 0
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := r.assignNodePorts(key, next.GetSpec(), nil, others); err != nil {
		return err
	}
	b, err := encode(next)
	if err != nil {
		return err
	}
	if _, err := r.st.Put(KindService, key, b); err != nil {
		return fmt.Errorf("reassign service %s: %w", key, err)
	}
	return nil
}

// older reports whether a was created before b (uid breaks ties), the order
// in which collisions are settled everywhere.
func older(a, b *herdv1.Service) bool {
	ta, tb := a.GetCreatedAt().AsTime(), b.GetCreatedAt().AsTime()
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.GetUid() < b.GetUid()
}

// Get returns a service with its status as this node sees it.
func (r *Registry) Get(namespace, name string) (*herdv1.Service, error) {
	key := Key(namespace, name)
	o, ok := r.st.Get(KindService, key)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	s, err := decode(o)
	if err != nil {
		return nil, err
	}
	return r.withStatus(key, s), nil
}

// List returns the services of a namespace (every namespace when empty),
// sorted by key.
func (r *Registry) List(namespace string) []*herdv1.Service {
	var out []*herdv1.Service
	var eps []endpoint // decoded at the first service the controller cannot answer for
	decoded := false
	for _, o := range r.st.List(KindService) {
		if namespace != "" && !strings.HasPrefix(o.Key, namespace+"/") {
			continue
		}
		s, err := decode(o)
		if err != nil {
			continue
		}
		if r.Endpoints != nil {
			if sel, ok := r.Endpoints(o.Key); ok {
				out = append(out, r.withStatusSelected(o.Key, s, sel))
				continue
			}
		}
		if !decoded {
			eps, decoded = r.endpoints(), true
		}
		out = append(out, r.withStatusOf(o.Key, s, eps))
	}
	return out
}

// Delete deletes a service everywhere. It reports whether it existed. A
// uid other than "" must be the service's: another incarnation of the name
// is kept and spec.ErrOtherIncarnation returned.
func (r *Registry) Delete(namespace, name, uid string) (bool, error) {
	key := Key(namespace, name)
	existed, err := r.st.DeleteIf(KindService, key, func(o cluster.Object) error {
		return checkIncarnation(o, uid)
	})
	if err != nil {
		return false, fmt.Errorf("delete service %s: %w", key, err)
	}
	return existed, nil
}

func (r *Registry) synced(key string) bool {
	vs := r.st.Versions(KindService, key)
	mine := vs[r.st.Name()]
	for _, v := range vs {
		if v != mine {
			return false
		}
	}
	return true
}

// withStatus fills the observed part of the status: versions per live
// member, DNS name and endpoints.
func (r *Registry) withStatus(key string, s *herdv1.Service) *herdv1.Service {
	if r.Endpoints != nil {
		if eps, ok := r.Endpoints(key); ok {
			return r.withStatusSelected(key, s, eps)
		}
	}
	return r.withStatusOf(key, s, r.endpoints())
}

// endpoints decodes every published endpoint (once per read, not once per
// service).
func (r *Registry) endpoints() []endpoint {
	return decodeEndpoints(r.st.Entries(KindEndpoint))
}

func (r *Registry) withStatusOf(key string, s *herdv1.Service, eps []endpoint) *herdv1.Service {
	return r.withStatusSelected(key, s, selectEndpoints(eps, selectorOf(s)))
}

// withStatusSelected is withStatusOf with the service's endpoints selected
// already (sorted by IP).
func (r *Registry) withStatusSelected(key string, s *herdv1.Service, selected []endpoint) *herdv1.Service {
	s = proto.Clone(s).(*herdv1.Service)
	if s.Status == nil {
		s.Status = &herdv1.ServiceStatus{}
	}
	st := s.Status
	st.DnsName = s.GetSpec().GetName() + "." + s.GetSpec().GetNamespace() + ".svc." + r.cfg.Domain
	vs := r.st.Versions(KindService, key)
	st.Version = vs[r.st.Name()]
	st.Synced = true
	st.Members = nil
	for _, node := range sortedKeys(vs) {
		st.Members = append(st.Members, &herdv1.MemberVersion{Node: node, Version: vs[node]})
		if vs[node] != st.Version {
			st.Synced = false
		}
	}
	st.Endpoints = nil
	for _, e := range selected {
		st.Endpoints = append(st.Endpoints, &herdv1.ServiceEndpoint{Node: e.node, Pod: e.Pod, Ip: e.IP, Ready: e.Ready})
	}
	return s
}

// allocIP picks a free cluster IP: first candidate from a hash of the key
// (so that two nodes creating two services at once rarely collide), then
// the next free address. The network and broadcast addresses are skipped.
func (r *Registry) allocIP(key string, others map[string]*herdv1.Service) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, s := range others {
		if a, err := netip.ParseAddr(s.GetStatus().GetClusterIp()); err == nil {
			used[a] = true
		}
	}
	p := r.cfg.ServiceCIDR
	size := uint64(1) << (32 - p.Bits())
	base := p.Addr().As4()
	baseN := uint64(base[0])<<24 | uint64(base[1])<<16 | uint64(base[2])<<8 | uint64(base[3])
	start := hash(key) % size
	for i := uint64(0); i < size; i++ {
		off := (start + i) % size
		if off == 0 || off == size-1 {
			continue
		}
		n := baseN + off
		a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: no free cluster IP in %s", ErrExhausted, p)
}

// assignNodePorts keeps the node ports a port had (matched by protocol and
// name, then by protocol and port), checks requested ones against other
// services and allocates the rest.
func (r *Registry) assignNodePorts(key string, d, cur *herdv1.ServiceSpec, others map[string]*herdv1.Service) error {
	if d.GetType() != TypeNodePort {
		return nil
	}
	used := map[string]string{} // "proto/port" -> service
	for k, s := range others {
		for _, p := range s.GetSpec().GetPorts() {
			if p.GetNodePort() != 0 {
				used[fmt.Sprintf("%s/%d", p.GetProtocol(), p.GetNodePort())] = k
			}
		}
	}
	for i, p := range d.GetPorts() {
		if p.GetNodePort() == 0 {
			continue
		}
		if other, ok := used[fmt.Sprintf("%s/%d", p.GetProtocol(), p.GetNodePort())]; ok {
			return fmt.Errorf("%w: spec.ports[%d].node_port: %d/%s is taken by service %s", ErrConflict, i, p.GetNodePort(), p.GetProtocol(), other)
		}
	}
	mine := map[string]bool{}
	for _, p := range d.GetPorts() {
		if p.GetNodePort() != 0 {
			mine[fmt.Sprintf("%s/%d", p.GetProtocol(), p.GetNodePort())] = true
		}
	}
	for _, p := range d.GetPorts() {
		if p.GetNodePort() != 0 {
			continue
		}
		if np := previousNodePort(p, cur); np != 0 && !mine[fmt.Sprintf("%s/%d", p.GetProtocol(), np)] {
			p.NodePort = np
			mine[fmt.Sprintf("%s/%d", p.GetProtocol(), np)] = true
		}
	}
	span := uint64(r.cfg.NodePortMax - r.cfg.NodePortMin + 1)
	for i, p := range d.GetPorts() {
		if p.GetNodePort() != 0 {
			continue
		}
		start := hash(fmt.Sprintf("%s#%d", key, i)) % span
		for j := uint64(0); j < span; j++ {
			np := r.cfg.NodePortMin + int((start+j)%span)
			k := fmt.Sprintf("%s/%d", p.GetProtocol(), np)
			if _, taken := used[k]; !taken && !mine[k] {
				p.NodePort = int32(np)
				mine[k] = true
				break
			}
		}
		if p.GetNodePort() == 0 {
			return fmt.Errorf("%w: no free node port in %d-%d", ErrExhausted, r.cfg.NodePortMin, r.cfg.NodePortMax)
		}
	}
	return nil
}

func previousNodePort(p *herdv1.ServicePort, cur *herdv1.ServiceSpec) int32 {
	for _, c := range cur.GetPorts() {
		if c.GetProtocol() == p.GetProtocol() && c.GetName() != "" && c.GetName() == p.GetName() {
			return c.GetNodePort()
		}
	}
	for _, c := range cur.GetPorts() {
		if c.GetProtocol() == p.GetProtocol() && c.GetPort() == p.GetPort() {
			return c.GetNodePort()
		}
	}
	return 0
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
