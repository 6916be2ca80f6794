package pods

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

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
	d := c.restart.Exited(failed, ran, at)
	if !d.Restart {
		c.done, c.failed = true, failed
		st.State, st.Reason, st.Message = StateTerminated, reason, msg
		st.NextRestartAt = nil
		return
	}
	why := reasonText(st, reason)
	if msg != "" {
		why += "; " + msg
	}
	if d.Delay == 0 {
		// Restarts right away. Never "terminated": that state means "done
		// for good" to a later adoption.
		w.setWaiting(c, ReasonContainerCreating, "restarting after "+why, time.Time{})
		return
	}
	w.setWaiting(c, ReasonCrashLoopBackOff,
		fmt.Sprintf("back-off %s restarting failed container %s (last exit: %s)", d.Delay, c.spec.GetName(), why), d.At)
}

func reasonText(st *herdv1.ContainerStatus, reason string) string {
	if st.LastExitCode != nil && reason != ReasonContainerLost {
		return fmt.Sprintf("%s, code %d", reason, st.GetLastExitCode())
	}
	return reason
}
