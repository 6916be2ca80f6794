package pods

import (
	"context"
	"log/slog"
	"time"
)

// DefaultDrainTimeout bounds a drain when DeleteOptions leaves it 0.
const DefaultDrainTimeout = 2 * time.Second

// DeleteOptions say how DeleteWith deletes a pod.
type DeleteOptions struct {
	// Grace overrides the pod's termination grace period when not nil.
	Grace *time.Duration
	// SkipDrain sends SIGTERM at once, without waiting for the members to
	// take the pod out of their service rules.
	SkipDrain bool
	// DrainTimeout bounds the drain (0: DefaultDrainTimeout); the pod gets
	// SIGTERM when it passes, whoever confirmed.
	DrainTimeout time.Duration
	// UID, when set, deletes only the pod of this uid: another incarnation
	// of the name is kept and spec.ErrOtherIncarnation returned.
	UID string
}

// DrainResult says which members confirmed that a pod left their service
// rules before it got SIGTERM, and which did not within the bound. Both are
// empty when there was nothing to drain: no cluster, a pod that was never
// an endpoint (no pod IP), or SkipDrain.
type DrainResult struct {
	Drained, TimedOut []string
}

// DeleteResult is what DeleteWith did.
type DeleteResult struct {
	Existed bool
	DrainResult
}

// DrainFunc takes pod out of every live member's service rules: it
// publishes the pod's endpoint as not ready (the pod is terminating when it
// is called) and waits, until ctx ends, for each member to confirm. It
// must return when ctx ends.
type DrainFunc func(ctx context.Context, pod string) DrainResult

// Delete is DeleteWith with the default drain; grace overrides the pod's
// grace period when not nil.
func (m *Manager) Delete(ctx context.Context, name string, grace *time.Duration) (bool, error) {
	r, err := m.DeleteWith(ctx, name, DeleteOptions{Grace: grace})
	return r.Existed, err
}

// drain runs the Drain hook for a terminating pod, unless there is nothing
// to drain.
func (m *Manager) drain(e *podEntry, opts DeleteOptions, log *slog.Logger) DrainResult {
	if m.cfg.Drain == nil || opts.SkipDrain {
		return DrainResult{}
	}
	m.mu.Lock()
	ip := e.pod.GetStatus().GetPodIp()
	m.mu.Unlock()
	if ip == "" {
		return DrainResult{} // never an endpoint
	}
	timeout := opts.DrainTimeout
	if timeout <= 0 {
		timeout = DefaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	start := time.Now()
	r := m.cfg.Drain(ctx, e.name)
	log.Info("drained", "confirmed", r.Drained, "timed_out", r.TimedOut, "took", time.Since(start))
	return r
}
