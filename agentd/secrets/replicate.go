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
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Replication: a secret's data goes only to the live members whose labels
// match its selector, point to point (cluster.Call: TCP, encrypted by the
// gossip key, never gossiped or relayed). There is no shared object for
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

// Peers is what replication needs from agentd/cluster.
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
	// ClusterKey keys the checksums (derive it from the gossip key).
	ClusterKey []byte
	// Resync is the anti-entropy interval (default 30s).
	Resync time.Duration
	// TombstoneTTL is how long deletes are remembered (default 24h).
	TombstoneTTL time.Duration
	// CallTimeout bounds one call to a member (default 10s).
	CallTimeout time.Duration
	// RestartTimeout bounds the restarts of one apply (default 10m).
	RestartTimeout time.Duration
	Logger         *slog.Logger
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

// DeriveClusterKey derives the checksum key from the gossip key, so the
// gossip key itself is used for nothing else.
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

// --- wire messages (JSON inside the encrypted call) ---

type putReq struct {
	Rec  Record            `json:"rec"`
	Data map[string][]byte `json:"data,omitempty"`
	// Orchestrated: the writer restarts pods itself; the receiver only
	// swaps files. Anti-entropy pushes leave restarts to the receiver.
	Orchestrated bool `json:"orch,omitempty"`
}

type putResp struct {
	// Held is the version the member holds after the put (zero Version:
	// none, e.g. it is outside the selector).
	Held    Record `json:"held"`
	Outside bool   `json:"outside,omitempty"`
}

type keyReq struct {
	Key       string `json:"key"`
	Namespace string `json:"ns,omitempty"`
	DryRun    bool   `json:"dry,omitempty"`
}

type metaResp struct {
	Rec *Record `json:"rec,omitempty"`
}

type listResp struct {
	Recs []Record `json:"recs"`
}

type fetchResp struct {
	Rec  Record            `json:"rec"`
	Data map[string][]byte `json:"data"`
}

type restartResp struct {
	Pods []string `json:"pods"`
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

// --- handlers ---

func (r *Replicator) handlePut(ctx context.Context, from string, b []byte) ([]byte, error) {
	var req putReq
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errors.New("malformed put")
	}
	resp, err := r.receive(ctx, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// receive applies a pushed version on this node.
func (r *Replicator) receive(ctx context.Context, req putReq) (putResp, error) {
	rec := req.Rec
	key := rec.Key()
	if err := validRecord(rec); err != nil {
		return putResp{}, err
	}
	cur, have, err := r.cfg.Vault.Get(key)
	if err != nil {
		return putResp{}, err
	}
	if !rec.Matches(r.cfg.Labels()) {
		// Outside the selector: never store, and drop an older copy.
		if have && rec.Newer(cur) {
			if err := r.cfg.Vault.Forget(key); err != nil {
				return putResp{}, err
			}
			r.log.Info("secret dropped: node outside its node_selector", "secret", key, "version", rec.Version)
		}
		return putResp{Outside: true}, nil
	}
	if have && !rec.Newer(cur) {
		return putResp{Held: cur}, nil
	}
	if rec.Deleted {
		if _, err := r.cfg.Vault.Tombstone(rec); err != nil {
			return putResp{}, err
		}
		r.log.Info("secret deleted", "secret", key, "version", rec.Version)
		return putResp{Held: rec}, nil
	}
	if err := checkData(rec, req.Data); err != nil {
		return putResp{}, err
	}
	// A peer is trusted no more than a client: the same limits apply.
	if errs := spec.ValidateSecret(rec.Type, req.Data); len(errs) > 0 {
		return putResp{}, fmt.Errorf("secret %s: %w", key, errs)
	}
	if got := Checksum(r.cfg.ClusterKey, req.Data); got != rec.Checksum {
		// Another cluster key, or a corrupted message: refuse.
		return putResp{}, fmt.Errorf("secret %s: checksum mismatch", key)
	}
	if _, err := r.cfg.Vault.Put(ctx, rec, req.Data); err != nil {
		return putResp{}, err
	}
	r.log.Info("secret stored", "secret", key, "version", rec.Version, "writer", rec.Writer)
	changed := !have || cur.Deleted || cur.Checksum != rec.Checksum
	if p := r.podHooks(); p != nil && changed {
		if err := p.SecretChanged(ctx, rec.Namespace, rec.Name); err != nil {
			r.log.Warn("update secret files", "secret", key, "err", err)
		}
		if !req.Orchestrated && have && !cur.Deleted {
			// A version that reached this node by repair: restart our
			// users ourselves, in the background.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RestartTimeout)
				defer cancel()
				if pods, err := p.RestartForSecret(ctx, rec.Namespace, rec.Name, false); err != nil {
					r.log.Warn("restart pods for secret", "secret", key, "err", err)
				} else if len(pods) > 0 {
					r.log.Info("pods restarted for secret", "secret", key, "pods", pods)
				}
			}()
		}
	}
	return putResp{Held: rec}, nil
}

func (r *Replicator) handleMeta(_ context.Context, _ string, b []byte) ([]byte, error) {
	var req keyReq
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errors.New("malformed meta request")
	}
	rec, ok, err := r.cfg.Vault.Get(req.Key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return json.Marshal(metaResp{})
	}
	return json.Marshal(metaResp{Rec: &rec})
}

func (r *Replicator) handleList(_ context.Context, _ string, b []byte) ([]byte, error) {
	var req keyReq
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errors.New("malformed list request")
	}
	all, err := r.cfg.Vault.List()
	if err != nil {
		return nil, err
	}
	out := listResp{Recs: []Record{}}
	for _, rec := range all {
		if req.Namespace == "" || rec.Namespace == req.Namespace {
			out.Recs = append(out.Recs, rec)
		}
	}
	return json.Marshal(out)
}

func (r *Replicator) handleFetch(ctx context.Context, from string, b []byte) ([]byte, error) {
	var req keyReq
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errors.New("malformed fetch request")
	}
	rec, data, err := r.cfg.Vault.Open(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	labels, ok := r.labelsOf(from)
	if !ok || !rec.Matches(labels) {
		// Never hand data to a member outside the selector.
		return nil, fmt.Errorf("secret %s: member %s is outside its node_selector", req.Key, from)
	}
	return json.Marshal(fetchResp{Rec: rec, Data: data})
}

func (r *Replicator) handleRestart(ctx context.Context, _ string, b []byte) ([]byte, error) {
	var req keyReq
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errors.New("malformed restart request")
	}
	rec, ok, err := r.cfg.Vault.Get(req.Key)
	if err != nil || !ok {
		return json.Marshal(restartResp{})
	}
	p := r.podHooks()
	if p == nil {
		return json.Marshal(restartResp{})
	}
	pods, err := p.RestartForSecret(ctx, rec.Namespace, rec.Name, req.DryRun)
	if err != nil {
		return nil, err
	}
	return json.Marshal(restartResp{Pods: pods})
}

// --- the API ---

// Spec is a secret as a client applies it (validated by internal/spec).
type Spec struct {
	Namespace, Name, Type string
	Data                  map[string][]byte
	Selector              map[string]string
	Immutable             bool
}

// View is a secret's metadata and status as the live members report it.
type View struct {
	Rec Record
	// Holders: member -> the version it holds.
	Holders map[string]uint64
	Synced  bool
}

// PodRef names a pod on a node.
type PodRef struct{ Node, Pod string }

// survey asks every live member for its record of key.
func (r *Replicator) survey(ctx context.Context, key string) (newest *Record, holders map[string]Record) {
	holders = map[string]Record{}
	var mu sync.Mutex
	fanOut(memberNames(r.liveMembers()), func(node string) {
		var resp metaResp
		if err := r.call(ctx, node, mMeta, keyReq{Key: key}, &resp); err != nil {
			r.log.Debug("secret survey", "member", node, "err", err)
			return
		}
		if resp.Rec != nil {
			mu.Lock()
			holders[node] = *resp.Rec
			mu.Unlock()
		}
	})
	for _, rec := range holders {
		if newest == nil || rec.Newer(*newest) {
			c := rec
			newest = &c
		}
	}
	return newest, holders
}

func (r *Replicator) view(rec Record, holders map[string]Record) View {
	v := View{Rec: rec, Holders: map[string]uint64{}, Synced: true}
	for node, h := range holders {
		if !h.Deleted {
			v.Holders[node] = h.Version
		}
	}
	for _, m := range r.liveMembers() {
		h, ok := holders[m.Name]
		matches := rec.Matches(m.Labels)
		if matches && (!ok || !h.Same(rec)) {
			v.Synced = false
		}
		if !matches && ok && !h.Deleted {
			v.Synced = false
		}
	}
	return v
}

// Apply writes a secret through this node. dryRun changes nothing and
// reports the pods the apply would restart.
func (r *Replicator) Apply(ctx context.Context, s Spec, dryRun bool) (View, bool, []PodRef, error) {
	r.apply.Lock()
	defer r.apply.Unlock()
	key := SecretKey(s.Namespace, s.Name)
	if s.Namespace == "" {
		s.Namespace = "default"
	}
	var targets []string
	for _, m := range r.liveMembers() {
		if (Record{Selector: s.Selector}).Matches(m.Labels) {
			targets = append(targets, m.Name)
		}
	}
	if len(targets) == 0 {
		return View{}, false, nil, fmt.Errorf("secret %s: %w %s", key, ErrNoHolder, fmtSelector(s.Selector))
	}
	newest, holders := r.survey(ctx, key)
	sum := Checksum(r.cfg.ClusterKey, s.Data)
	live := newest != nil && !newest.Deleted
	if live {
		if newest.Type != s.Type {
			return View{}, false, nil, fmt.Errorf("%w: %s is %q, not %q (delete and recreate it)", ErrTypeChange, key, newest.Type, s.Type)
		}
		if newest.Immutable && (newest.Checksum != sum || !s.Immutable) {
			return View{}, false, nil, fmt.Errorf("%w: %s cannot change its data or become mutable (delete and recreate it)", ErrImmutable, key)
		}
		same := newest.Checksum == sum && maps.Equal(newest.Selector, s.Selector) && newest.Immutable == s.Immutable
		if same {
			if v := r.view(*newest, holders); v.Synced {
				return v, false, nil, nil
			}
		}
	}
	rec := Record{
		Namespace: s.Namespace, Name: s.Name, Type: s.Type,
		Selector: s.Selector, Immutable: s.Immutable,
		Keys:   slices.Sorted(maps.Keys(s.Data)),
		Writer: r.cfg.Peers.Name(), Checksum: sum,
		UpdatedAt: time.Now().UTC(),
	}
	if newest != nil {
		rec.Version = newest.Version
	}
	rec.Version++
	if live {
		rec.UID, rec.CreatedAt = newest.UID, newest.CreatedAt
	} else {
		rec.UID, rec.CreatedAt = newUID(), rec.UpdatedAt
	}
	dataChanged := live && newest.Checksum != sum
	if dryRun {
		var restarts []PodRef
		if dataChanged {
			restarts = r.restarts(ctx, key, targets, true)
		}
		v := r.view(rec, holders)
		v.Synced = false
		return v, true, restarts, nil
	}
	// Push to every matching member and every old holder (which drops it
	// when outside the new selector).
	dest := map[string]bool{}
	for _, t := range targets {
		dest[t] = true
	}
	for h := range holders {
		dest[h] = true
	}
	after := r.push(ctx, rec, s.Data, slices.Sorted(maps.Keys(dest)), true)
	stored := 0
	for _, t := range targets {
		if h, ok := after[t]; ok && h.Same(rec) {
			stored++
		}
	}
	if stored == 0 {
		return View{}, false, nil, fmt.Errorf("secret %s: no member stored it (see agentd logs)", key)
	}
	var restarts []PodRef
	if dataChanged {
		restarts = r.restarts(ctx, key, targets, false)
	}
	return r.view(rec, after), true, restarts, nil
}

// push sends rec to nodes in parallel and returns what each holds after.
func (r *Replicator) push(ctx context.Context, rec Record, data map[string][]byte, nodes []string, orchestrated bool) map[string]Record {
	out := map[string]Record{}
	var mu sync.Mutex
	fanOut(nodes, func(node string) {
		var resp putResp
		if err := r.call(ctx, node, mPut, putReq{Rec: rec, Data: data, Orchestrated: orchestrated}, &resp); err != nil {
			r.log.Warn("push secret", "secret", rec.Key(), "member", node, "err", err)
			return
		}
		mu.Lock()
		if !resp.Outside && resp.Held.Version != 0 {
			out[node] = resp.Held
		}
		mu.Unlock()
		r.noteAck(node, rec.Key(), resp.Held)
	})
	return out
}

// restarts has each target restart its users, one node after another, so
// pods restart one at a time across the cluster.
func (r *Replicator) restarts(ctx context.Context, key string, targets []string, dryRun bool) []PodRef {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RestartTimeout)
	defer cancel()
	var out []PodRef
	for _, node := range targets {
		var resp restartResp
		if err := r.callCtx(ctx, node, mRestart, keyReq{Key: key, DryRun: dryRun}, &resp); err != nil {
			r.log.Warn("restart pods for secret", "secret", key, "member", node, "err", err)
			continue
		}
		for _, p := range resp.Pods {
			out = append(out, PodRef{Node: node, Pod: p})
		}
	}
	return out
}

// Get returns a secret's metadata and status, or ErrNotFound.
func (r *Replicator) Get(ctx context.Context, namespace, name string) (View, error) {
	key := SecretKey(namespace, name)
	newest, holders := r.survey(ctx, key)
	if newest == nil || newest.Deleted {
		return View{}, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return r.view(*newest, holders), nil
}

// List returns every secret (of one namespace, if set) as the live
// members report them.
func (r *Replicator) List(ctx context.Context, namespace string) ([]View, error) {
	per := map[string]map[string]Record{} // key -> node -> record
	var mu sync.Mutex
	fanOut(memberNames(r.liveMembers()), func(node string) {
		var resp listResp
		if err := r.call(ctx, node, mList, keyReq{Namespace: namespace}, &resp); err != nil {
			r.log.Debug("list secrets", "member", node, "err", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rec := range resp.Recs {
			if per[rec.Key()] == nil {
				per[rec.Key()] = map[string]Record{}
			}
			per[rec.Key()][node] = rec
		}
	})
	var out []View
	for _, key := range slices.Sorted(maps.Keys(per)) {
		var newest *Record
		for _, rec := range per[key] {
			if newest == nil || rec.Newer(*newest) {
				c := rec
				newest = &c
			}
		}
		if newest.Deleted {
			continue
		}
		out = append(out, r.view(*newest, per[key]))
	}
	return out, nil
}

// Delete removes a secret from every holder.
func (r *Replicator) Delete(ctx context.Context, namespace, name string) (bool, error) {
	r.apply.Lock()
	defer r.apply.Unlock()
	key := SecretKey(namespace, name)
	newest, holders := r.survey(ctx, key)
	if newest == nil || newest.Deleted {
		return false, nil
	}
	tomb := *newest
	tomb.Version++
	tomb.Writer = r.cfg.Peers.Name()
	tomb.Deleted = true
	tomb.Checksum, tomb.Keys = "", nil
	tomb.UpdatedAt = time.Now().UTC()
	dest := map[string]bool{}
	for h := range holders {
		dest[h] = true
	}
	for _, m := range r.liveMembers() {
		if tomb.Matches(m.Labels) {
			dest[m.Name] = true
		}
	}
	r.push(ctx, tomb, nil, slices.Sorted(maps.Keys(dest)), true)
	return true, nil
}

// Reveal returns a secret's data; only a holder can.
func (r *Replicator) Reveal(ctx context.Context, namespace, name string) (Record, map[string][]byte, error) {
	return r.cfg.Vault.Open(ctx, SecretKey(namespace, name))
}

// Why explains, in words fit for a user, why this node does not hold a
// secret: it does not exist, or the node is outside its selector.
func (r *Replicator) Why(ctx context.Context, namespace, name string) (reason string, notFound bool) {
	key := SecretKey(namespace, name)
	if _, _, err := r.cfg.Vault.Open(ctx, key); err == nil {
		return "", false
	}
	newest, _ := r.survey(ctx, key)
	self := r.cfg.Peers.Name()
	switch {
	case newest == nil || newest.Deleted:
		return fmt.Sprintf("secret %s does not exist", key), true
	case !newest.Matches(r.cfg.Labels()):
		return fmt.Sprintf("node %s is outside the node_selector %s of secret %s, so it may not hold it", self, fmtSelector(newest.Selector), key), false
	default:
		return fmt.Sprintf("secret %s has not reached node %s yet; retry shortly", key, self), false
	}
}

// --- anti-entropy ---

func (r *Replicator) noteAck(node, key string, held Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acked[node] == nil {
		r.acked[node] = map[string]Record{}
	}
	r.acked[node][key] = held
}

func (r *Replicator) ackedSame(node string, rec Record) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.acked[node][rec.Key()]
	return ok && h.Same(rec)
}

// repair pushes what this node holds to matching members that have not
// acknowledged it, fetches newer versions they report, drops what this
// node may no longer hold, and expires old tombstones.
func (r *Replicator) repair(ctx context.Context) {
	all, err := r.cfg.Vault.List()
	if err != nil {
		r.log.Warn("secret repair: list", "err", err)
		return
	}
	self := r.cfg.Peers.Name()
	members := r.liveMembers()
	own := r.cfg.Labels()
	r.mu.Lock()
	for node := range r.acked { // forget members that are gone
		if !slices.ContainsFunc(members, func(m cluster.Member) bool { return m.Name == node }) {
			delete(r.acked, node)
		}
	}
	r.mu.Unlock()
records:
	for _, rec := range all {
		if ctx.Err() != nil {
			return
		}
		key := rec.Key()
		if rec.Deleted {
			if time.Since(rec.DeletedAt) > r.cfg.TombstoneTTL {
				_ = r.cfg.Vault.Forget(key)
				continue
			}
		}
		// The data is decrypted only when some member needs a push: in a
		// settled cluster a round opens nothing.
		var data map[string][]byte
		opened := rec.Deleted
		var newer *Record
		var newerFrom string
		handed := false
		for _, m := range members {
			if m.Name == self || !rec.Matches(m.Labels) {
				continue
			}
			if r.ackedSame(m.Name, rec) {
				handed = true
				continue
			}
			if !opened {
				_, d, err := r.cfg.Vault.Open(ctx, key)
				if err != nil {
					r.log.Warn("secret repair: open", "secret", key, "err", err)
					continue records
				}
				data, opened = d, true
			}
			var resp putResp
			if err := r.call(ctx, m.Name, mPut, putReq{Rec: rec, Data: data}, &resp); err != nil {
				r.log.Debug("secret repair: push", "secret", key, "member", m.Name, "err", err)
				continue
			}
			r.noteAck(m.Name, key, resp.Held)
			if resp.Held.Same(rec) {
				handed = true
			}
			if !resp.Outside && resp.Held.Newer(rec) && (newer == nil || resp.Held.Newer(*newer)) {
				h := resp.Held
				newer, newerFrom = &h, m.Name
			}
		}
		clear(data)
		if newer != nil {
			r.catchUp(ctx, key, *newer, newerFrom)
			continue
		}
		if !rec.Deleted && !rec.Matches(own) {
			if handed {
				if err := r.cfg.Vault.Forget(key); err == nil {
					r.log.Info("secret dropped: node no longer matches its node_selector", "secret", key)
				}
			} else {
				r.log.Warn("secret kept although this node no longer matches its node_selector: no matching member holds it yet", "secret", key)
			}
			continue
		}
		r.restartStale(ctx, rec)
	}
}

// restartStale restarts this node's pods that still run with older data
// of rec when the writer's own restarts should long be over: the writer
// died mid-way, or this node was unreachable then. Waiting out
// RestartTimeout keeps these restarts from overlapping the writer's, which
// go one pod at a time.
func (r *Replicator) restartStale(ctx context.Context, rec Record) {
	p := r.podHooks()
	if p == nil || rec.Deleted || time.Since(rec.UpdatedAt) < r.cfg.RestartTimeout {
		return
	}
	pods, err := p.RestartForSecret(ctx, rec.Namespace, rec.Name, false)
	if err != nil {
		r.log.Warn("restart pods for secret", "secret", rec.Key(), "err", err)
	} else if len(pods) > 0 {
		r.log.Info("pods restarted for secret after the writer's restarts did not reach them", "secret", rec.Key(), "pods", pods)
	}
}

// catchUp takes a newer version of key that member from reported.
func (r *Replicator) catchUp(ctx context.Context, key string, newer Record, from string) {
	if newer.Deleted {
		if _, err := r.receive(ctx, putReq{Rec: newer}); err != nil {
			r.log.Warn("secret repair: tombstone", "secret", key, "err", err)
		}
		return
	}
	if !newer.Matches(r.cfg.Labels()) {
		_, _ = r.receive(ctx, putReq{Rec: newer}) // drops our copy
		return
	}
	var resp fetchResp
	if err := r.call(ctx, from, mFetch, keyReq{Key: key}, &resp); err != nil {
		r.log.Warn("secret repair: fetch", "secret", key, "member", from, "err", err)
		return
	}
	if _, err := r.receive(ctx, putReq{Rec: resp.Rec, Data: resp.Data}); err != nil {
		r.log.Warn("secret repair: store", "secret", key, "err", err)
	}
	clear(resp.Data)
}

// RotateKey is run by the caller after the KMS made a new key current:
// every stored data key is re-wrapped with it.
func (r *Replicator) RotateKey(ctx context.Context) (int, error) {
	return r.cfg.Vault.RewrapAll(ctx)
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

func validRecord(rec Record) error {
	if rec.Name == "" || rec.Namespace == "" || rec.Version == 0 || rec.Writer == "" {
		return errors.New("malformed secret record")
	}
	return nil
}

// checkData refuses data that does not match its record's key list.
func checkData(rec Record, data map[string][]byte) error {
	if !slices.Equal(slices.Sorted(maps.Keys(data)), rec.Keys) && !(len(data) == 0 && len(rec.Keys) == 0) {
		return fmt.Errorf("secret %s: data keys do not match the record", rec.Key())
	}
	return nil
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
