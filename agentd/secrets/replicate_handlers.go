package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

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

func validRecord(rec Record) error {
	if rec.Name == "" || rec.Namespace == "" || rec.Version == 0 || rec.Writer == "" {
		return errors.New("malformed secret record")
	}
	return nil
}

// checkData refuses data that does not match its record's key list.
func checkData(rec Record, data map[string][]byte) error {
	if !slices.Equal(slices.Sorted(maps.Keys(data)), rec.Keys) && (len(data) != 0 || len(rec.Keys) != 0) {
		return fmt.Errorf("secret %s: data keys do not match the record", rec.Key())
	}
	return nil
}
