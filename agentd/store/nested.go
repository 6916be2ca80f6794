package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketNested holds nested cluster records (agentd/nested), one per
// cluster name. The driver seals the key material inside a record; the
// store never sees it in the clear. The bucket is created on first write,
// so stores of older agentds open unchanged.
var bucketNested = []byte("nested_clusters")

// PutNestedCluster stores the record of a nested cluster.
func (s *Store) PutNestedCluster(name string, value []byte) error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNested)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), value)
	}); err != nil {
		return fmt.Errorf("put nested cluster %s: %w", name, err)
	}
	return nil
}

// GetNestedCluster returns a nested cluster's record, or nil when there
// is none.
func (s *Store) GetNestedCluster(name string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketNested); b != nil {
			if v := b.Get([]byte(name)); v != nil {
				out = append([]byte(nil), v...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get nested cluster %s: %w", name, err)
	}
	return out, nil
}

// ListNestedClusters calls f with every nested cluster record, by name.
func (s *Store) ListNestedClusters(f func(name string, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNested)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			return f(string(k), append([]byte(nil), v...))
		})
	})
}

// DeleteNestedCluster removes a nested cluster's record; a missing one is
// no error.
func (s *Store) DeleteNestedCluster(name string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNested)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(name))
	}); err != nil {
		return fmt.Errorf("delete nested cluster %s: %w", name, err)
	}
	return nil
}
