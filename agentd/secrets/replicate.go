package secrets

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
)

// Replication: a secret's data goes only to the live members whose labels
// match its selector, point to point (agentd/peers: PeerService.Call over
// mTLS between node certificates, never gossiped or relayed; the callee
// knows the caller by its certificate). There is no shared object for
// the others to see: a member outside the selector keeps no trace.
//
//   - The node a client writes through asks every live member for its
//     record (to learn the newest version and who holds it), then pushes
//     the new version to every matching member and to every old holder
//     (an old holder outside a new selector drops its copy).
//   - Every holder repairs the others (anti-entropy): on membership or
//     label events and every resync interval, it pushes each secret to the
//     matching members that have not acknowledged its version. A member
//     that holds a newer one says so, and the holder fetches it.
//   - A holder never hands data to a member outside the selector.

// Errors the server maps to gRPC codes. Their text never holds values.
var (
	ErrNotFound   = errors.New("secret not found")
	ErrImmutable  = errors.New("secret is immutable")
	ErrNoHolder   = errors.New("no live member matches the secret's node_selector")
	ErrTypeChange = errors.New("the type of a secret cannot change")
)

// Call methods.
const (
	mPut     = "secret.put"
	mMeta    = "secret.meta"
	mList    = "secret.list"
	mFetch   = "secret.fetch"
	mRestart = "secret.restart"
)

// Peers is what replication needs of the cluster: membership, and calls
// to one member (agentd/peers.Caller).
type Peers interface {
	Name() string
	Members() []cluster.Member
	Call(ctx context.Context, node, method string, req []byte) ([]byte, error)
	Handle(method string, h func(ctx context.Context, from string, req []byte) ([]byte, error))
	Subscribe() <-chan cluster.Event
	Unsubscribe(ch <-chan cluster.Event)
}

// Pods is what replication tells the node's pods.
type Pods interface {
	// SecretChanged rewrites the mounted files of namespace/name.
	SecretChanged(ctx context.Context, namespace, name string) error
	// RestartForSecret restarts, one at a time, the pods that asked for it.
	RestartForSecret(ctx context.Context, namespace, name string, dryRun bool) ([]string, error)
}

// Config configures a Replicator.
type Config struct {
	Vault *Vault
	Peers Peers
	// Pods may be nil until SetPods.
	Pods Pods
	// Labels returns this node's labels (what it publishes to members).
	Labels func() map[string]string
	// ClusterKey keys the checksums (DeriveClusterKey of the cluster's
	// checksum key).
	ClusterKey []byte
	// Resync is the anti-entropy interval (default 30s).
	Resync time.Duration
	// TombstoneTTL is how long deletes are remembered (default 24h).
	TombstoneTTL time.Duration
	// CallTimeout bounds one call to a member (default 10s).
	CallTimeout time.Duration
	// RestartTimeout bounds the restarts of one apply (default 10m).
	RestartTimeout time.Duration
	// Recovery, if pending, makes repair rounds fetch back the secrets
	// discarded with a lost key-encryption key (OpenNodeKMS).
	Recovery *Recovery
	Logger   *slog.Logger
}

// Replicator serves the secret API on one node and keeps its holders in
// step.
type Replicator struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	acked map[string]map[string]Record // member -> key -> version it holds
	pods  Pods
	kick  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
	apply sync.Mutex // one write at a time through this node
}

// DeriveClusterKey derives the checksum key from the cluster's checksum key
// (by default the gossip key), so the key itself is used for nothing else.
func DeriveClusterKey(gossipKey []byte) []byte {
	m := hmac.New(sha256.New, gossipKey)
	m.Write([]byte("herd secret checksum key v1"))
	return m.Sum(nil)
}

// NewReplicator registers the call handlers; Start begins anti-entropy.
func NewReplicator(cfg Config) (*Replicator, error) {
	if cfg.Vault == nil || cfg.Peers == nil || cfg.Labels == nil || len(cfg.ClusterKey) == 0 {
		return nil, errors.New("secrets: replicator needs a vault, peers, labels and a cluster key")
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = 24 * time.Hour
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.RestartTimeout <= 0 {
		cfg.RestartTimeout = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Replicator{
		cfg: cfg, log: cfg.Logger, pods: cfg.Pods,
		acked: map[string]map[string]Record{},
		kick:  make(chan struct{}, 1), stop: make(chan struct{}),
	}
	p := cfg.Peers
	p.Handle(mPut, r.handlePut)
	p.Handle(mMeta, r.handleMeta)
	p.Handle(mList, r.handleList)
	p.Handle(mFetch, r.handleFetch)
	p.Handle(mRestart, r.handleRestart)
	return r, nil
}

// SetPods sets the pod hooks (the pod manager starts after the vault).
func (r *Replicator) SetPods(p Pods) {
	r.mu.Lock()
	r.pods = p
	r.mu.Unlock()
}

func (r *Replicator) podHooks() Pods {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods
}

// Start runs anti-entropy until ctx ends or Close.
func (r *Replicator) Start(ctx context.Context) {
	events := r.cfg.Peers.Subscribe()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.cfg.Peers.Unsubscribe(events)
		t := time.NewTicker(r.cfg.Resync)
		defer t.Stop()
		r.repair(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.stop:
				return
			case e, ok := <-events:
				if !ok {
					return
				}
				if e.Type != cluster.EventMember {
					continue
				}
			case <-r.kick:
			case <-t.C:
			}
			r.repair(ctx)
		}
	}()
}

// Close stops anti-entropy.
func (r *Replicator) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// Kick asks for a repair round soon (after this node's labels changed).
func (r *Replicator) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Replicator) call(ctx context.Context, node, method string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	return r.callCtx(ctx, node, method, req, resp)
}

// callCtx is call bounded by ctx alone (restarts take longer than a call).
func (r *Replicator) callCtx(ctx context.Context, node, method string, req, resp any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request", method)
	}
	out, err := r.cfg.Peers.Call(ctx, node, method, b)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", method, node, err)
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(out, resp); err != nil {
		return fmt.Errorf("%s on %s: decode answer failed", method, node)
	}
	return nil
}

// liveMembers returns the alive members (this node included) with labels.
func (r *Replicator) liveMembers() []cluster.Member {
	var out []cluster.Member
	self := r.cfg.Peers.Name()
	seenSelf := false
	for _, m := range r.cfg.Peers.Members() {
		if m.State != cluster.StateAlive {
			continue
		}
		if m.Name == self {
			m.Labels = r.cfg.Labels()
			seenSelf = true
		}
		out = append(out, m)
	}
	if !seenSelf {
		out = append(out, cluster.Member{Name: self, State: cluster.StateAlive, Labels: r.cfg.Labels()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (r *Replicator) labelsOf(node string) (map[string]string, bool) {
	if node == r.cfg.Peers.Name() {
		return r.cfg.Labels(), true
	}
	for _, m := range r.cfg.Peers.Members() {
		if m.Name == node && m.State == cluster.StateAlive {
			return m.Labels, true
		}
	}
	return nil, false
}

// fanOut runs f for every node at once and waits for all.
func fanOut(nodes []string, f func(node string)) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(n)
		}()
	}
	wg.Wait()
}

func memberNames(ms []cluster.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

func fmtSelector(sel map[string]string) string {
	if len(sel) == 0 {
		return "{} (every member)"
	}
	b, _ := json.Marshal(sel)
	return string(b)
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
