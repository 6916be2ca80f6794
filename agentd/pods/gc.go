package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// gcLoop collects garbage right away and then every GCInterval.
func (m *Manager) gcLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.GCInterval)
	defer t.Stop()
	for {
		if err := m.GC(m.ctx); err != nil && m.ctx.Err() == nil {
			m.log.Warn("garbage collection incomplete", "err", err)
		}
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// owned reports whether a pod incarnation (name, uid) is one the manager
// runs.
func (m *Manager) owned(name, uid string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unusable[name] {
		return true
	}
	e := m.pods[name]
	return e != nil && e.uid == uid
}

// GC removes what is left of pod incarnations the manager deleted or
// replaced (those with a tombstone, see tombstone.go) and no longer runs:
// containers (with their tasks) and snapshots that carry the safety
// marker and pod labels naming such an incarnation, and its log
// directory, secret tmpfs and pod network. A tombstone goes once a pass
// found nothing of its incarnation left.
//
// What belongs to an incarnation the manager neither runs nor tombstoned
// is unknown and left alone (reported once): agentd's store may have been
// lost, and a running pod must never die because agentd forgot it. Start
// re-adopts such pods when their containers carry a copy of the pod
// record (readopt.go). Objects without the marker are never touched;
// marked objects without a pod label (image layers, other herd
// components' objects) and images are left alone.
func (m *Manager) GC(ctx context.Context) error {
	m.gcs.pass.Lock()
	defer m.gcs.pass.Unlock()
	m.recoverLate(ctx)
	tombs, err := m.tombstoneSnapshot()
	if err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	p := &gcPass{m: m, dirty: map[string]bool{}, seen: map[string]bool{}}
	var errs []error
	containers, err := m.rt.ListManaged(ctx)
	if err != nil {
		return err
	}
	rootfs := map[string]bool{} // snapshots that belong to a listed container
	for _, c := range containers {
		if c.Pod() == "" {
			continue // not a pod's container: some other herd part owns it
		}
		rootfs[c.SnapshotKey] = true
		inc := incarnation{pod: c.Pod(), uid: c.PodUID()}
		if err := p.consider(ctx, inc, "container/"+c.ID+"/"+inc.uid, func() error {
			m.log.Info("garbage-collecting container", "container", c.ID, "pod", inc.pod, "uid", inc.uid)
			return m.rt.RemoveContainer(ctx, c.ID, runtime.OnlyPodUID(inc.uid))
		}, func() { m.reportUnknownContainer(c) }); err != nil {
			errs = append(errs, err)
		}
	}
	snaps, err := m.rt.ListManagedSnapshots(ctx)
	if err != nil {
		p.incomplete = true
		errs = append(errs, err)
	}
	for _, s := range snaps {
		pod := s.Labels[runtime.LabelPod]
		if pod == "" {
			continue // an image layer
		}
		inc := incarnation{pod: pod, uid: s.Labels[runtime.LabelPodUID]}
		report := func() { m.reportUnknown("snapshot", s.Key, inc) }
		if rootfs[s.Key] {
			report = func() {} // its container's report covers it
		}
		if err := p.consider(ctx, inc, "snapshot/"+s.Key+"/"+inc.uid, func() error {
			m.log.Info("garbage-collecting snapshot", "snapshot", s.Key, "pod", inc.pod, "uid", inc.uid)
			return m.rt.RemoveSnapshot(ctx, s.Key, runtime.OnlyPodUID(inc.uid))
		}, report); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.collectLogDirs(ctx, p); err != nil {
		errs = append(errs, err)
	}
	if err := m.collectNetworks(ctx, p); err != nil {
		errs = append(errs, err)
	}
	if err := m.collectSecretDirs(ctx, p); err != nil {
		errs = append(errs, err)
	}
	if err := m.collectIncarnationDirs(ctx, p, m.cfg.ScratchDir, "scratch dir", func(dir, marker string) error {
		return m.removeScratch(ctx, dir, marker)
	}); err != nil {
		errs = append(errs, err)
	}
	if err := p.finish(tombs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// incarnation names a pod incarnation; pod is empty for objects known by
// uid only (pod networks).
type incarnation struct{ pod, uid string }

// gcPass is one garbage collection pass.
type gcPass struct {
	m *Manager
	// dirty holds the uids of incarnations of which something was left
	// (run, or a removal failed): their tombstones stay.
	dirty map[string]bool
	// seen holds the unknown objects this pass saw (report keys).
	seen map[string]bool
	// incomplete: a listing failed, so the pass cannot tell that nothing
	// is left of an incarnation.
	incomplete bool
}

// consider calls remove if the incarnation has a tombstone and the manager
// does not run it, and report (once per key) if it has neither. It holds
// applyMu, so no new incarnation of the pod can appear meanwhile.
func (p *gcPass) consider(ctx context.Context, inc incarnation, key string, remove func() error, report func()) error {
	m := p.m
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if err := ctx.Err(); err != nil {
		p.dirty[inc.uid] = true
		return err
	}
	switch {
	case m.runs(inc):
		p.dirty[inc.uid] = true
		return nil
	case !m.dead(inc):
		p.unknown(key, report)
		return nil
	}
	if err := remove(); err != nil {
		p.dirty[inc.uid] = true
		return err
	}
	return nil
}

// runs reports whether the manager runs the incarnation.
func (m *Manager) runs(inc incarnation) bool {
	if inc.pod == "" {
		return m.ownedUID(inc.uid)
	}
	return m.owned(inc.pod, inc.uid)
}

// dead reports whether the incarnation has a tombstone.
func (m *Manager) dead(inc incarnation) bool {
	switch {
	case inc.uid == "":
		return false
	case inc.pod == "":
		return m.tombstonedUID(inc.uid)
	}
	return m.tombstoned(inc.pod, inc.uid)
}

// unknown reports an unknown object the first time a pass sees it.
// Callers hold gcs.pass, which guards gcs.logged.
func (p *gcPass) unknown(key string, report func()) {
	g := &p.m.gcs
	p.seen[key] = true
	if g.logged == nil {
		g.logged = map[string]bool{}
	}
	if !g.logged[key] {
		g.logged[key] = true
		report()
	}
}

// finish drops the tombstones (of the pass's start) whose incarnation
// nothing was left of, and forgets reports of unknown objects that went.
func (p *gcPass) finish(tombs map[string]tombstone) error {
	m := p.m
	if p.incomplete {
		return nil
	}
	for k := range m.gcs.logged {
		if !p.seen[k] {
			delete(m.gcs.logged, k)
		}
	}
	var drop []string
	for k, t := range tombs {
		if !p.dirty[t.UID] && !m.owned(t.Pod, t.UID) {
			drop = append(drop, k)
		}
	}
	if err := m.dropTombstones(drop); err != nil {
		return err
	}
	for _, k := range drop {
		m.log.Debug("pod incarnation fully collected", "incarnation", k)
	}
	return nil
}

// reportUnknownContainer says, once, why a container of an unknown
// incarnation keeps running and what the operator can do.
func (m *Manager) reportUnknownContainer(c runtime.ManagedContainer) {
	attrs := []any{"container", c.ID, "pod", c.Pod(), "uid", c.PodUID()}
	if ok, err := c.Extension(ExtensionPodRecord, &herdv1.Pod{}); ok && err == nil {
		m.log.Warn("leaving a running container of a pod incarnation agentd does not run alone: garbage collection never removes what agentd's store has no deletion record of. "+
			"It carries a copy of its pod record, so agentd re-adopts it at its next start if no pod of this name is recorded then; "+
			"or apply a pod of this name whose containers have the same names (they replace these) and delete that pod if it is unwanted", attrs...)
		return
	}
	// An older agentd created it without a copy of its pod spec: agentd
	// cannot rebuild the pod, and cannot tell a lost store (the pod is
	// wanted) from a forgotten deletion, so it leaves the container be.
	m.log.Warn("leaving a running container of a pod incarnation agentd's store does not know alone: it carries no copy of its pod spec (an older agentd created it), so agentd cannot re-adopt it, and garbage collection never removes it. "+
		"To take it over, apply a pod of this name whose containers have the same names (they replace these); delete that pod afterwards if it is unwanted", attrs...)
}

// reportUnknown says, once, that an object of an unknown incarnation is
// left alone.
func (m *Manager) reportUnknown(kind, id string, inc incarnation) {
	m.log.Info("leaving a "+kind+" of a pod incarnation agentd's store has no record of alone (never garbage-collected without a deletion record)",
		kind, id, "pod", inc.pod, "uid", inc.uid)
}

// collectLogDirs removes LogDir/<pod>_<uid> directories of tombstoned pod
// incarnations the manager does not run.
func (m *Manager) collectLogDirs(ctx context.Context, p *gcPass) error {
	return m.collectIncarnationDirs(ctx, p, m.cfg.LogDir, "log directory", func(path, _ string) error {
		return os.RemoveAll(path)
	})
}

// collectIncarnationDirs calls remove for every root/<pod>_<uid>
// directory of a tombstoned pod incarnation the manager does not run.
func (m *Manager) collectIncarnationDirs(ctx context.Context, p *gcPass, root, what string, remove func(path, name string) error) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		p.incomplete = true
		return err
	}
	var errs []error
	for _, de := range entries {
		name, uid, ok := strings.Cut(de.Name(), "_")
		if !de.IsDir() || !ok || name == "" || uid == "" {
			continue
		}
		inc := incarnation{pod: name, uid: uid}
		if err := p.consider(ctx, inc, what+"/"+de.Name(), func() error {
			m.log.Info("garbage-collecting "+what, "dir", de.Name())
			return remove(filepath.Join(root, de.Name()), de.Name())
		}, func() { m.reportUnknown(what, de.Name(), inc) }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// collectNetworks tears down the networks of tombstoned pod incarnations
// the manager does not run (an agentd that died mid-delete). The pod
// network lists only what carries its own marker.
func (m *Manager) collectNetworks(ctx context.Context, p *gcPass) error {
	if m.cfg.Network == nil {
		return nil
	}
	uids, err := m.cfg.Network.List()
	if err != nil {
		p.incomplete = true
		return fmt.Errorf("list pod networks: %w", err)
	}
	var errs []error
	for _, uid := range uids {
		inc := incarnation{uid: uid}
		if err := p.consider(ctx, inc, "network/"+uid, func() error {
			m.log.Info("garbage-collecting pod network", "uid", uid)
			return m.cfg.Network.Teardown(ctx, uid)
		}, func() { m.reportUnknown("pod network", uid, inc) }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownedUID reports whether any pod the manager runs has this uid.
func (m *Manager) ownedUID(uid string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.pods {
		if e.uid == uid {
			return true
		}
	}
	return false
}

// collectSecretDirs unmounts and removes the secret tmpfs of tombstoned
// pod incarnations the manager does not run (SecretsDir/<pod>_<uid>):
// only a tmpfs mount carrying herd's marker for that very incarnation is
// unmounted, and a mount point that is no mount is removed only if empty.
func (m *Manager) collectSecretDirs(ctx context.Context, p *gcPass) error {
	return m.collectIncarnationDirs(ctx, p, m.cfg.SecretsDir, "secret tmpfs", removeSecretDir)
}
