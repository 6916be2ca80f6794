package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// kindRevocation is the cluster store kind of deny list entries: key the
// serial, value a RevokedCertificate. Entries are never deleted, so every
// member, including one that joins later, gets them all.
const kindRevocation = "revocation"

// blobRevocations holds the deny list of a node without a cluster.
const blobRevocations = "revocations"

// revocationList is agentd's deny list. It exists before the listeners
// (the TLS handshake consults it) and is bound to its storage once that is
// open; until then nothing is revoked, and nothing can be served either.
type revocationList struct {
	mu    sync.Mutex
	cl    *cluster.Cluster // nil without a cluster
	st    *store.Store
	local map[string]*herdv1.RevokedCertificate // without a cluster
	// raw holds local's entries as stored, so a revoke encodes only its
	// own entry.
	raw map[string]json.RawMessage
}

// bind attaches the storage: the cluster store in a cluster, else the
// node's own store.
func (r *revocationList) bind(cl *cluster.Cluster, st *store.Store) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cl, r.st = cl, st
	if cl != nil {
		return nil
	}
	r.local = map[string]*herdv1.RevokedCertificate{}
	r.raw = map[string]json.RawMessage{}
	b, err := st.GetBlob(blobRevocations)
	if err != nil || b == nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("read the deny list: %w", err)
	}
	r.raw = raw
	for serial, m := range raw {
		e := &herdv1.RevokedCertificate{}
		if err := protojson.Unmarshal(m, e); err != nil {
			return fmt.Errorf("read the deny list entry %s: %w", serial, err)
		}
		r.local[serial] = e
	}
	return nil
}

func (r *revocationList) Revoked(serial string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cl != nil {
		_, ok := r.cl.Get(kindRevocation, serial)
		return ok
	}
	_, ok := r.local[serial]
	return ok
}

func (r *revocationList) Revoke(_ context.Context, e *herdv1.RevokedCertificate) (*herdv1.RevokedCertificate, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cl != nil {
		if o, ok := r.cl.Get(kindRevocation, e.GetSerial()); ok {
			if kept := decodeRevocation(o.Value); kept != nil {
				return kept, false, nil
			}
		}
		b, err := protojson.Marshal(e)
		if err != nil {
			return nil, false, err
		}
		if _, err := r.cl.Put(kindRevocation, e.GetSerial(), b); err != nil {
			return nil, false, fmt.Errorf("store the revocation: %w", err)
		}
		return e, true, nil
	}
	if r.st == nil {
		return nil, false, fmt.Errorf("the deny list is not open yet")
	}
	if kept, ok := r.local[e.GetSerial()]; ok {
		return kept, false, nil
	}
	b, err := protojson.Marshal(e)
	if err != nil {
		return nil, false, err
	}
	next := maps.Clone(r.raw)
	if next == nil {
		next = map[string]json.RawMessage{}
	}
	next[e.GetSerial()] = b
	all, err := json.Marshal(next)
	if err != nil {
		return nil, false, err
	}
	if err := r.st.PutBlob(blobRevocations, all); err != nil {
		return nil, false, fmt.Errorf("store the revocation: %w", err)
	}
	r.raw = next
	r.local[e.GetSerial()] = e
	return e, true, nil
}

func (r *revocationList) List() []*herdv1.RevokedCertificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*herdv1.RevokedCertificate
	if r.cl != nil {
		for _, o := range r.cl.List(kindRevocation) {
			if e := decodeRevocation(o.Value); e != nil {
				out = append(out, e)
			}
		}
	} else {
		for _, e := range r.local {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetSerial() < out[j].GetSerial() })
	return out
}

func decodeRevocation(b []byte) *herdv1.RevokedCertificate {
	e := &herdv1.RevokedCertificate{}
	if protojson.Unmarshal(b, e) != nil {
		return nil
	}
	return e
}
