package pods

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
)

// adopt reconciles a stored container status with what containerd has,
// after an agentd restart.
func (w *worker) adopt(ctx context.Context, c *ctr) {
	st := c.st
	if st.State == StateTerminated {
		c.done = true
		c.failed = st.Reason != ReasonCompleted
		return
	}
	var next time.Time
	if st.State == StateWaiting && st.NextRestartAt != nil {
		next = st.NextRestartAt.AsTime()
	}
	c.restart.Adopt(st.RestartCount, next)
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
		// Another incarnation of the pod: the stored one replaced it.
		w.m.replaced(w.e, cont.Pod(), cont.PodUID())
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
		c.restart.RunNow()
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
