// Package restarts decides whether and when a pod's container runs again:
// the pod's restart policy and the kubelet's back-off. A Backoff is the
// schedule a pod manager's containers share; a Tracker is one container's
// streak of failures and the time of its next attempt.
//
// The schedule is the kubelet's: the first restart after a crash is
// immediate, then Base, doubling up to Max; a run that lasted ResetAfter
// clears the streak. Failures before a task exists (image pull, secrets,
// pod network) have a streak of their own on the same doubling schedule,
// without the immediate first retry.
package restarts

import (
	"math/rand/v2"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

const (
	// ResetAfter: a container that ran this long before it exited restarts
	// without back-off, as if it had never crashed.
	ResetAfter = 10 * time.Minute

	// Jitter is the largest extra delay, as a fraction of the scheduled
	// one: a delay d becomes d + r·Jitter·d for a random r in [0, 1),
	// truncated to whole milliseconds. Jitter only lengthens a delay, so a
	// restart never comes earlier than the kubelet's schedule says, and it
	// is taken of the capped delay, so the longest wait is below
	// (1+Jitter)·Max: 5 min 30 s with the defaults. It spreads the
	// restarts of containers that crashed together (a node-wide outage)
	// instead of keeping them in lockstep up to the cap.
	Jitter = 0.1

	// maxStreak bounds a streak estimated from a restart count: enough to
	// reach any cap, far from overflowing the doubling.
	maxStreak = 32
)

// Backoff is the delay schedule. The zero Rand and Now mean math/rand/v2
// and time.Now; both must be safe for concurrent use, as the containers of
// a pod start in parallel and every pod's worker shares one Backoff.
type Backoff struct {
	Base, Max time.Duration
	// Rand returns a number in [0, 1) for the jitter.
	Rand func() float64
	// Now is the clock retries after a failed start are timed by.
	Now func() time.Time
}

// Delay is the n-th delay of the schedule (n from 1): Base·2^(n-1),
// capped at Max, plus jitter. n < 1 counts as 1.
func (b *Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n; i++ {
		d *= 2
		if d >= b.Max || d <= 0 {
			d = b.Max
			break
		}
	}
	d = min(d, b.Max)
	return d + b.jitter(d)
}

// crashDelay is the delay before the restart that follows crash number n
// of a streak: the first restart is immediate, then the schedule.
func (b *Backoff) crashDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	return b.Delay(n - 1)
}

func (b *Backoff) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	extra := time.Duration(float64(d) * Jitter * r())
	return extra.Truncate(time.Millisecond)
}

func (b *Backoff) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// ShouldRestart applies a restart policy to a run that ended: Always
// restarts, OnFailure only a failed run, Never (or anything else) none.
func ShouldRestart(policy string, failed bool) bool {
	return policy == spec.RestartAlways || (policy == spec.RestartOnFailure && failed)
}

// Decision is what happens after a run ended or could not start.
type Decision struct {
	// Restart is false when the container is done for good.
	Restart bool
	// Delay is the back-off before the next attempt, At its time; zero
	// both when the container runs again right away.
	Delay time.Duration
	At    time.Time
}

// Tracker is one container's restart state. It is not safe for
// concurrent use: its container's supervisor owns it.
type Tracker struct {
	policy string
	b      *Backoff

	crashes      int       // consecutive failed runs (and failed task starts)
	prepFailures int       // consecutive failures before a task existed
	next         time.Time // no (re)start before this
}

// NewTracker starts a container's tracker under a pod's restart policy.
func NewTracker(policy string, b *Backoff) *Tracker {
	return &Tracker{policy: policy, b: b}
}

// Next is the time before which the container must not be (re)started;
// zero: any time.
func (t *Tracker) Next() time.Time { return t.next }

// RunNow clears the pending delay: a run began, or the container is
// restarted on purpose (not after a crash).
func (t *Tracker) RunNow() { t.next = time.Time{} }

// PrepFailed records a failure before a task could be created (image
// pull, secrets, pod network). These are retried whatever the restart
// policy. It returns the length of the streak, from 1, and the delay
// before the next attempt.
func (t *Tracker) PrepFailed() (n int, delay time.Duration) {
	t.prepFailures++
	delay = t.b.Delay(t.prepFailures)
	t.next = t.b.now().Add(delay)
	return t.prepFailures, delay
}

// Prepared ends a streak of PrepFailed: the image is there.
func (t *Tracker) Prepared() { t.prepFailures = 0 }

// StartFailed records a container whose task could not be created or
// started. runFailure: the task itself failed (a bad command), which ends
// the container under Never, as the kubelet's StartError; anything else is
// retried. A failed start joins the crash streak, without the immediate
// first retry.
func (t *Tracker) StartFailed(runFailure bool) Decision {
	if runFailure && t.policy == spec.RestartNever {
		return Decision{}
	}
	t.crashes++
	delay := t.b.Delay(t.crashes)
	t.next = t.b.now().Add(delay)
	return Decision{Restart: true, Delay: delay, At: t.next}
}

// Exited applies the restart policy to a run that ended at at, after
// running for ran.
func (t *Tracker) Exited(failed bool, ran time.Duration, at time.Time) Decision {
	if ran >= ResetAfter {
		t.crashes = 0
	}
	if !ShouldRestart(t.policy, failed) {
		return Decision{}
	}
	t.crashes++
	delay := t.b.crashDelay(t.crashes)
	if delay == 0 {
		t.next = time.Time{}
		return Decision{Restart: true}
	}
	t.next = at.Add(delay)
	return Decision{Restart: true, Delay: delay, At: t.next}
}

// Adopt restores the state of a container from its stored status after an
// agentd restart: the streak is estimated from its restart count, and a
// pending back-off (next, zero when none) is kept.
func (t *Tracker) Adopt(restartCount int32, next time.Time) {
	t.crashes = int(min(max(restartCount, 0), maxStreak))
	if !next.IsZero() {
		t.next = next
	}
}
