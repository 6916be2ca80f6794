package deployments

import (
	"context"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// DriverStore is the part of agentd/cluster.Cluster the driver reads,
// writes and follows.
type DriverStore interface {
	Name() string
	Get(kind, key string) (cluster.Object, bool)
	List(kind string) []cluster.Object
	Put(kind, key string, value []byte) (uint64, error)
	Delete(kind, key string) error
	Versions(kind, key string) map[string]uint64
	Subscribe() <-chan cluster.Event
	Unsubscribe(<-chan cluster.Event)
}

// Peers reaches the members' PodService.
type Peers interface {
	// Nodes lists the live members that published an API address, this
	// node included, sorted: the members that may drive and run replicas.
	Nodes() []string
	Pods(ctx context.Context, node string) (herdv1.PodServiceClient, error)
}

// PoolPeers adapts a peers.Pool.
func PoolPeers(p *peers.Pool) Peers { return poolPeers{p} }

type poolPeers struct{ p *peers.Pool }

func (p poolPeers) Nodes() []string { return p.p.Nodes() }

func (p poolPeers) Pods(ctx context.Context, node string) (herdv1.PodServiceClient, error) {
	conn, err := p.p.Conn(ctx, node)
	if err != nil {
		return nil, err
	}
	return herdv1.NewPodServiceClient(conn), nil
}

// DriverConfig configures a Driver.
type DriverConfig struct {
	Store DriverStore
	Peers Peers
	// Nodes is the scheduler's view of the cluster (Registry.Nodes).
	Nodes func() []schedule.Node
	// Hint, if set, returns the nodes the last dry run planned for a
	// deployment ("ns/name"); the scheduler keeps to them while they fit.
	Hint func(key string) []string
	Log  *slog.Logger
	// Interval between passes without events; 0: 1 s.
	Interval time.Duration
	// RPCTimeout bounds each call to a member; 0: 10 s.
	RPCTimeout time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Driver makes deployments real: for every deployment this member owns
// (the highest rendezvous hash of its key over the live members), one
// loop observes the replicas on every member, asks the rollout planner
// for the next step, creates and deletes replicas and writes the status
// object. Everything it decides follows from the replicated objects and
// what the members report, so another member that takes over resumes
// where it stood.
type Driver struct {
	cfg DriverConfig
	log *slog.Logger

	mu    sync.Mutex
	loops map[string]*loop
	wg    sync.WaitGroup
}

// NewDriver returns a driver; call Run.
func NewDriver(cfg DriverConfig) *Driver {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Driver{cfg: cfg, log: cfg.Log, loops: map[string]*loop{}}
}

// Owner is the member that drives key: the highest rendezvous hash of key
// and member name over members (ties by name); "" when there are none.
// Every member computes the same owner from the same member list, and a
// member's death moves only its own deployments.
func Owner(key string, members []string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		s := rendezvousScore(key, m)
		if best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

func rendezvousScore(key, member string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(member))
	// FNV alone mixes the last bytes poorly: finish with splitmix64.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Run drives until ctx ends; it returns once every loop has stopped.
func (d *Driver) Run(ctx context.Context) {
	events := d.cfg.Store.Subscribe()
	defer d.cfg.Store.Unsubscribe(events)
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	defer d.wg.Wait()
	defer d.stopAll()
	d.sync(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			d.route(ctx, ev)
		case <-tick.C:
			d.sync(ctx)
		}
	}
}

// route reacts to one cluster event: ownership may move with membership
// and with deployments appearing; the loops concerned run a pass now.
func (d *Driver) route(ctx context.Context, ev cluster.Event) {
	switch {
	case ev.Type == cluster.EventObject && (ev.Kind == kindRecord || ev.Kind == kindStatusObj):
		d.sync(ctx)
		d.kick(ev.Key)
	case ev.Type == cluster.EventMember || (ev.Type == cluster.EventEntry && ev.Kind == peers.KindAgent):
		d.sync(ctx)
		d.kickAll()
	case ev.Type == cluster.EventEntry:
		// endpoints (readiness) and capacity of the replicas' nodes
		d.kickAll()
	}
}

// sync starts the loops of the deployments this member owns now and stops
// the others at once.
func (d *Driver) sync(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	members := d.cfg.Peers.Nodes()
	self := d.cfg.Store.Name()
	keys := map[string]bool{}
	for _, kind := range []string{kindRecord, kindStatusObj} {
		for _, o := range d.cfg.Store.List(kind) {
			keys[o.Key] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, l := range d.loops {
		if !keys[key] || Owner(key, members) != self {
			l.stop()
			delete(d.loops, key)
			if keys[key] {
				d.log.Info("deployment driven elsewhere now", "deployment", key, "owner", Owner(key, members))
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		if _, ok := d.loops[key]; ok || Owner(key, members) != self {
			continue
		}
		l := newLoop(d, key)
		d.loops[key] = l
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			l.run(ctx)
			d.mu.Lock()
			if d.loops[key] == l {
				delete(d.loops, key)
			}
			d.mu.Unlock()
		}()
		d.log.Info("driving deployment", "deployment", key)
	}
}

func (d *Driver) kick(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.loops[key]; l != nil {
		l.poke()
	}
}

func (d *Driver) kickAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.loops {
		l.poke()
	}
}

func (d *Driver) stopAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, l := range d.loops {
		l.stop()
		delete(d.loops, key)
	}
}

// Driving lists the deployments this member drives now, sorted.
func (d *Driver) Driving() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.loops))
}
