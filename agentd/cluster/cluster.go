// Package cluster forms a cluster of agentds without a control plane:
// membership and failure detection through hashicorp/memberlist (gossip always
// encrypted), a pod CIDR per node allocated from the cluster CIDR, cluster-scoped
// replicated objects (last writer wins by Lamport version, then writer name)
// and per-node published entries that vanish when their owner dies or leaves.
//
// Propagation: every change is gossiped (memberlist's TransmitLimitedQueue,
// re-gossiped by every node that learns something new, large messages sent
// over TCP to every member) and repaired by memberlist's periodic push/pull,
// which exchanges the whole state between two nodes (anti-entropy). A node
// that joins gets everything in the push/pull of its Join.
//
// Call and Handle are point-to-point requests to one member, never gossiped
// (for what must reach only chosen members); SetLabels publishes node labels.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// kindPodCIDR is the internal replicated kind recording pod CIDR claims:
// key = node name, value = prefix.
const kindPodCIDR = "_podcidr"

// maxGossipPayload is the largest message sent through UDP gossip; larger
// ones go to every member over TCP.
const maxGossipPayload = 1000

// Config configures a Cluster.
type Config struct {
	NodeName      string
	BindAddr      string // explicit address to bind gossip (TCP+UDP) to
	BindPort      int    // 0 picks a free port (see Addr)
	AdvertiseAddr string // defaults to BindAddr
	AdvertisePort int    // defaults to the bound port

	// SecretKey is the 32-byte AES-256-GCM gossip key. Required.
	SecretKey []byte

	ClusterCIDR  netip.Prefix // e.g. 10.244.0.0/16
	NodeCIDRBits int          // e.g. 24: each node gets one /24
	NodeIP       netip.Addr   // published for host-gw routes and NodePort

	Persist Persister // required; MemPersister for tests
	Logger  *slog.Logger

	// TombstoneTTL is how long deleted objects and withdrawn entries are
	// remembered (so that anti-entropy does not resurrect them), and how long
	// dead or left members stay listed. Default 1h.
	TombstoneTTL time.Duration

	// ReconnectInterval is how often this node tries to join again the
	// members it holds dead (Serf's reconnect): memberlist gossips to dead
	// members only for a short while, so without it a partition that
	// lasts longer never heals. Default 30 s; negative disables.
	ReconnectInterval time.Duration

	// Tune, if set, adjusts the memberlist configuration last (timings, in
	// tests). It must not replace Delegate, Events, SecretKey or Name.
	Tune func(*memberlist.Config)

	// Identity signs what this node publishes and checks what members
	// publish (sign.go). Nil: nothing is signed or checked (tests of
	// this package only; agentd always sets it).
	Identity *Identity
}

type objRec struct {
	wireObject
	deletedAt time.Time
}

type entRec struct {
	seq       uint64
	value     []byte
	deleted   bool
	deletedAt time.Time
	fp, sig   []byte // the owner's signature (sign.go)
}

type ownerState struct {
	epoch   int64
	gone    bool // declared dead or left: reject its entries of this epoch
	entries map[string]*entRec
}

type nodeInfo struct {
	addr    netip.AddrPort
	meta    nodeMeta
	state   MemberState
	changed time.Time
}

// Cluster is one node's view of, and membership in, the cluster.
type Cluster struct {
	cfg   Config
	name  string
	log   *slog.Logger
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	epoch int64
	addr  netip.AddrPort

	mu           sync.Mutex
	clock        uint64
	objects      map[string]*objRec
	digest       uint64
	liveCount    int
	owners       map[string]*ownerState
	seq          uint64
	nodes        map[string]*nodeInfo
	leaving      map[string]bool
	peerVersions map[string]map[string]uint64
	podCIDR      netip.Prefix
	joined       bool
	// claims indexes the valid pod CIDR records by member (claims.go);
	// refusedLogged remembers refused claims already logged.
	claims        map[string]claimRec
	refusedLogged map[string]string

	saveMu sync.Mutex
	// changes counts calls of save (under mu); savedUpTo is the count the
	// last save covered and saveErr its result (under saveMu).
	changes   uint64
	savedUpTo uint64
	saveErr   error

	subMu sync.Mutex
	subs  map[<-chan Event]*subscriber

	ids     idState
	keyring *memberlist.Keyring

	metaKick  chan struct{}
	saveKick  chan struct{}
	cidrKick  chan struct{}
	resync    chan string // addresses of members back from the dead: push/pull with them
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	left      bool

	drop atomic.Bool // test hook: ignore incoming objects and entries (a lagging member)

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc
}

func (c *Cluster) dropIncoming() bool { return c.drop.Load() }

func objKey(kind, key string) string { return kind + "\x00" + key }

func splitKey(k string) (string, string) {
	kind, key, _ := strings.Cut(k, "\x00")
	return kind, key
}

// New validates cfg, loads persisted state and starts gossip (bound, not yet
// joined to anyone). Call Join to join a cluster or, with no addresses, to
// bootstrap one; the node claims its pod CIDR then.
func New(cfg Config) (*Cluster, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("cluster: NodeName is required")
	}
	if cfg.BindAddr == "" {
		return nil, errors.New("cluster: BindAddr is required (bind explicitly)")
	}
	if len(cfg.SecretKey) != 32 {
		return nil, fmt.Errorf("cluster: SecretKey must be 32 bytes (AES-256-GCM), got %d", len(cfg.SecretKey))
	}
	if !cfg.ClusterCIDR.IsValid() {
		return nil, errors.New("cluster: ClusterCIDR is required")
	}
	cfg.ClusterCIDR = cfg.ClusterCIDR.Masked()
	if cfg.NodeCIDRBits <= cfg.ClusterCIDR.Bits() || cfg.NodeCIDRBits > cfg.ClusterCIDR.Addr().BitLen() {
		return nil, fmt.Errorf("cluster: NodeCIDRBits %d must be longer than the cluster CIDR's /%d and at most %d",
			cfg.NodeCIDRBits, cfg.ClusterCIDR.Bits(), cfg.ClusterCIDR.Addr().BitLen())
	}
	if cfg.Persist == nil {
		return nil, errors.New("cluster: Persist is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ReconnectInterval == 0 {
		cfg.ReconnectInterval = 30 * time.Second
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = time.Hour
	}
	if err := checkIdentity(cfg.Identity, cfg.NodeName); err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:          cfg,
		name:         cfg.NodeName,
		log:          cfg.Logger.With("component", "cluster", "node", cfg.NodeName),
		epoch:        time.Now().UnixNano(),
		objects:      map[string]*objRec{},
		owners:       map[string]*ownerState{},
		nodes:        map[string]*nodeInfo{},
		leaving:      map[string]bool{},
		peerVersions: map[string]map[string]uint64{},
		subs:         map[<-chan Event]*subscriber{},
		metaKick:     make(chan struct{}, 1),
		saveKick:     make(chan struct{}, 1),
		cidrKick:     make(chan struct{}, 1),
		resync:       make(chan string, 16),
		stop:         make(chan struct{}),
	}
	c.ids.certs, c.ids.pending = map[string]*signer{}, map[string]*pendingItems{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.owners[c.name] = &ownerState{epoch: c.epoch, entries: map[string]*entRec{}}
	// Entry sequence numbers start at the epoch, so that they grow across
	// restarts too (see EntrySeq).
	c.seq = uint64(c.epoch)
	if err := c.load(); err != nil {
		c.cancel()
		return nil, err
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertiseAddr == "" && cfg.BindAddr != "" {
		if ip := net.ParseIP(cfg.BindAddr); ip != nil && !ip.IsUnspecified() {
			mc.AdvertiseAddr = cfg.BindAddr
		}
	}
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	mc.Logger = log.New(&logBridge{l: c.log}, "", 0)
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	mc.Name = cfg.NodeName
	// A keyring of our own, so that the key can be rotated (keyring.go).
	kr, err := memberlist.NewKeyring(nil, append([]byte(nil), cfg.SecretKey...))
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("cluster: gossip key: %w", err)
	}
	c.keyring = kr
	mc.SecretKey = nil
	mc.Keyring = kr
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Delegate = (*delegate)(c)
	mc.Events = (*eventDelegate)(c)
	c.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return c.numNodes() },
		RetransmitMult: mc.RetransmitMult,
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("cluster: start gossip: %w", err)
	}
	c.mu.Lock()
	c.ml = ml
	// copy now: memberlist updates its own node in place later
	self := ml.LocalNode()
	c.addr = parseAddrPort(self.Addr, self.Port)
	c.mu.Unlock()

	c.announceCert()
	c.wg.Add(3)
	go c.metaLoop()
	go c.saveLoop()
	go c.maintLoop()
	if cfg.ReconnectInterval > 0 {
		c.wg.Add(1)
		go c.reconnectLoop(cfg.ReconnectInterval)
	}
	return c, nil
}

func (c *Cluster) numNodes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 1
	for _, ni := range c.nodes {
		if ni.state == StateAlive || ni.state == StateSuspect {
			n++
		}
	}
	return n
}

// Name is this node's name.
func (c *Cluster) Name() string { return c.name }

// Addr is the gossip address this node advertises (the bound port when
// BindPort was 0).
func (c *Cluster) Addr() netip.AddrPort { return c.addr }

// Join contacts the given gossip addresses ("host:port"), pulls the full
// cluster state from them, then claims a pod CIDR (or re-asserts the
// persisted claim). With no addresses it bootstraps a new cluster. It returns
// how many nodes were contacted; it fails if addresses were given and none
// could be reached.
func (c *Cluster) Join(ctx context.Context, addrs []string) (int, error) {
	n := 0
	if len(addrs) > 0 {
		type res struct {
			n   int
			err error
		}
		ch := make(chan res, 1)
		go func() {
			n, err := c.ml.Join(addrs)
			ch <- res{n, err}
		}()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case r := <-ch:
			if r.n == 0 {
				if r.err == nil {
					r.err = errors.New("no node reachable")
				}
				return 0, fmt.Errorf("cluster: join %v: %w", addrs, r.err)
			}
			if r.err != nil {
				c.log.Warn("join: some nodes unreachable", "err", r.err)
			}
			n = r.n
		}
	}
	c.mu.Lock()
	c.joined = true
	c.mu.Unlock()
	if err := c.ensureClaim(); err != nil {
		return n, err
	}
	return n, nil
}

// Leave tells the cluster this node leaves (its entries vanish everywhere
// at once, its pod CIDR claim stays recorded). Call Shutdown afterwards.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.mu.Lock()
	c.left = true
	c.mu.Unlock()
	// memberlist reports a leave and a failure alike to the event delegate;
	// tell every member first that this is a leave.
	msg, _ := json.Marshal(envelope{Leaving: c.name})
	var wg sync.WaitGroup
	for _, n := range c.ml.Members() {
		if n.Name == c.name {
			continue
		}
		wg.Add(1)
		go func(n *memberlist.Node) {
			defer wg.Done()
			if err := c.ml.SendReliable(n, msg); err != nil {
				c.log.Debug("announce leave", "to", n.Name, "err", err)
			}
		}(n)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout / 2):
	}
	return c.ml.Leave(timeout)
}

// Shutdown stops gossip without leaving (peers will declare this node dead),
// saves the state and closes subscriber channels.
func (c *Cluster) Shutdown() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.ml.Shutdown()
		close(c.stop)
		c.cancel()
		c.wg.Wait()
		if serr := c.save(); serr != nil && err == nil {
			err = serr
		}
		c.subMu.Lock()
		for _, s := range c.subs {
			s.close()
		}
		c.subs = map[<-chan Event]*subscriber{}
		c.subMu.Unlock()
	})
	return err
}

// PodCIDR is this node's pod CIDR; invalid until Join claimed one (or one was
// persisted).
func (c *Cluster) PodCIDR() netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.podCIDR
}

// Members lists every member this node knows of, itself included, sorted by
// name. Dead and left members stay listed for TombstoneTTL, with nil Labels
// (labels are per-node entries: they vanish with the node).
func (c *Cluster) Members() []Member {
	live := map[string]memberlist.NodeStateType{}
	for _, n := range c.ml.Members() {
		live[n.Name] = n.State
	}
	self := c.Addr()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []Member{{
		Name:    c.name,
		Addr:    self,
		NodeIP:  c.cfg.NodeIP,
		PodCIDR: c.podCIDR,
		State:   StateAlive,
		Labels:  c.labelsOfLocked(c.name),
	}}
	if c.left {
		out[0].State = StateLeft
	}
	for name, ni := range c.nodes {
		m := Member{Name: name, Addr: ni.addr, State: ni.state}
		m.NodeIP, _ = netip.ParseAddr(ni.meta.NodeIP)
		if p, ok := c.claimOfLocked(name); ok {
			m.PodCIDR = p
		}
		if st, ok := live[name]; ok && st == memberlist.StateSuspect && m.State == StateAlive {
			m.State = StateSuspect
		}
		m.Labels = c.labelsOfLocked(name)
		out = append(out, m)
	}
	sortBy(out, func(m Member) string { return m.Name })
	return out
}

// --- persistence

func (c *Cluster) load() error {
	b, err := c.cfg.Persist.Load()
	if err != nil {
		return fmt.Errorf("cluster: load state: %w", err)
	}
	if len(b) == 0 {
		return nil
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("cluster: decode state: %w", err)
	}
	c.clock = p.Clock
	if p.PodCIDR != "" {
		pfx, err := netip.ParsePrefix(p.PodCIDR)
		if err == nil && c.blockOK(pfx) {
			c.podCIDR = pfx
		} else {
			c.log.Warn("persisted pod CIDR does not fit the cluster CIDR; picking a new one", "pod_cidr", p.PodCIDR)
		}
	}
	// Objects saved longer ago than the tombstone TTL may have been deleted
	// and their tombstones collected meanwhile: relearn them from peers
	// instead of resurrecting them (own pod CIDR claim is kept above).
	if time.Since(time.Unix(0, p.SavedAt)) > c.cfg.TombstoneTTL {
		c.log.Info("persisted objects older than tombstone TTL; relearning from peers")
		return nil
	}
	c.learnCerts(p.Certs) // before the objects they sign
	for _, po := range p.Objects {
		if err := c.resignLoaded(&po.wireObject); err != nil {
			return err
		}
		r := &objRec{wireObject: po.wireObject}
		if po.Deleted {
			r.deletedAt = time.Unix(0, po.DeletedAt)
		}
		c.setObjLocked(r)
	}
	return nil
}

// save persists the whole state. Concurrent callers share one write (a
// group commit): a caller whose changes a save that began after them has
// already written returns at once, so N writers at the same moment cost
// about one encoding of the state, not N.
func (c *Cluster) save() error {
	c.mu.Lock()
	c.changes++
	want := c.changes
	c.mu.Unlock()
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if c.savedUpTo >= want {
		return c.saveErr
	}
	c.mu.Lock()
	upTo := c.changes
	p := persisted{Clock: c.clock, SavedAt: time.Now().UnixNano()}
	if c.podCIDR.IsValid() {
		p.PodCIDR = c.podCIDR.String()
	}
	for _, r := range c.objects {
		po := persistedObject{wireObject: r.wireObject}
		if r.Deleted {
			po.DeletedAt = r.deletedAt.UnixNano()
		}
		p.Objects = append(p.Objects, po)
	}
	objs := make([]wireObject, len(p.Objects))
	for i := range p.Objects {
		objs[i] = p.Objects[i].wireObject
	}
	p.Certs = c.certsOf(objs, nil)
	c.mu.Unlock()
	sortBy(p.Objects, func(o persistedObject) string { return objKey(o.Kind, o.Key) })
	b, err := json.Marshal(p)
	if err == nil {
		if err = c.cfg.Persist.Save(b); err != nil {
			err = fmt.Errorf("cluster: save state: %w", err)
		}
	}
	c.savedUpTo, c.saveErr = upTo, err
	return err
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Cluster) saveLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.saveKick:
		}
		// coalesce bursts of remote updates
		select {
		case <-c.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if err := c.save(); err != nil {
			c.log.Error("persist", "err", err)
		}
	}
}

// metaLoop pushes changed node metadata (digest, pod CIDR) to the cluster,
// at most every 200ms.
func (c *Cluster) metaLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.metaKick:
		}
		if err := c.ml.UpdateNode(2 * time.Second); err != nil {
			c.log.Debug("update node meta", "err", err)
		}
		select {
		case <-c.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// maintLoop resolves pod CIDR conflicts and collects tombstones.
func (c *Cluster) maintLoop() {
	defer c.wg.Done()
	every := c.cfg.TombstoneTTL / 10
	every = min(max(every, 50*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.cidrKick:
			c.reconcileCIDR()
		case addr := <-c.resync:
			// A member declared dead came back (a false positive, or a
			// partition healed): everyone dropped its entries, so pull
			// them back from it now instead of waiting for a random
			// push/pull.
			if _, err := c.ml.Join([]string{addr}); err != nil {
				c.log.Debug("resync with returning member", "addr", addr, "err", err)
			}
		case <-t.C:
			c.gc(time.Now())
		}
	}
}

// reconnectLoop tries, every interval, to join each member held dead (not
// left): one that is alive again on the other side of a healed partition
// merges back, and each side's gossip then refutes the other's verdict.
func (c *Cluster) reconnectLoop(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		var addrs []string
		for _, ni := range c.nodes {
			if ni.state == StateDead && ni.addr.IsValid() {
				addrs = append(addrs, ni.addr.String())
			}
		}
		c.mu.Unlock()
		for _, a := range addrs {
			// One at a time (an address that does not answer costs a TCP
			// timeout, and joins must not pile up), but never holding
			// Close back: the join ends by itself once memberlist shuts down.
			done := make(chan struct{})
			go func() {
				defer close(done)
				if n, err := c.ml.Join([]string{a}); err == nil && n > 0 {
					c.log.Info("reconnected to a member held dead", "addr", a)
				}
			}()
			select {
			case <-c.stop:
				return
			case <-done:
			}
		}
	}
}

// gc drops tombstones and dead members older than TombstoneTTL.
func (c *Cluster) gc(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ttl := c.cfg.TombstoneTTL
	changed := false
	for k, r := range c.objects {
		if r.Deleted && now.Sub(r.deletedAt) > ttl {
			delete(c.objects, k)
			changed = true
		}
	}
	for _, os := range c.owners {
		for k, e := range os.entries {
			if e.deleted && now.Sub(e.deletedAt) > ttl {
				delete(os.entries, k)
			}
		}
	}
	for name, ni := range c.nodes {
		if (ni.state == StateDead || ni.state == StateLeft) && now.Sub(ni.changed) > ttl {
			delete(c.nodes, name)
			delete(c.peerVersions, name)
			if os := c.owners[name]; os != nil && len(os.entries) == 0 {
				delete(c.owners, name)
			}
		}
	}
	if changed {
		kick(c.saveKick)
	}
}

// logBridge sends memberlist's log lines to slog.
type logBridge struct{ l *slog.Logger }

func (b *logBridge) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	lvl := slog.LevelDebug
	switch {
	case strings.Contains(msg, "[ERR]"):
		lvl = slog.LevelError
	case strings.Contains(msg, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.Contains(msg, "[INFO]"):
		lvl = slog.LevelInfo
	}
	b.l.Log(context.Background(), lvl, msg, "source", "memberlist")
	return len(p), nil
}

func parseAddrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}
