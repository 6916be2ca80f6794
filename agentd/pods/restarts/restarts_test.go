package restarts

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixed returns a Rand that always yields r.
func fixed(r float64) func() float64 { return func() float64 { return r } }

// kubelet is the default schedule with a fixed jitter draw and a stopped clock.
func kubelet(r float64) *Backoff {
	return &Backoff{Base: 10 * time.Second, Max: 5 * time.Minute, Rand: fixed(r), Now: func() time.Time { return epoch }}
}

func TestPolicyByExitCode(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		code    int
		restart bool
	}{
		{spec.RestartAlways, 0, true},
		{spec.RestartAlways, 1, true},
		{spec.RestartAlways, 137, true},
		{spec.RestartOnFailure, 0, false},
		{spec.RestartOnFailure, 1, true},
		{spec.RestartOnFailure, 137, true},
		{spec.RestartNever, 0, false},
		{spec.RestartNever, 1, false},
		{spec.RestartNever, 137, false},
		// Defaulting fills the policy in; should one be missing, nothing restarts.
		{"", 1, false},
		{"Sometimes", 1, false},
	} {
		failed := tc.code != 0
		if got := ShouldRestart(tc.policy, failed); got != tc.restart {
			t.Errorf("ShouldRestart(%q, exit %d) = %v, want %v", tc.policy, tc.code, got, tc.restart)
		}
		tr := NewTracker(tc.policy, kubelet(0))
		d := tr.Exited(failed, time.Second, epoch)
		if d.Restart != tc.restart {
			t.Errorf("%s, exit %d: Exited = %+v, want restart %v", tc.policy, tc.code, d, tc.restart)
		}
		if !d.Restart && (d.Delay != 0 || !d.At.IsZero()) {
			t.Errorf("%s, exit %d: no restart but a delay: %+v", tc.policy, tc.code, d)
		}
	}
}

func TestStartFailedPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy     string
		runFailure bool
		restart    bool
	}{
		{spec.RestartAlways, true, true},
		{spec.RestartOnFailure, true, true},
		{spec.RestartNever, true, false}, // StartError
		// A container that could not even be created is retried under any policy.
		{spec.RestartNever, false, true},
		{spec.RestartAlways, false, true},
	} {
		tr := NewTracker(tc.policy, kubelet(0))
		d := tr.StartFailed(tc.runFailure)
		if d.Restart != tc.restart {
			t.Errorf("%s, run failure %v: StartFailed = %+v, want restart %v", tc.policy, tc.runFailure, d, tc.restart)
			continue
		}
		if !d.Restart {
			continue
		}
		// No immediate retry of a failed start: the schedule's first delay, timed by the clock.
		if d.Delay != 10*time.Second || !d.At.Equal(epoch.Add(10*time.Second)) || !tr.Next().Equal(d.At) {
			t.Errorf("%s, run failure %v: StartFailed = %+v, Next %s", tc.policy, tc.runFailure, d, tr.Next())
		}
	}
}

func TestCrashDelaySequence(t *testing.T) {
	// The kubelet's schedule before jitter: immediate, then 10 s doubling to 5 min.
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for _, tc := range []struct {
		name string
		rand func() float64
	}{
		{"no jitter drawn", fixed(0)},
		{"largest jitter drawn", fixed(0.999999)},
		{"seeded", rand.New(rand.NewPCG(1, 2)).Float64},
		{"other seed", rand.New(rand.NewPCG(42, 7)).Float64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := kubelet(0)
			b.Rand = tc.rand
			tr := NewTracker(spec.RestartAlways, b)
			at := epoch
			for i, w := range want {
				d := tr.Exited(true, time.Second, at)
				if !d.Restart {
					t.Fatalf("crash %d: no restart", i+1)
				}
				checkJitter(t, d.Delay, w)
				if w == 0 {
					if !d.At.IsZero() || !tr.Next().IsZero() {
						t.Errorf("crash %d: immediate restart, but At %s, Next %s", i+1, d.At, tr.Next())
					}
				} else if !d.At.Equal(at.Add(d.Delay)) || !tr.Next().Equal(d.At) {
					t.Errorf("crash %d: At %s, Next %s, want exit time + %s", i+1, d.At, tr.Next(), d.Delay)
				}
				at = at.Add(d.Delay + time.Second)
			}
		})
	}
}

func TestDelayBounds(t *testing.T) {
	b := &Backoff{Base: 10 * time.Second, Max: 5 * time.Minute, Rand: rand.New(rand.NewPCG(3, 4)).Float64}
	for n := -1; n <= 2000; n++ {
		scheduled := 5 * time.Minute
		if n <= 5 {
			scheduled = 10 * time.Second << max(n-1, 0)
		}
		checkJitter(t, b.Delay(n), scheduled)
	}
	// The largest draw stays below the capped delay plus 10 %.
	b.Rand = fixed(0.999999)
	if got := b.Delay(1000); got < 5*time.Minute || got >= 5*time.Minute+30*time.Second {
		t.Errorf("Delay(1000) with the largest jitter = %s", got)
	}
	// Base above the cap: the cap wins.
	b = &Backoff{Base: time.Minute, Max: 30 * time.Second, Rand: fixed(0)}
	if got := b.Delay(1); got != 30*time.Second {
		t.Errorf("Delay(1) with Base > Max = %s", got)
	}
}

// checkJitter: got is want lengthened by less than Jitter, in whole milliseconds.
func checkJitter(t *testing.T, got, want time.Duration) {
	t.Helper()
	upper := want + time.Duration(float64(want)*Jitter)
	if got < want || (want > 0 && got >= upper) || (want == 0 && got != 0) {
		t.Errorf("delay %s outside [%s, %s)", got, want, upper)
	}
	if got%time.Millisecond != 0 {
		t.Errorf("delay %s is not whole milliseconds", got)
	}
}

func TestResetAfterLongRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		ran  time.Duration
		want time.Duration // the delay after the long run's exit
	}{
		{"ran ten minutes", ResetAfter, 0},
		{"ran longer", time.Hour, 0},
		{"ran just short of ten minutes", ResetAfter - time.Millisecond, 40 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(spec.RestartAlways, kubelet(0))
			for range 3 { // 0, 10 s, 20 s
				tr.Exited(true, time.Second, epoch)
			}
			if d := tr.Exited(true, tc.ran, epoch); d.Delay != tc.want {
				t.Errorf("after a run of %s: delay %s, want %s", tc.ran, d.Delay, tc.want)
			}
			if tc.want == 0 {
				// A fresh streak: the next quick crash waits the base delay.
				if d := tr.Exited(true, time.Second, epoch); d.Delay != 10*time.Second {
					t.Errorf("crash after the reset: delay %s, want 10s", d.Delay)
				}
			}
		})
	}
}

func TestPrepFailures(t *testing.T) {
	now := epoch
	b := kubelet(0)
	b.Now = func() time.Time { return now }
	tr := NewTracker(spec.RestartNever, b) // retried whatever the policy
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		n, d := tr.PrepFailed()
		if n != i+1 || d != want || !tr.Next().Equal(now.Add(want)) {
			t.Errorf("failure %d: PrepFailed = %d, %s, Next %s; want %d, %s", i+1, n, d, tr.Next(), i+1, want)
		}
		now = now.Add(time.Hour)
	}
	tr.Prepared()
	if n, d := tr.PrepFailed(); n != 1 || d != 10*time.Second {
		t.Errorf("after Prepared: PrepFailed = %d, %s", n, d)
	}
	tr.RunNow()
	if !tr.Next().IsZero() {
		t.Errorf("Next after RunNow = %s", tr.Next())
	}
	// The pull streak is not the crash streak: the first crash restarts at once.
	tr = NewTracker(spec.RestartAlways, b)
	tr.PrepFailed()
	tr.PrepFailed()
	if d := tr.Exited(true, time.Second, now); d.Delay != 0 {
		t.Errorf("first crash after pull failures: delay %s", d.Delay)
	}
}

func TestAdopt(t *testing.T) {
	for _, tc := range []struct {
		name         string
		restartCount int32
		next         time.Time
		wantNext     time.Time
		wantDelay    time.Duration // of the next quick crash
	}{
		{"never restarted", 0, time.Time{}, time.Time{}, 0},
		{"restarted twice, in back-off", 2, epoch.Add(time.Minute), epoch.Add(time.Minute), 20 * time.Second},
		{"restarted often", 1 << 30, time.Time{}, time.Time{}, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(spec.RestartAlways, kubelet(0))
			tr.Adopt(tc.restartCount, tc.next)
			if !tr.Next().Equal(tc.wantNext) {
				t.Errorf("Next = %s, want %s", tr.Next(), tc.wantNext)
			}
			if d := tr.Exited(true, time.Second, epoch); d.Delay != tc.wantDelay {
				t.Errorf("next crash: delay %s, want %s", d.Delay, tc.wantDelay)
			}
		})
	}
}
