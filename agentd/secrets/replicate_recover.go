package secrets

import (
	"context"
	"sync"
)

// recoverLost fetches back, from the other holders, the secrets this node
// discarded with a lost key-encryption key (see OpenNodeKMS). Pushes alone
// would not do: a holder that saw this node acknowledge a version before
// does not push it again. So while recovery is pending, every repair round
// asks each live member for its records and fetches every live secret whose
// node_selector matches this node and that it holds no current version of.
// Recovery ends after a round in which some other member answered, every
// member answered, and nothing was missing.
func (r *Replicator) recoverLost(ctx context.Context) {
	rc := r.cfg.Recovery
	if !rc.Pending() {
		return
	}
	self := r.cfg.Peers.Name()
	var others []string
	for _, m := range r.liveMembers() {
		if m.Name != self {
			others = append(others, m.Name)
		}
	}
	type offer struct {
		rec  Record
		from string
	}
	newest := map[string]offer{}
	var mu sync.Mutex
	answered, failed := 0, 0
	fanOut(others, func(node string) {
		var resp listResp
		err := r.call(ctx, node, mList, keyReq{}, &resp)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			r.log.Debug("secret recovery: list", "member", node, "err", err)
			return
		}
		answered++
		for _, rec := range resp.Recs {
			if o, ok := newest[rec.Key()]; !ok || rec.Newer(o.rec) {
				newest[rec.Key()] = offer{rec: rec, from: node}
			}
		}
	})
	own := r.cfg.Labels()
	missing := 0
	for key, o := range newest {
		if ctx.Err() != nil {
			return
		}
		if o.rec.Deleted || !o.rec.Matches(own) {
			continue
		}
		cur, have, err := r.cfg.Vault.Get(key)
		if err != nil {
			r.log.Warn("secret recovery: read", "secret", key, "err", err)
			missing++
			continue
		}
		if have && !o.rec.Newer(cur) {
			continue
		}
		var resp fetchResp
		if err := r.call(ctx, o.from, mFetch, keyReq{Key: key}, &resp); err != nil {
			r.log.Warn("secret recovery: fetch", "secret", key, "member", o.from, "err", err)
			missing++
			continue
		}
		held, err := r.receive(ctx, putReq{Rec: resp.Rec, Data: resp.Data})
		clear(resp.Data)
		if err != nil {
			r.log.Warn("secret recovery: store", "secret", key, "member", o.from, "err", err)
			missing++
			continue
		}
		r.log.Info("secret recovered from another holder", "secret", key, "member", o.from, "version", held.Held.Version)
	}
	if answered == 0 || failed > 0 || missing > 0 {
		return
	}
	if err := rc.finish(); err != nil {
		r.log.Warn("secret recovery", "err", err)
		return
	}
	r.log.Info("secret recovery complete: this node holds every secret its labels match that another member holds")
}
