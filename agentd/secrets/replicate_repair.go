package secrets

import (
	"context"
	"slices"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
)

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
	r.recoverLost(ctx)
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
