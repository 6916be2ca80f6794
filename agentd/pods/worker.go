package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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

	crashes      int       // consecutive crashes, for the back-off
	pullFailures int       // consecutive failed pulls
	nextAttempt  time.Time // no (re)start before this
	done         bool      // terminated for good (restart policy)
	failed       bool      // done with a failure
	recheck      bool      // lost the wait on the task: inspect it again
	adoptPending bool      // adoption could not ask containerd: retry

	// secretRefs are the refKeys of the secrets the container uses;
	// secretSums what the current run was created with (LabelSecrets).
	secretRefs []string
	secretSums map[string]string

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
		if now.Before(c.nextAttempt) {
			next = earliest(next, c.nextAttempt)
			continue
		}
		due = append(due, c)
	}
	if len(due) > 0 && !w.ensureNetwork(ctx, due) {
		for _, c := range due {
			next = earliest(next, c.nextAttempt)
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
		if !c.done && c.task == nil && !c.nextAttempt.IsZero() {
			next = earliest(next, c.nextAttempt)
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
			c.pullFailures++ // shares the image pull back-off
			c.nextAttempt = time.Now().Add(w.m.expBackoff(c.pullFailures))
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
	if !proto.Equal(w.pod.Status, w.lastStatus) {
		snap := proto.Clone(w.pod).(*herdv1.Pod)
		w.m.publish(w.e, snap)
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
		return false
	}
	w.m.mu.Lock()
	snap := w.e.pod
	w.m.mu.Unlock()
	if err := w.m.st.PutPod(snap); err != nil {
		w.log.Error("persist pod status", "err", err)
		return true
	}
	w.persistDirty = false
	return false
}

// start pulls the image if needed, creates the container and starts its
// task. Failures are recorded in the status with a retry time.
func (w *worker) start(ctx context.Context, c *ctr) {
	secrets, err := w.m.prepareSecrets(ctx, w.e, c)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		c.pullFailures++ // shares the image pull back-off
		delay := w.m.expBackoff(c.pullFailures)
		c.nextAttempt = time.Now().Add(delay)
		w.setWaiting(c, ReasonCreateContainerConfigError, fmt.Sprintf("%v (retrying in %s)", err, delay.Round(time.Millisecond)), time.Time{})
		w.log.Warn("container secrets unavailable", "container", c.spec.GetName(), "err", err, "retry_in", delay)
		return
	}
	img, pulled, err := w.m.rt.EnsureImage(ctx, c.spec.GetImage(), secrets.pullOpts...)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		c.pullFailures++
		reason := ReasonErrImagePull
		if c.pullFailures > 1 {
			reason = ReasonImagePullBackOff
		}
		delay := w.m.expBackoff(c.pullFailures)
		c.nextAttempt = time.Now().Add(delay)
		w.setWaiting(c, reason, fmt.Sprintf("%v (retrying in %s)", err, delay.Round(time.Millisecond)), time.Time{})
		w.log.Warn("image pull failed", "container", c.spec.GetName(), "image", c.spec.GetImage(), "err", err, "retry_in", delay)
		return
	}
	c.pullFailures = 0
	if pulled {
		w.log.Info("pulled image", "container", c.spec.GetName(), "image", img.Ref, "digest", img.Digest)
	}

	cfg := runtime.ContainerConfig{Pod: w.e.name, PodUID: w.e.uid, Spec: c.spec, Image: img, NetnsPath: w.netns,
		Mounts: secrets.binds, ExtraEnv: secrets.env}
	if len(c.secretRefs) > 0 {
		cfg.Labels = map[string]string{LabelSecrets: encodeSums(secrets.sums)}
	}
	if w.netns != "" {
		cfg.ResolvConf = w.m.cfg.ResolvConf
	}
	cont, err := w.m.rt.CreateContainer(ctx, cfg)
	if err != nil && errdefs.IsAlreadyExists(err) && ctx.Err() == nil {
		// A leftover of ours (an earlier run, a crash mid-way): remove it
		// and try again. RemoveContainer refuses anything foreign.
		if rerr := w.m.rt.RemoveContainer(ctx, c.id); rerr != nil {
			err = rerr
		} else {
			cont, err = w.m.rt.CreateContainer(ctx, cfg)
		}
	}
	if err != nil {
		w.startFailed(ctx, c, ReasonCreateContainerError, err, false)
		return
	}
	task, err := cont.NewTask(ctx, c.logPath)
	if err != nil {
		w.cleanup(c)
		w.startFailed(ctx, c, ReasonRunContainerError, err, true)
		return
	}
	exited, err := task.Wait(ctx)
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		w.cleanup(c)
		w.startFailed(ctx, c, ReasonRunContainerError, err, true)
		return
	}
	now := time.Now()
	if c.st.StartedAt != nil {
		c.st.RestartCount++
	}
	c.task = task
	c.gen++
	c.secretSums = secrets.sums
	w.watch(ctx, c, exited)
	c.nextAttempt = time.Time{}
	st := c.st
	st.State = StateRunning
	st.Reason, st.Message = "", ""
	st.StartedAt = timestamppb.New(now)
	st.FinishedAt, st.NextRestartAt = nil, nil
	st.Pid = task.PID()
	st.ImageDigest = img.Digest
	w.resetProbeStatus(c)
	w.startProbes(ctx, c)
}

// resetProbeStatus sets started and ready for a run that just began: a
// container without a startup probe has started, one without a readiness
// probe is ready once started; probes decide the rest.
func (w *worker) resetProbeStatus(c *ctr) {
	c.probeKill, c.killAt = "", time.Time{}
	c.st.Started = c.spec.GetStartupProbe() == nil
	c.st.Ready = c.st.Started && c.spec.GetReadinessProbe() == nil
}

// cleanup removes what a failed start left behind, in the background of
// the worker's own context so that a canceled start is cleaned up too.
func (w *worker) cleanup(c *ctr) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.m.ctx), killTimeout)
	defer cancel()
	if err := w.m.rt.RemoveContainer(ctx, c.id); err != nil {
		w.log.Warn("clean up after failed start", "container", c.spec.GetName(), "err", err)
	}
}

// startFailed records a failed creation or start. A task that could not
// be created or started counts as a failed run for the restart policy
// (Never: the container is done, as the kubelet's StartError).
func (w *worker) startFailed(ctx context.Context, c *ctr, reason string, err error, runFailure bool) {
	if ctx.Err() != nil {
		return
	}
	w.log.Warn("container start failed", "container", c.spec.GetName(), "reason", reason, "err", err)
	if runFailure && w.e.spec.GetRestartPolicy() == spec.RestartNever {
		c.done, c.failed = true, true
		st := c.st
		st.State, st.Reason, st.Message = StateTerminated, ReasonStartError, err.Error()
		st.FinishedAt = timestamppb.Now()
		st.NextRestartAt = nil
		return
	}
	c.crashes++
	delay := w.m.expBackoff(c.crashes)
	c.nextAttempt = time.Now().Add(delay)
	w.setWaiting(c, reason, err.Error(), c.nextAttempt)
}

func (w *worker) setWaiting(c *ctr, reason, msg string, nextRestart time.Time) {
	st := c.st
	st.State, st.Reason, st.Message = StateWaiting, reason, msg
	st.Pid = 0
	if nextRestart.IsZero() {
		st.NextRestartAt = nil
	} else {
		st.NextRestartAt = timestamppb.New(nextRestart)
	}
}

// watch forwards the task's exit to the worker loop.
func (w *worker) watch(ctx context.Context, c *ctr, exited <-chan runtime.Exit) {
	ev := exitEvent{idx: c.idx, gen: c.gen}
	w.waiters.Add(1)
	go func() {
		defer w.waiters.Done()
		select {
		case ev.exit = <-exited:
			select {
			case w.events <- ev:
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
}

func (w *worker) handleExit(ctx context.Context, ev exitEvent) {
	c := w.ctrs[ev.idx]
	if ev.gen != c.gen || c.task == nil {
		return
	}
	if ev.exit.Err != nil {
		if ctx.Err() == nil {
			w.log.Warn("lost the wait on a task; inspecting it again", "container", c.spec.GetName(), "err", ev.exit.Err)
			c.recheck = true
		}
		return
	}
	w.exited(ctx, c, ev.exit.Code, ev.exit.At)
}

// recheckTask looks at a task whose wait failed (containerd restarted).
func (w *worker) recheckTask(ctx context.Context, c *ctr) {
	ts, err := c.task.Status(ctx)
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		c.recheck = false
		w.lost(ctx, c, "the task disappeared")
		return
	case err != nil:
		return // try again later
	}
	if ts.State == "stopped" {
		c.recheck = false
		w.exited(ctx, c, ts.ExitCode, ts.ExitedAt)
		return
	}
	exited, err := c.task.Wait(ctx)
	if err != nil {
		return
	}
	c.recheck = false
	c.gen++
	w.watch(ctx, c, exited)
}

// exited handles the exit of c's task: it records the exit, removes the
// task and container (a restart gets a fresh root filesystem, as in
// Kubernetes) and applies the restart policy.
func (w *worker) exited(ctx context.Context, c *ctr, code uint32, at time.Time) {
	if at.IsZero() || at.Year() < 2000 {
		at = time.Now()
	}
	oom := code == 137 && w.m.rt.OOMKilled(c.id)
	if _, err := c.task.Delete(ctx); err != nil && ctx.Err() == nil {
		w.log.Warn("delete exited task", "container", c.spec.GetName(), "err", err)
	}
	if err := w.m.rt.RemoveContainer(ctx, c.id); err != nil && ctx.Err() == nil {
		w.log.Warn("remove exited container", "container", c.spec.GetName(), "err", err)
	}
	w.stopProbes(c)
	c.task = nil
	c.gen++
	st := c.st
	st.Pid = 0
	ec := int32(code)
	st.LastExitCode = &ec
	st.FinishedAt = timestamppb.New(at)
	var ran time.Duration
	if st.StartedAt != nil {
		ran = at.Sub(st.StartedAt.AsTime())
	}
	reason := ReasonCompleted
	switch {
	case oom:
		reason = ReasonOOMKilled
	case code != 0:
		reason = ReasonError
	}
	w.log.Info("container exited", "container", c.spec.GetName(), "code", code, "reason", reason, "ran", ran.Round(time.Millisecond))
	msg := c.probeKill
	c.probeKill, c.killAt = "", time.Time{}
	w.terminated(c, code != 0, reason, msg, ran, at)
}

// lost handles a container whose task vanished without an exit status
// (shim killed, node rebooted, container removed behind herd's back).
func (w *worker) lost(ctx context.Context, c *ctr, why string) {
	if err := w.m.rt.RemoveContainer(ctx, c.id); err != nil && ctx.Err() == nil {
		w.log.Warn("remove lost container", "container", c.spec.GetName(), "err", err)
	}
	w.stopProbes(c)
	c.probeKill, c.killAt = "", time.Time{}
	c.task = nil
	c.gen++
	now := time.Now()
	c.st.Pid = 0
	c.st.FinishedAt = timestamppb.New(now)
	w.log.Warn("container lost", "container", c.spec.GetName(), "why", why)
	w.terminated(c, true, ReasonContainerLost, why+"; exit status unknown", 0, now)
}

// terminated applies the restart policy to a container that stopped.
func (w *worker) terminated(c *ctr, failed bool, reason, msg string, ran time.Duration, at time.Time) {
	st := c.st
	if ran >= backoffResetAfter {
		c.crashes = 0
	}
	policy := w.e.spec.GetRestartPolicy()
	restart := policy == spec.RestartAlways || (policy == spec.RestartOnFailure && failed)
	if !restart {
		c.done, c.failed = true, failed
		st.State, st.Reason, st.Message = StateTerminated, reason, msg
		st.NextRestartAt = nil
		return
	}
	c.crashes++
	delay := w.m.crashBackoff(c.crashes)
	why := reasonText(st, reason)
	if msg != "" {
		why += "; " + msg
	}
	if delay == 0 {
		// Restarts right away. Never "terminated": that state means "done
		// for good" to a later adoption.
		c.nextAttempt = time.Time{}
		w.setWaiting(c, ReasonContainerCreating, "restarting after "+why, time.Time{})
		return
	}
	c.nextAttempt = at.Add(delay)
	w.setWaiting(c, ReasonCrashLoopBackOff,
		fmt.Sprintf("back-off %s restarting failed container %s (last exit: %s)", delay, c.spec.GetName(), why), c.nextAttempt)
}

func reasonText(st *herdv1.ContainerStatus, reason string) string {
	if st.LastExitCode != nil && reason != ReasonContainerLost {
		return fmt.Sprintf("%s, code %d", reason, st.GetLastExitCode())
	}
	return reason
}

// adopt reconciles a stored container status with what containerd has,
// after an agentd restart.
func (w *worker) adopt(ctx context.Context, c *ctr) {
	st := c.st
	if st.State == StateTerminated {
		c.done = true
		c.failed = st.Reason != ReasonCompleted
		return
	}
	c.crashes = int(min(st.RestartCount, 32))
	if st.State == StateWaiting && st.NextRestartAt != nil {
		c.nextAttempt = st.NextRestartAt.AsTime()
	}
	wasRunning := st.State == StateRunning
	cont, err := w.m.rt.LoadContainer(ctx, c.id)
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		if wasRunning {
			w.lost(ctx, c, "the container disappeared while agentd was down")
		}
		return
	case errors.Is(err, runtime.ErrForeign):
		// start reports it (and retries) if it is still there.
		return
	case err != nil:
		w.log.Warn("adopt: cannot inspect container", "container", c.spec.GetName(), "err", err)
		c.adoptPending = true
		return
	}
	if cont.PodUID() != w.e.uid {
		if err := w.m.rt.RemoveContainer(ctx, c.id, runtime.OnlyPodUID(cont.PodUID())); err != nil {
			w.log.Warn("adopt: remove container of an older incarnation", "container", c.spec.GetName(), "err", err)
		}
		if wasRunning {
			w.lost(ctx, c, "the container disappeared while agentd was down")
		}
		return
	}
	task, err := cont.Task(ctx)
	if errors.Is(err, runtime.ErrNotFound) {
		if wasRunning {
			w.lost(ctx, c, "the task disappeared while agentd was down")
		} else if err := w.m.rt.RemoveContainer(ctx, c.id); err != nil {
			w.log.Warn("adopt: remove container without task", "container", c.spec.GetName(), "err", err)
		}
		return
	}
	var ts runtime.TaskStatus
	if err == nil {
		ts, err = task.Status(ctx)
	}
	if err != nil {
		w.log.Warn("adopt: cannot inspect task", "container", c.spec.GetName(), "err", err)
		c.adoptPending = true
		return
	}
	switch ts.State {
	case "running", "paused", "pausing":
		exited, err := task.Wait(ctx)
		if err != nil {
			c.adoptPending = true
			return
		}
		c.task = task
		c.gen++
		c.secretSums = parseSums(cont.Labels()[LabelSecrets])
		w.watch(ctx, c, exited)
		if !wasRunning || st.StartedAt == nil {
			st.StartedAt = timestamppb.Now()
		}
		st.State, st.Reason, st.Message = StateRunning, "", ""
		st.NextRestartAt, st.FinishedAt = nil, nil
		st.Pid = task.PID()
		c.nextAttempt = time.Time{}
		w.adoptProbeStatus(c, wasRunning)
		w.startProbes(ctx, c)
		w.log.Info("re-adopted running container", "container", c.spec.GetName(), "pid", st.Pid)
	case "stopped":
		c.task = task
		if st.StartedAt == nil {
			st.StartedAt = timestamppb.Now()
		}
		w.log.Info("container exited while agentd was down", "container", c.spec.GetName(), "code", ts.ExitCode)
		w.exited(ctx, c, ts.ExitCode, ts.ExitedAt)
	case "created":
		// Created but never started: start it afresh.
		if err := w.m.rt.RemoveContainer(ctx, c.id); err != nil {
			w.log.Warn("adopt: remove unstarted container", "container", c.spec.GetName(), "err", err)
		}
	default:
		c.task = task
		w.lost(ctx, c, "the task is in state "+ts.State)
	}
}

// adoptProbeStatus keeps the started and ready fields a re-adopted running
// container had (so that an agentd restart does not make a healthy pod
// unready), within what its probes allow: no startup probe means started,
// no readiness probe means ready once started.
func (w *worker) adoptProbeStatus(c *ctr, wasRunning bool) {
	st := c.st
	if !wasRunning {
		st.Started, st.Ready = false, false
	}
	if c.spec.GetStartupProbe() == nil {
		st.Started = true
	}
	if c.spec.GetReadinessProbe() == nil {
		st.Ready = st.Started
	}
	st.Ready = st.Ready && st.Started
}

// updateReady clears started and ready of containers that do not run and
// derives the pod's readiness: Running with every container ready.
func (w *worker) updateReady() {
	ready := w.pod.Status.Phase == PhaseRunning
	for _, c := range w.ctrs {
		if c.task == nil || c.st.State != StateRunning {
			c.st.Ready, c.st.Started = false, false
		}
		ready = ready && c.st.Ready
	}
	w.pod.Status.Ready = ready
}

// updatePhase derives the pod phase from its containers.
func (w *worker) updatePhase() {
	defer w.updateReady()
	allDone, failed, pending := true, false, false
	var failedNames, problems []string
	for _, c := range w.ctrs {
		switch {
		case c.done:
			if c.failed {
				failed = true
				failedNames = append(failedNames, c.spec.GetName())
			}
		default:
			allDone = false
			if c.st.StartedAt == nil {
				pending = true
			}
			if c.st.State == StateWaiting && c.st.Reason != ReasonContainerCreating && c.st.Reason != "" {
				problems = append(problems, c.spec.GetName()+": "+c.st.Reason)
			}
		}
	}
	ps := w.pod.Status
	switch {
	case allDone && failed:
		ps.Phase = PhaseFailed
		ps.Message = "failed containers: " + strings.Join(failedNames, ", ")
	case allDone:
		ps.Phase, ps.Message = PhaseSucceeded, ""
	case pending:
		ps.Phase = PhasePending
		ps.Message = strings.Join(problems, "; ")
	default:
		ps.Phase = PhaseRunning
		ps.Message = strings.Join(problems, "; ")
	}
}
