package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Record is a secret's metadata as a node keeps and replicates it. It never
// holds values: those travel beside it and are stored sealed.
type Record struct {
	Namespace string            `json:"ns"`
	Name      string            `json:"name"`
	Type      string            `json:"type,omitempty"`
	Selector  map[string]string `json:"sel,omitempty"`
	Immutable bool              `json:"imm,omitempty"`
	Keys      []string          `json:"keys,omitempty"`
	UID       string            `json:"uid,omitempty"`
	CreatedAt time.Time         `json:"created"`
	UpdatedAt time.Time         `json:"updated"`
	// Version orders the record's changes (a Lamport counter: each writer
	// takes one more than the highest it learned); Writer breaks ties.
	Version  uint64 `json:"ver"`
	Writer   string `json:"w"`
	Checksum string `json:"sum,omitempty"`
	// Deleted marks a tombstone, kept for a while so that a member that
	// missed the delete cannot bring the secret back.
	Deleted   bool      `json:"del,omitempty"`
	DeletedAt time.Time `json:"deleted_at,omitzero"`
}

// Key is namespace/name.
func (r Record) Key() string { return SecretKey(r.Namespace, r.Name) }

// SecretKey is a secret's key: namespace/name.
func SecretKey(namespace, name string) string {
	if namespace == "" {
		namespace = "default"
	}
	return namespace + "/" + name
}

// Newer reports whether r supersedes o.
func (r Record) Newer(o Record) bool {
	if r.Version != o.Version {
		return r.Version > o.Version
	}
	return r.Writer > o.Writer
}

// Same reports whether r and o are the same version.
func (r Record) Same(o Record) bool { return r.Version == o.Version && r.Writer == o.Writer }

// Matches reports whether labels satisfy the record's node selector.
func (r Record) Matches(labels map[string]string) bool {
	for k, v := range r.Selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Backend is where a Vault keeps its records (agentd/store).
type Backend interface {
	PutSecret(key string, value []byte) error
	GetSecret(key string) ([]byte, error)
	ListSecrets(f func(key string, value []byte) error) error
	DeleteSecret(key string) error
}

// stored is a record as written to the backend: metadata and the sealed
// data (nil for tombstones).
type stored struct {
	Record
	Sealed []byte `json:"sealed,omitempty"`
}

// Vault keeps the secrets this node holds, each sealed with a fresh data key
// wrapped by the KMS. Nothing it writes contains plaintext.
type Vault struct {
	be  Backend
	kms KMS
	mu  sync.Mutex // serializes writes (read-modify-write of one key)
}

// NewVault returns a vault over be.
func NewVault(be Backend, kms KMS) *Vault { return &Vault{be: be, kms: kms} }

// aad binds a sealed payload to its secret and version: a sealed blob moved
// to another record, or an older version put back, fails to open.
func aad(r Record) []byte {
	return []byte("herd-secret\x00" + r.Key() + "\x00" + strconv.FormatUint(r.Version, 10) + "\x00" + r.Writer)
}

func (v *Vault) load(key string) (*stored, error) {
	b, err := v.be.GetSecret(key)
	if err != nil || b == nil {
		return nil, err
	}
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode secret record %s: %w", key, err)
	}
	return &s, nil
}

func (v *Vault) save(s *stored) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode secret record %s: %w", s.Key(), err)
	}
	return v.be.PutSecret(s.Key(), b)
}

// Get returns the record of key (a tombstone too), without data.
func (v *Vault) Get(key string) (Record, bool, error) {
	s, err := v.load(key)
	if err != nil || s == nil {
		return Record{}, false, err
	}
	return s.Record, true, nil
}

// List returns every record (tombstones too), by key.
func (v *Vault) List() ([]Record, error) {
	var out []Record
	err := v.be.ListSecrets(func(key string, b []byte) error {
		var s stored
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("decode secret record %s: %w", key, err)
		}
		out = append(out, s.Record)
		return nil
	})
	return out, err
}

// Put stores a version of a secret with its data, unless the vault holds
// the same or a newer version. It reports whether it stored it.
func (v *Vault) Put(ctx context.Context, r Record, data map[string][]byte) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ok, err := v.supersedes(r); !ok || err != nil {
		return false, err
	}
	r.Deleted, r.DeletedAt = false, time.Time{}
	r.Keys = slices.Sorted(maps.Keys(data))
	plain, err := json.Marshal(data)
	if err != nil {
		return false, errors.New("encode secret data failed")
	}
	defer clear(plain)
	sealed, err := Seal(ctx, v.kms, plain, aad(r))
	if err != nil {
		return false, fmt.Errorf("store secret %s: %w", r.Key(), err)
	}
	b, err := sealed.Marshal()
	if err != nil {
		return false, fmt.Errorf("store secret %s: %w", r.Key(), err)
	}
	if err := v.save(&stored{Record: r, Sealed: b}); err != nil {
		return false, err
	}
	return true, nil
}

// supersedes reports whether r is newer than the version the vault holds
// of its secret, or the vault holds none. Callers hold v.mu.
func (v *Vault) supersedes(r Record) (bool, error) {
	cur, err := v.load(r.Key())
	if err != nil {
		return false, err
	}
	return cur == nil || r.Newer(cur.Record), nil
}

// Tombstone records r (Deleted set) unless the vault holds the same or a
// newer version; the sealed data goes. It reports whether it stored it.
func (v *Vault) Tombstone(r Record) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ok, err := v.supersedes(r); !ok || err != nil {
		return false, err
	}
	r.Deleted, r.DeletedAt, r.Checksum, r.Keys = true, time.Now(), "", nil
	return true, v.save(&stored{Record: r})
}

// Forget removes every trace of key (this node no longer matches the
// secret's selector, or its tombstone expired).
func (v *Vault) Forget(key string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.be.DeleteSecret(key)
}

// ErrNotHeld means the vault holds no live version of a secret.
var ErrNotHeld = errors.New("secret not held on this node")

// Open returns a live secret's record and data.
func (v *Vault) Open(ctx context.Context, key string) (Record, map[string][]byte, error) {
	s, err := v.load(key)
	if err != nil {
		return Record{}, nil, err
	}
	if s == nil || s.Deleted {
		return Record{}, nil, fmt.Errorf("%s: %w", key, ErrNotHeld)
	}
	sealed, err := Unmarshal(s.Sealed)
	if err != nil {
		return Record{}, nil, fmt.Errorf("open secret %s: %w", key, err)
	}
	plain, err := Open(ctx, v.kms, sealed, aad(s.Record))
	if err != nil {
		return Record{}, nil, fmt.Errorf("open secret %s: %w", key, err)
	}
	defer clear(plain)
	var data map[string][]byte
	if err := json.Unmarshal(plain, &data); err != nil {
		return Record{}, nil, fmt.Errorf("open secret %s: decoding failed", key)
	}
	return s.Record, data, nil
}

// RewrapAll re-wraps every stored data key with the KMS's current key (after
// a rotation) and returns how many it re-wrapped.
func (v *Vault) RewrapAll(ctx context.Context) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var all []*stored
	err := v.be.ListSecrets(func(key string, b []byte) error {
		var s stored
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("decode secret record %s: %w", key, err)
		}
		all = append(all, &s)
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		if s.Deleted || len(s.Sealed) == 0 {
			continue
		}
		sealed, err := Unmarshal(s.Sealed)
		if err != nil {
			return n, fmt.Errorf("re-wrap secret %s: %w", s.Key(), err)
		}
		re, err := Rewrap(ctx, v.kms, sealed)
		if err != nil {
			return n, fmt.Errorf("re-wrap secret %s: %w", s.Key(), err)
		}
		if s.Sealed, err = re.Marshal(); err != nil {
			return n, fmt.Errorf("re-wrap secret %s: %w", s.Key(), err)
		}
		if err := v.save(s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// KeyIDs returns the ids of the key-encryption keys the stored secrets are
// wrapped with (to tell when an old key may be retired).
func (v *Vault) KeyIDs() (map[string]int, error) {
	out := map[string]int{}
	err := v.be.ListSecrets(func(key string, b []byte) error {
		var s stored
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("decode secret record %s: %w", key, err)
		}
		if len(s.Sealed) == 0 {
			return nil
		}
		sealed, err := Unmarshal(s.Sealed)
		if err != nil {
			return fmt.Errorf("secret %s: %w", key, err)
		}
		out[sealed.KeyID]++
		return nil
	})
	return out, err
}
