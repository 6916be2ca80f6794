// Package store keeps a node's desired state and observed status in a bbolt
// file: the pods agentd was asked to run (spec, status, uid, spec hash,
// creation time) and the node labels set through the API. It survives agentd
// restarts; on start agentd reloads it and re-adopts what is still running.
//
// A Store is safe for concurrent use. Every write is one bbolt transaction,
// synced to disk before it returns.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// SchemaVersion is the layout this package writes. Open refuses a file
// written by a newer layout rather than misreading it.
const SchemaVersion = 1

// ErrNotFound is returned (wrapped) for a pod that is not in the store.
var ErrNotFound = errors.New("not found")

var (
	bucketMeta       = []byte("meta")
	bucketPods       = []byte("pods")
	bucketNodeLabels = []byte("node_labels")
	bucketSecrets    = []byte("secrets")
	keySchemaVersion = []byte("schema_version")
)

// openTimeout bounds how long Open waits for the file lock that another
// process (a second agentd on the same state) may hold.
const openTimeout = 2 * time.Second

// Store is the node's bbolt database.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (or creates) the database at path, creating its directory if
// needed, and checks or writes the schema version. Only one process can
// hold it open: a second Open fails after a short wait.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another process (is another agentd running?)", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchemaVersion); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return fmt.Errorf("corrupt schema version %q", v)
			}
			if n > SchemaVersion {
				return fmt.Errorf("schema version %d is newer than this agentd understands (%d): upgrade agentd", n, SchemaVersion)
			}
			// Older layouts would be migrated here; there are none yet.
		}
		if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketPods, bucketNodeLabels, bucketSecrets} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// SchemaVersion returns the schema version recorded in the file.
func (s *Store) SchemaVersion() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keySchemaVersion)
		var err error
		n, err = strconv.Atoi(string(v))
		return err
	})
	return n, err
}

// PutPod creates or replaces the record of pod.Spec.Name.
func (s *Store) PutPod(pod *herdv1.Pod) error {
	name := pod.GetSpec().GetName()
	if name == "" {
		return fmt.Errorf("put pod: the pod has no name")
	}
	data, err := proto.Marshal(pod)
	if err != nil {
		return fmt.Errorf("put pod %s: %w", name, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPods).Put([]byte(name), data)
	})
	if err != nil {
		return fmt.Errorf("put pod %s: %w", name, err)
	}
	return nil
}

// GetPod returns the record of the named pod, or an error wrapping
// ErrNotFound.
func (s *Store) GetPod(name string) (*herdv1.Pod, error) {
	var pod *herdv1.Pod
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPods).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("pod %s: %w", name, ErrNotFound)
		}
		pod = &herdv1.Pod{}
		if err := proto.Unmarshal(v, pod); err != nil {
			return fmt.Errorf("pod %s: corrupt record: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pod, nil
}

// ListPods returns every pod, sorted by name.
func (s *Store) ListPods() ([]*herdv1.Pod, error) {
	var pods []*herdv1.Pod
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPods).ForEach(func(k, v []byte) error {
			pod := &herdv1.Pod{}
			if err := proto.Unmarshal(v, pod); err != nil {
				return fmt.Errorf("pod %s: corrupt record: %w", k, err)
			}
			pods = append(pods, pod)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	// bbolt iterates in key order already; keep the promise explicit.
	sort.Slice(pods, func(i, j int) bool { return pods[i].GetSpec().GetName() < pods[j].GetSpec().GetName() })
	return pods, nil
}

// DeletePod removes the named pod's record. Deleting a missing pod is not
// an error.
func (s *Store) DeletePod(name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPods).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return nil
}

// GetNodeLabels returns the node labels (an empty, non-nil map if none).
func (s *Store) GetNodeLabels() (map[string]string, error) {
	labels := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodeLabels).ForEach(func(k, v []byte) error {
			labels[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("get node labels: %w", err)
	}
	return labels, nil
}

// SetNodeLabels replaces all node labels with labels.
func (s *Store) SetNodeLabels(labels map[string]string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketNodeLabels); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		b, err := tx.CreateBucket(bucketNodeLabels)
		if err != nil {
			return err
		}
		for k, v := range labels {
			if k == "" {
				return fmt.Errorf("empty label key")
			}
			if err := b.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set node labels: %w", err)
	}
	return nil
}

// GetBlob returns a named opaque value of another agentd part (nil when
// unset). It lives in the meta bucket under "blob/".
func (s *Store) GetBlob(name string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte("blob/" + name)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// PutBlob stores a named opaque value.
func (s *Store) PutBlob(name string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("blob/"+name), value)
	})
}

// PutSecret stores a secret record under key. The caller seals the data
// (agentd/secrets): the store never sees plaintext.
func (s *Store) PutSecret(key string, value []byte) error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecrets).Put([]byte(key), value)
	}); err != nil {
		return fmt.Errorf("put secret %s: %w", key, err)
	}
	return nil
}

// GetSecret returns a secret record, or nil when there is none.
func (s *Store) GetSecret(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketSecrets).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", key, err)
	}
	return out, nil
}

// ListSecrets calls f with every secret record, in key order.
func (s *Store) ListSecrets(f func(key string, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
			return f(string(k), append([]byte(nil), v...))
		})
	})
}

// DeleteSecret removes a secret record; a missing one is no error.
func (s *Store) DeleteSecret(key string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecrets).Delete([]byte(key))
	}); err != nil {
		return fmt.Errorf("delete secret %s: %w", key, err)
	}
	return nil
}
