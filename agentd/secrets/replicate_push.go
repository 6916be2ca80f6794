package secrets

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Spec is a secret as a client applies it (validated by internal/spec).
type Spec struct {
	Namespace, Name, Type string
	Data                  map[string][]byte
	Selector              map[string]string
	Immutable             bool
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

// Delete removes a secret from every holder. A uid other than "" must be
// the secret's: another incarnation of the name is kept and
// spec.ErrOtherIncarnation returned.
func (r *Replicator) Delete(ctx context.Context, namespace, name, uid string) (bool, error) {
	r.apply.Lock()
	defer r.apply.Unlock()
	key := SecretKey(namespace, name)
	newest, holders := r.survey(ctx, key)
	if newest == nil || newest.Deleted {
		return false, nil
	}
	if err := checkIncarnation(*newest, uid); err != nil {
		return false, err
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
