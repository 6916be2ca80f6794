package secrets

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

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
	return newestOf(holders), holders
}

// newestOf returns the newest of the records members hold, nil for none.
func newestOf(holders map[string]Record) *Record {
	var newest *Record
	for _, rec := range holders {
		if newest == nil || rec.Newer(*newest) {
			c := rec
			newest = &c
		}
	}
	return newest
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
		newest := newestOf(per[key])
		if newest.Deleted {
			continue
		}
		out = append(out, r.view(*newest, per[key]))
	}
	return out, nil
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
