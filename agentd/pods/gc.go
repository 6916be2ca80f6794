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

// GC removes what herd created for pods it no longer has: containers
// (with their tasks) and snapshots that carry the safety marker and a pod
// label naming a pod incarnation (name and uid) the manager does not run,
// and the log directories of such pods. Objects without the marker are
// never touched; marked objects without a pod label (image layers, other
// herd components' objects) and images are left alone.
func (m *Manager) GC(ctx context.Context) error {
	var errs []error
	containers, err := m.rt.ListManaged(ctx)
	if err != nil {
		return err
	}
	for _, c := range containers {
		if c.Pod() == "" {
			continue // not a pod's container: some other herd part owns it
		}
		if err := m.collect(ctx, c.Pod(), c.PodUID(), func() error {
			m.log.Info("garbage-collecting container", "container", c.ID, "pod", c.Pod(), "uid", c.PodUID())
			return m.rt.RemoveContainer(ctx, c.ID, runtime.OnlyPodUID(c.PodUID()))
		}); err != nil {
			errs = append(errs, err)
		}
	}
	snaps, err := m.rt.ListManagedSnapshots(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range snaps {
		pod := s.Labels[runtime.LabelPod]
		if pod == "" {
			continue // an image layer
		}
		uid := s.Labels[runtime.LabelPodUID]
		if err := m.collect(ctx, pod, uid, func() error {
			m.log.Info("garbage-collecting snapshot", "snapshot", s.Key, "pod", pod, "uid", uid)
			return m.rt.RemoveSnapshot(ctx, s.Key, runtime.OnlyPodUID(uid))
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.collectLogDirs(); err != nil {
		errs = append(errs, err)
	}
	if err := m.collectNetworks(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := m.collectSecretDirs(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collect runs remove if (pod, uid) is not a pod the manager runs. It
// holds applyMu, so no new incarnation of the pod can appear meanwhile.
func (m *Manager) collect(ctx context.Context, pod, uid string, remove func() error) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if m.owned(pod, uid) {
		return nil
	}
	return remove()
}

// collectLogDirs removes LogDir/<pod>_<uid> directories of pods the
// manager does not run.
func (m *Manager) collectLogDirs() error {
	return m.collectIncarnationDirs(m.cfg.LogDir, "log directory", func(path, _ string) error {
		return os.RemoveAll(path)
	})
}

// collectIncarnationDirs calls remove for every root/<pod>_<uid>
// directory of a pod incarnation the manager does not run, each under
// applyMu so that no such incarnation appears meanwhile.
func (m *Manager) collectIncarnationDirs(root, what string, remove func(path, name string) error) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, de := range entries {
		name, uid, ok := strings.Cut(de.Name(), "_")
		if !de.IsDir() || !ok || name == "" || uid == "" {
			continue
		}
		m.applyMu.Lock()
		if !m.owned(name, uid) {
			m.log.Info("garbage-collecting "+what, "dir", de.Name())
			if err := remove(filepath.Join(root, de.Name()), de.Name()); err != nil {
				errs = append(errs, err)
			}
		}
		m.applyMu.Unlock()
	}
	return errors.Join(errs...)
}

// collectNetworks tears down the networks of pod incarnations the manager
// does not run (an agentd that died mid-delete). The pod network lists only
// what carries its own marker.
func (m *Manager) collectNetworks(ctx context.Context) error {
	if m.cfg.Network == nil {
		return nil
	}
	uids, err := m.cfg.Network.List()
	if err != nil {
		return fmt.Errorf("list pod networks: %w", err)
	}
	var errs []error
	for _, uid := range uids {
		m.applyMu.Lock()
		if !m.ownedUID(uid) {
			m.log.Info("garbage-collecting pod network", "uid", uid)
			if err := m.cfg.Network.Teardown(ctx, uid); err != nil {
				errs = append(errs, err)
			}
		}
		m.applyMu.Unlock()
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

// collectSecretDirs unmounts and removes the secret tmpfs of pod
// incarnations the manager does not run (SecretsDir/<pod>_<uid>): only a
// tmpfs mount carrying herd's marker for that very incarnation is
// unmounted, and a mount point that is no mount is removed only if empty.
func (m *Manager) collectSecretDirs() error {
	return m.collectIncarnationDirs(m.cfg.SecretsDir, "secret tmpfs", removeSecretDir)
}
