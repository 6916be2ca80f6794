package pods

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
)

// start pulls the image if needed, creates the container and starts its
// task. Failures are recorded in the status with a retry time.
func (w *worker) start(ctx context.Context, c *ctr) {
	secrets, err := w.m.prepareSecrets(ctx, w.e, c)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		_, delay := c.restart.PrepFailed() // shares the image pull back-off
		w.setWaiting(c, ReasonCreateContainerConfigError, fmt.Sprintf("%v (retrying in %s)", err, delay.Round(time.Millisecond)), time.Time{})
		w.log.Warn("container secrets unavailable", "container", c.spec.GetName(), "err", err, "retry_in", delay)
		return
	}
	img, pulled, err := w.m.rt.EnsureImage(ctx, c.spec.GetImage(), secrets.pullOpts...)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		n, delay := c.restart.PrepFailed()
		reason := ReasonErrImagePull
		if n > 1 {
			reason = ReasonImagePullBackOff
		}
		w.setWaiting(c, reason, fmt.Sprintf("%v (retrying in %s)", err, delay.Round(time.Millisecond)), time.Time{})
		w.log.Warn("image pull failed", "container", c.spec.GetName(), "image", c.spec.GetImage(), "err", err, "retry_in", delay)
		return
	}
	c.restart.Prepared()
	if pulled {
		w.log.Info("pulled image", "container", c.spec.GetName(), "image", img.Ref, "digest", img.Digest)
	}

	storage, err := w.m.storageBinds(ctx, w.e, c)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		_, delay := c.restart.PrepFailed()
		w.setWaiting(c, ReasonCreateContainerConfigError, fmt.Sprintf("%v (retrying in %s)", err, delay.Round(time.Millisecond)), time.Time{})
		w.log.Warn("container volumes unavailable", "container", c.spec.GetName(), "err", err, "retry_in", delay)
		return
	}
	oomScoreAdj := w.m.oomScoreAdj(w.e.spec, c.spec)
	cfg := runtime.ContainerConfig{Pod: w.e.name, PodUID: w.e.uid, Spec: c.spec, Image: img, NetnsPath: w.netns,
		Mounts: append(slices.Clip(secrets.binds), storage...), ExtraEnv: secrets.env, OOMScoreAdj: &oomScoreAdj, Extensions: w.m.podRecordCopy(w.e)}
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
		if rerr := w.m.removeLeftover(ctx, w.e, c.id); rerr != nil {
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
	c.restart.RunNow()
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
	d := c.restart.StartFailed(runFailure)
	if !d.Restart {
		c.done, c.failed = true, true
		st := c.st
		st.State, st.Reason, st.Message = StateTerminated, ReasonStartError, err.Error()
		st.FinishedAt = timestamppb.Now()
		st.NextRestartAt = nil
		return
	}
	w.setWaiting(c, reason, err.Error(), d.At)
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
