package pods

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/store"
)

// Garbage collection removes only what it knows to be dead: the objects of
// a pod incarnation (name, uid) the manager deleted or replaced. Before it
// removes anything of an incarnation, the manager writes a tombstone for it
// to the store; garbage collection collects the marked objects of
// tombstoned incarnations it does not run, and drops a tombstone once a
// pass found nothing of it left. A crash anywhere in between leaves the
// tombstone, so the next agentd finishes the job. An incarnation that is
// neither run nor tombstoned is unknown (agentd's store was lost, or an
// older agentd left it): its objects are left alone, never guessed dead.

// tombstoneBlob names the store blob holding the tombstones (one small
// JSON document: there are only as many as deletions not yet collected).
const tombstoneBlob = "pods/tombstones"

type tombstone struct {
	Pod string    `json:"pod"`
	UID string    `json:"uid"`
	At  time.Time `json:"at"`
}

type tombstoneDoc struct {
	Tombstones []tombstone `json:"tombstones"`
}

func loadTombstones(st *store.Store) (map[string]tombstone, error) {
	data, err := st.GetBlob(tombstoneBlob)
	if err != nil {
		return nil, fmt.Errorf("load tombstones: %w", err)
	}
	out := map[string]tombstone{}
	if len(data) == 0 {
		return out, nil
	}
	var doc tombstoneDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("load tombstones: corrupt record: %w", err)
	}
	for _, t := range doc.Tombstones {
		if t.Pod != "" && t.UID != "" {
			out[incarnationKey(t.Pod, t.UID)] = t
		}
	}
	return out, nil
}

func saveTombstones(st *store.Store, ts map[string]tombstone) error {
	doc := tombstoneDoc{Tombstones: make([]tombstone, 0, len(ts))}
	for _, t := range ts {
		doc.Tombstones = append(doc.Tombstones, t)
	}
	sort.Slice(doc.Tombstones, func(i, j int) bool {
		return incarnationKey(doc.Tombstones[i].Pod, doc.Tombstones[i].UID) < incarnationKey(doc.Tombstones[j].Pod, doc.Tombstones[j].UID)
	})
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("save tombstones: %w", err)
	}
	if err := st.PutBlob(tombstoneBlob, data); err != nil {
		return fmt.Errorf("save tombstones: %w", err)
	}
	return nil
}

func incarnationKey(pod, uid string) string { return pod + "_" + uid }

// gcState is what garbage collection and re-adoption keep between passes.
type gcState struct {
	// pass serializes garbage collection passes.
	pass sync.Mutex

	mu sync.Mutex
	// tombs mirrors the store's tombstones, by incarnationKey; nil until
	// loaded.
	tombs map[string]tombstone
	// logged holds the unknown objects already reported, so that each is
	// logged once (while it stays).
	logged map[string]bool
	// recoverPending: Start could not look for containers to re-adopt;
	// the next garbage collection pass tries again before anything else.
	recoverPending bool
}

// tombstonesLocked returns the loaded tombstones, loading them on first
// use. Callers hold gcs.mu.
func (m *Manager) tombstonesLocked() (map[string]tombstone, error) {
	g := &m.gcs
	if g.tombs == nil {
		ts, err := loadTombstones(m.st)
		if err != nil {
			return nil, err
		}
		g.tombs = ts
	}
	return g.tombs, nil
}

// tombstone records that the manager deletes or replaces the pod
// incarnation (pod, uid), before any of its objects is removed, so that
// garbage collection may remove whatever of it is left, after a crash
// too. A failure is logged: the objects of the incarnation are then left
// to the operator rather than collected.
func (m *Manager) tombstone(pod, uid string) {
	if err := m.addTombstone(pod, uid); err != nil {
		m.log.Error("cannot record the pod incarnation as deleted: garbage collection will leave what of it remains", "pod", pod, "uid", uid, "err", err)
	}
}

func (m *Manager) addTombstone(pod, uid string) error {
	if pod == "" || uid == "" {
		return nil
	}
	k := incarnationKey(pod, uid)
	return m.updateTombstones(func(ts map[string]tombstone) {
		if _, ok := ts[k]; !ok {
			ts[k] = tombstone{Pod: pod, UID: uid, At: time.Now().UTC()}
		}
	})
}

// dropTombstones removes the tombstones of the given incarnation keys.
func (m *Manager) dropTombstones(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	return m.updateTombstones(func(ts map[string]tombstone) {
		for _, k := range keys {
			delete(ts, k)
		}
	})
}

// updateTombstones applies change to a copy of the tombstones and saves
// the copy, unless change left it as it was; the loaded set changes only
// once the store has it.
func (m *Manager) updateTombstones(change func(map[string]tombstone)) error {
	g := &m.gcs
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := m.tombstonesLocked()
	if err != nil {
		return err
	}
	next := cloneTombs(ts)
	change(next)
	if maps.Equal(next, ts) {
		return nil
	}
	if err := saveTombstones(m.st, next); err != nil {
		return err
	}
	g.tombs = next
	return nil
}

// tombstoned reports whether (pod, uid) has a tombstone; on a store error
// it reports false, which leaves the objects alone.
func (m *Manager) tombstoned(pod, uid string) bool {
	g := &m.gcs
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := m.tombstonesLocked()
	if err != nil {
		return false
	}
	_, ok := ts[incarnationKey(pod, uid)]
	return ok
}

// tombstonedUID reports whether an incarnation with this uid has a
// tombstone (pod networks are known by uid only; uids are random).
func (m *Manager) tombstonedUID(uid string) bool {
	g := &m.gcs
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := m.tombstonesLocked()
	if err != nil {
		return false
	}
	for _, t := range ts {
		if t.UID == uid {
			return true
		}
	}
	return false
}

// tombstoneSnapshot returns a copy of the tombstones.
func (m *Manager) tombstoneSnapshot() (map[string]tombstone, error) {
	g := &m.gcs
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := m.tombstonesLocked()
	if err != nil {
		return nil, err
	}
	return cloneTombs(ts), nil
}

func cloneTombs(ts map[string]tombstone) map[string]tombstone {
	out := make(map[string]tombstone, len(ts))
	for k, v := range ts {
		out[k] = v
	}
	return out
}
