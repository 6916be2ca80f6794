package nested

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
)

// A nested cluster's PKI exists only in its record, sealed with the node's
// KMS: unlike a secret, no other node holds a copy to fetch back. So
// agentd refuses to start while a record's material does not open (see
// CheckSealed), and once the operator replaced the key-encryption key
// anyway (--new-kek), Start freezes each cluster whose material still does
// not open: Failed with ErrKEKLost's text, no job, no host object touched,
// Apply never retries it with a new CA, the kubeconfig is refused, Delete
// works as usual. The sealed material is kept as it was, so that putting
// the old key-encryption key file back and restarting agentd thaws the
// cluster to the state it had.

// ErrKEKLost: the cluster's sealed PKI cannot be opened any more.
var ErrKEKLost = errors.New("its PKI was sealed with the key-encryption key that was replaced (--new-kek) and cannot be recovered: " +
	"delete and recreate the nested cluster, or restore the old key-encryption key file and restart agentd")

// kekLost is what a frozen record said before it was frozen.
type kekLost struct {
	KeyID   string    `json:"key_id,omitempty"`
	Since   time.Time `json:"since"`
	Phase   string    `json:"phase"`
	Step    string    `json:"step"`
	Message string    `json:"message,omitempty"`
}

// Unopenable is a cluster whose sealed material does not open.
type Unopenable struct {
	Cluster string
	// KeyID is the key-encryption key its data key is wrapped with; ""
	// when the sealed blob does not parse.
	KeyID string
	Err   error
}

// SealedKeyIDs maps each key-encryption key id that a cluster's sealed
// material needs to those clusters, without opening anything (the blob
// that does not parse counts under ""). Clusters being deleted need no
// material, and frozen ones were given up already: neither counts.
func SealedKeyIDs(st Store) (map[string][]string, error) {
	out := map[string][]string{}
	err := eachSealed(st, func(name string, r *record) error {
		id := ""
		if s, err := secrets.Unmarshal(r.Sealed); err == nil {
			id = s.KeyID
		}
		out[id] = append(out[id], name)
		return nil
	})
	return out, err
}

// CheckSealed opens the sealed material of every cluster of node in st
// with kms (the counting of SealedKeyIDs) and returns those that do not
// open, by name.
func CheckSealed(ctx context.Context, node string, st Store, kms secrets.KMS) ([]Unopenable, error) {
	var out []Unopenable
	err := eachSealed(st, func(name string, r *record) error {
		if _, err := openSealed(ctx, kms, r.Sealed, aadFor(node, name, r.UID)); err != nil {
			id := ""
			if s, uerr := secrets.Unmarshal(r.Sealed); uerr == nil {
				id = s.KeyID
			}
			out = append(out, Unopenable{Cluster: name, KeyID: id, Err: err})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Cluster < out[j].Cluster })
	return out, err
}

func eachSealed(st Store, f func(name string, r *record) error) error {
	err := st.ListNestedClusters(func(name string, v []byte) error {
		// An unreadable record is left alone (Start logs it).
		if r, derr := decodeRecord(v); derr == nil && len(r.Sealed) > 0 && r.Phase != PhaseDeleting && r.KEKLost == nil {
			return f(name, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list nested clusters: %w", err)
	}
	return nil
}

// checkKEKLocked freezes a record whose material does not open, or thaws
// a frozen one whose material opens again; it reports whether the record
// is frozen. d.mu is held.
func (d *Driver) checkKEKLocked(ctx context.Context, name string, r *record) bool {
	if len(r.Sealed) == 0 || r.Phase == PhaseDeleting {
		return false
	}
	_, err := d.open(ctx, r)
	switch {
	case err == nil && r.KEKLost != nil:
		d.log.Warn("nested cluster's key material opens again (its key-encryption key was restored): back to its state", "cluster", name, "phase", r.KEKLost.Phase)
		r.Phase, r.Step, r.Message, r.KEKLost = r.KEKLost.Phase, r.KEKLost.Step, r.KEKLost.Message, nil
		_ = d.persistLocked(name)
		return false
	case err == nil:
		return false
	case r.KEKLost != nil:
		return true
	}
	id := ""
	if s, uerr := secrets.Unmarshal(r.Sealed); uerr == nil {
		id = s.KeyID
	}
	r.KEKLost = &kekLost{KeyID: id, Since: time.Now().UTC(), Phase: r.Phase, Step: r.Step, Message: r.Message}
	r.Phase, r.Step, r.Message = PhaseFailed, StepPKI, ErrKEKLost.Error()
	d.log.Error("nested cluster's key material cannot be opened: marked Failed and left alone (its sealed material is kept)", "cluster", name, "key_id", id, "err", err)
	_ = d.persistLocked(name)
	return true
}

func aadFor(node, name, uid string) []byte {
	return []byte("herd-nested/" + node + "/" + name + "/" + uid)
}

func openSealed(ctx context.Context, kms secrets.KMS, sealed, aad []byte) (*material, error) {
	s, err := secrets.Unmarshal(sealed)
	if err != nil {
		return nil, err
	}
	b, err := secrets.Open(ctx, kms, s, aad)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	var m material
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errors.New("sealed nested cluster material: malformed")
	}
	return &m, nil
}
