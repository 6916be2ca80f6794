package pods

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Config files change in place: an Apply whose spec differs from the
// pod's only in config file content or modes is handed to the pod's
// worker, which rewrites the files (an atomic swap of the directory's
// ..data link, so a reader sees the old files or the new ones, never a
// mix) and records the new spec; with restart_on_config_change it restarts
// the containers whose files changed instead.

// configUpdate is what existing reports for such an Apply.
type configUpdate struct{ e *podEntry }

func (u *configUpdate) Error() string { return "config update" }

type configRequest struct {
	spec  *herdv1.PodSpec // defaulted
	hash  string
	reply chan error
}

// updateConfig has e's worker apply the config files of d and returns the
// pod as it is then.
func (m *Manager) updateConfig(ctx context.Context, e *podEntry, d *herdv1.PodSpec, hash string) (*herdv1.Pod, error) {
	if err := m.checkSecrets(ctx, d); err != nil {
		return nil, err
	}
	rq := configRequest{spec: d, hash: hash, reply: make(chan error, 1)}
	m.mu.Lock()
	done := e.done
	m.mu.Unlock()
	gone := fmt.Errorf("pod %s: config not updated, it is being deleted", e.name)
	select {
	case e.configs <- rq:
	case <-done:
		return nil, gone
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var err error
	select {
	case err = <-rq.reply:
	case <-done:
		return nil, gone
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return proto.Clone(e.pod).(*herdv1.Pod), nil
}

// handleConfig writes the new config files of running containers (or
// restarts them), then records and publishes the new spec. Containers not
// running get theirs when they start.
func (w *worker) handleConfig(ctx context.Context, rq configRequest) {
	var restart []*ctr
	var errs []error
	for _, c := range w.ctrs {
		files := rq.spec.GetContainers()[c.idx].GetConfigFiles()
		if proto.Equal(&herdv1.ContainerSpec{ConfigFiles: files}, &herdv1.ContainerSpec{ConfigFiles: c.configFiles}) {
			continue
		}
		c.configFiles = files
		if c.task == nil || c.done {
			continue
		}
		if rq.spec.GetRestartOnConfigChange() {
			restart = append(restart, c)
			continue
		}
		w.e.storageMu.Lock()
		root, err := w.m.openScratch(w.e)
		if err == nil {
			_, err = w.m.writeConfig(root, w.e, c)
			root.Close()
		}
		w.e.storageMu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.spec.GetName(), err))
		}
	}
	if len(errs) > 0 {
		rq.reply <- fmt.Errorf("update config files of pod %s: %w", w.e.name, errs[0])
		return
	}
	w.pod.Spec = rq.spec
	w.pod.SpecHash = rq.hash
	snap := proto.Clone(w.pod).(*herdv1.Pod)
	if err := w.m.st.PutPod(snap); err != nil {
		rq.reply <- fmt.Errorf("pod %s: record config update: %w", w.e.name, err)
		return
	}
	w.m.publish(w.e, snap)
	// The containers' copy of the record follows, so that a pod re-adopted
	// after its store was lost gets these files, not the first ones.
	rec := w.m.podRecordCopy(w.e)
	for _, c := range w.ctrs {
		if c.id == "" {
			continue
		}
		if err := w.m.cfg.Runtime.SetExtensions(ctx, c.id, rec); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			w.log.Warn("update the container's copy of the pod record", "container", c.spec.GetName(), "err", err)
		}
	}
	names := make([]string, 0, len(restart))
	for _, c := range restart {
		names = append(names, c.spec.GetName())
	}
	w.log.Info("config files updated", "restarting", slices.Clip(names))
	if len(restart) > 0 {
		w.stopForRestart(ctx, restart, "config files changed")
		w.commit(ctx)
	}
	rq.reply <- nil
}
