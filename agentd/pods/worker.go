package pods

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/pods/restarts"
	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// retryInterval paces re-inspection after containerd could not be asked.
const retryInterval = time.Second

// worker supervises one pod. Only its goroutine touches its fields (the
// parallel container starts in sync each touch only their own ctr).
type worker struct {
	m    *Manager
	e    *podEntry
	log  *slog.Logger
	pod  *herdv1.Pod // working copy; published as clones
	ctrs []*ctr

	events  chan exitEvent
	probes  chan probeEvent // changed probe outcomes (probe.go)
	waiters sync.WaitGroup

	lastStatus   *herdv1.PodStatus // last published status
	persistDirty bool              // the store lags behind lastStatus
	netns        string            // the pod's network namespace, once set up
}

// ctr is the worker's view of one container.
type ctr struct {
	idx     int
	spec    *herdv1.ContainerSpec
	id      string
	logPath string
	st      *herdv1.ContainerStatus // part of worker.pod

	task *runtime.Task // current task, nil when none
	gen  int           // bumped per task, to drop stale exit events

	restart      *restarts.Tracker // restart policy, back-off, next attempt
	done         bool              // terminated for good (restart policy)
	failed       bool              // done with a failure
	recheck      bool              // lost the wait on the task: inspect it again
	adoptPending bool              // adoption could not ask containerd: retry

	// secretRefs are the refKeys of the secrets the container uses;
	// secretSums what the current run was created with (LabelSecrets).
	secretRefs []string
	secretSums map[string]string
	// configFiles are the container's config files as last applied (they
	// change in place; spec keeps those the pod was created with).
	configFiles []*herdv1.ConfigFile

	probes    *probeSet // probing of the current run, nil when none
	probeKill string    // why a failed probe stopped the current run
	killAt    time.Time // SIGKILL then, after a failed probe's SIGTERM
}

type exitEvent struct {
	idx, gen int
	exit     runtime.Exit
}

// newWorker builds e's worker. Callers hold m.mu.
func newWorker(m *Manager, e *podEntry) *worker {
	pod := proto.Clone(e.pod).(*herdv1.Pod)
	if pod.Status == nil {
		pod.Status = &herdv1.PodStatus{Phase: PhasePending}
	}
	// Align the container statuses with the spec, by name.
	byName := map[string]*herdv1.ContainerStatus{}
	for _, cs := range pod.Status.Containers {
		byName[cs.GetName()] = cs
	}
	w := &worker{
		m:      m,
		e:      e,
		log:    m.log.With("pod", e.name, "uid", e.uid),
		pod:    pod,
		events: make(chan exitEvent, len(e.spec.GetContainers())),
		probes: make(chan probeEvent),
	}
	statuses := make([]*herdv1.ContainerStatus, len(e.spec.GetContainers()))
	for i, cs := range e.spec.GetContainers() {
		st := byName[cs.GetName()]
		if st == nil {
			st = &herdv1.ContainerStatus{Name: cs.GetName(), State: StateWaiting, Reason: ReasonContainerCreating}
		}
		st.ContainerId = e.ids[i]
		statuses[i] = st
		c := &ctr{
			idx:     i,
			spec:    cs,
			id:      e.ids[i],
			logPath: m.logPath(e.name, e.uid, cs.GetName()),
			st:      st,
			restart: restarts.NewTracker(e.spec.GetRestartPolicy(), m.backoff),
		}
		if i < len(pod.GetSpec().GetContainers()) {
			c.configFiles = pod.GetSpec().GetContainers()[i].GetConfigFiles()
		}
		for _, r := range spec.ContainerSecretRefs(e.spec, cs) {
			c.secretRefs = append(c.secretRefs, refKey(r))
		}
		w.ctrs = append(w.ctrs, c)
	}
	pod.Status.Containers = statuses
	w.lastStatus = proto.Clone(pod.Status).(*herdv1.PodStatus)
	return w
}

func (w *worker) run(ctx context.Context, adopt bool) {
	defer close(w.e.done)
	defer w.waiters.Wait()
	if w.pod.Status.StartTime == nil {
		w.pod.Status.StartTime = timestamppb.Now()
	}
	if adopt {
		for _, c := range w.ctrs {
			w.adopt(ctx, c)
		}
	}
	for {
		next := w.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		if w.commit(ctx) {
			next = earliest(next, time.Now().Add(retryInterval))
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case ev := <-w.events:
			w.handleExit(ctx, ev)
		case ev := <-w.probes:
			w.handleProbe(ctx, ev)
		case rq := <-w.e.restarts:
			w.handleRestart(ctx, rq)
		case rq := <-w.e.configs:
			w.handleConfig(ctx, rq)
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// sync starts every container that is due and returns when the worker
// must look again (zero: only on an event).
func (w *worker) sync(ctx context.Context) time.Time {
	now := time.Now()
	var next time.Time
	var due []*ctr
	for _, c := range w.ctrs {
		if c.adoptPending {
			c.adoptPending = false
			w.adopt(ctx, c)
		}
		if c.recheck {
			w.recheckTask(ctx, c)
		}
		if c.adoptPending || c.recheck {
			next = earliest(next, now.Add(retryInterval))
			continue
		}
		next = earliest(next, w.escalateKill(ctx, c, now))
		if c.done || c.task != nil {
			continue
		}
		if now.Before(c.restart.Next()) {
			next = earliest(next, c.restart.Next())
			continue
		}
		due = append(due, c)
	}
	if len(due) > 0 && !w.ensureNetwork(ctx, due) {
		for _, c := range due {
			next = earliest(next, c.restart.Next())
		}
		due = nil
	}
	switch len(due) {
	case 0:
	case 1:
		w.start(ctx, due[0])
	default:
		// Containers of a pod start in parallel.
		var wg sync.WaitGroup
		for _, c := range due {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.start(ctx, c)
			}()
		}
		wg.Wait()
	}
	for _, c := range due {
		if !c.done && c.task == nil && !c.restart.Next().IsZero() {
			next = earliest(next, c.restart.Next())
		}
	}
	w.updatePhase()
	return next
}

// ensureNetwork sets up the pod's network namespace before its first
// container starts (and again, idempotently, after an agentd restart). On
// failure the due containers wait with a back-off.
func (w *worker) ensureNetwork(ctx context.Context, due []*ctr) bool {
	n := w.m.cfg.Network
	if n == nil || w.netns != "" {
		return true
	}
	path, ip, err := n.Setup(ctx, w.e.uid, w.e.name)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		w.log.Warn("pod network setup failed", "err", err)
		for _, c := range due {
			c.restart.PrepFailed() // shares the image pull back-off
			w.setWaiting(c, ReasonNetworkSetupError, fmt.Sprintf("pod network: %v", err), time.Time{})
		}
		return false
	}
	w.netns = path
	w.pod.Status.PodIp = ip.String()
	return true
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// commit publishes a changed status and persists it. It reports whether
// persisting failed (to be retried).
func (w *worker) commit(ctx context.Context) (retry bool) {
	var snap *herdv1.Pod
	if !proto.Equal(w.pod.Status, w.lastStatus) {
		snap = proto.Clone(w.pod).(*herdv1.Pod)
		w.lastStatus = snap.Status
		w.persistDirty = true
	}
	if !w.persistDirty {
		return false
	}
	// Never write before Apply's own record (it would overwrite ours).
	select {
	case <-w.e.recorded:
	case <-ctx.Done():
		if snap != nil {
			w.m.publish(w.e, snap)
		}
		return false
	}
	// A status is written before it is shown: what a client saw survives
	// an agentd crash right after (a container seen running is adopted
	// with the started_at the client saw, not a new one).
	write := snap
	if write == nil {
		w.m.mu.Lock()
		write = w.e.pod
		w.m.mu.Unlock()
	}
	err := w.m.st.PutPod(write)
	if snap != nil {
		w.m.publish(w.e, snap)
	}
	if err != nil {
		w.log.Error("persist pod status", "err", err)
		return true
	}
	w.persistDirty = false
	return false
}
