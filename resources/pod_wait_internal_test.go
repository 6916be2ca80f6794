package resources

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// fakeNode answers GetPod with the status status(nodeNow) gives, on a
// clock that is skew away from ours (a node's clock need not agree with
// the provider's). It records the node time of the last answer.
type fakeNode struct {
	herdv1.PodServiceClient
	skew   time.Duration
	status func(now time.Time) *herdv1.PodStatus
	spec   *herdv1.PodSpec

	mu       sync.Mutex
	calls    int
	lastTime time.Time
}

func (f *fakeNode) now() time.Time { return time.Now().Add(f.skew) }

func (f *fakeNode) GetPod(_ context.Context, _ *herdv1.GetPodRequest, _ ...grpc.CallOption) (*herdv1.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.lastTime = f.now()
	return &herdv1.Pod{Spec: f.spec, Status: f.status(f.lastTime)}, nil
}

func shortWaits(t *testing.T) {
	t.Helper()
	poll, grace := podPollInterval, podStartGrace
	podPollInterval, podStartGrace = 5*time.Millisecond, 60*time.Millisecond
	t.Cleanup(func() { podPollInterval, podStartGrace = poll, grace })
}

func appSpec(c *herdv1.ContainerSpec) *herdv1.PodSpec {
	c.Name, c.Image = "app", "busybox"
	return &herdv1.PodSpec{Name: "p", Containers: []*herdv1.ContainerSpec{c}}
}

// A container without probes counts as started once it has been running
// for podStartGrace by its node's clock, whichever way that clock is off.
func TestWaitForPodGraceOnNodeClock(t *testing.T) {
	shortWaits(t)
	for _, skew := range []time.Duration{0, time.Hour, -time.Hour} {
		f := &fakeNode{skew: skew, spec: appSpec(&herdv1.ContainerSpec{})}
		created := f.now()
		startedAt := created.Add(10 * time.Millisecond)
		f.status = func(now time.Time) *herdv1.PodStatus {
			if now.Before(startedAt) {
				return &herdv1.PodStatus{Phase: "Pending", Containers: []*herdv1.ContainerStatus{{Name: "app", State: stateWaiting, Reason: "ContainerCreating"}}}
			}
			return &herdv1.PodStatus{Phase: phaseRunning, Containers: []*herdv1.ContainerStatus{{
				Name: "app", State: stateRunning, StartedAt: timestamppb.New(startedAt), Ready: true, Started: true}}}
		}
		applied := &herdv1.Pod{Spec: f.spec, CreatedAt: timestamppb.New(created), Status: f.status(created)}
		_, failure, err := waitForPod(context.Background(), f, applied, true, time.Minute)
		if err != nil || failure != nil {
			t.Fatalf("skew %s: failure %v, err %v", skew, failure, err)
		}
		if ran := f.lastTime.Sub(startedAt); ran < podStartGrace {
			t.Errorf("skew %s: counted as started after running %s, want at least %s", skew, ran, podStartGrace)
		}
	}
}

// A container that crashes within the grace, and is restarted, fails the
// wait with its exit code.
func TestWaitForPodCrashWithinGrace(t *testing.T) {
	shortWaits(t)
	f := &fakeNode{spec: appSpec(&herdv1.ContainerSpec{})}
	created := f.now()
	crashAt := created.Add(podStartGrace / 2)
	code := int32(2)
	f.status = func(now time.Time) *herdv1.PodStatus {
		cs := &herdv1.ContainerStatus{Name: "app", State: stateRunning, StartedAt: timestamppb.New(created)}
		if !now.Before(crashAt) {
			cs = &herdv1.ContainerStatus{Name: "app", State: stateRunning, StartedAt: timestamppb.New(crashAt), RestartCount: 1, LastExitCode: &code}
		}
		return &herdv1.PodStatus{Phase: phaseRunning, Containers: []*herdv1.ContainerStatus{cs}}
	}
	applied := &herdv1.Pod{Spec: f.spec, CreatedAt: timestamppb.New(created), Status: f.status(created)}
	_, failure, err := waitForPod(context.Background(), f, applied, true, time.Minute)
	if err != nil || failure == nil || !strings.Contains(failure.String(), "exited with code 2 and restarted 1 time(s)") {
		t.Fatalf("failure %v, err %v", failure, err)
	}
}

// A container with a readiness or startup probe is started once the probe
// passed: the first status that says so ends the wait, with no grace.
func TestWaitForPodProbesNeedNoGrace(t *testing.T) {
	shortWaits(t)
	podStartGrace = time.Hour
	exec := &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"true"}}}
	for _, tc := range []struct {
		name string
		c    *herdv1.ContainerSpec
		cs   *herdv1.ContainerStatus
	}{
		{"readiness", &herdv1.ContainerSpec{ReadinessProbe: exec}, &herdv1.ContainerStatus{Ready: true, Started: true}},
		{"startup", &herdv1.ContainerSpec{StartupProbe: exec}, &herdv1.ContainerStatus{Ready: true, Started: true}},
		{"both", &herdv1.ContainerSpec{StartupProbe: exec, ReadinessProbe: exec}, &herdv1.ContainerStatus{Ready: true, Started: true}},
	} {
		f := &fakeNode{spec: appSpec(tc.c)}
		created := f.now()
		f.status = func(time.Time) *herdv1.PodStatus {
			cs := proto.Clone(tc.cs).(*herdv1.ContainerStatus)
			cs.Name, cs.State, cs.StartedAt = "app", stateRunning, timestamppb.New(created)
			return &herdv1.PodStatus{Phase: phaseRunning, Ready: cs.Ready, Containers: []*herdv1.ContainerStatus{cs}}
		}
		applied := &herdv1.Pod{Spec: f.spec, CreatedAt: timestamppb.New(created)}
		_, failure, err := waitForPod(context.Background(), f, applied, true, time.Minute)
		if err != nil || failure != nil {
			t.Fatalf("%s: failure %v, err %v", tc.name, failure, err)
		}
		if f.calls != 1 {
			t.Errorf("%s: %d GetPod calls, want 1", tc.name, f.calls)
		}
	}
}

// A startup probe that never passes ends in a timeout that names it.
func TestWaitForPodStartupProbeTimeout(t *testing.T) {
	shortWaits(t)
	exec := &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"false"}}}
	f := &fakeNode{spec: appSpec(&herdv1.ContainerSpec{StartupProbe: exec, ReadinessProbe: exec})}
	created := f.now()
	f.status = func(time.Time) *herdv1.PodStatus {
		return &herdv1.PodStatus{Phase: phaseRunning, Containers: []*herdv1.ContainerStatus{{
			Name: "app", State: stateRunning, StartedAt: timestamppb.New(created), Message: "Startup probe failed: exited with code 1"}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	applied := &herdv1.Pod{Spec: f.spec, CreatedAt: timestamppb.New(created)}
	_, failure, err := waitForPod(ctx, f, applied, true, time.Second)
	want := `container "app" runs, but its startup probe did not pass within 1s: Startup probe failed`
	if err != nil || failure == nil || !failure.timedOut || !strings.Contains(failure.String(), want) {
		t.Fatalf("failure %v, err %v; want %q", failure, err, want)
	}
}

// The node clock's bound keeps the pair that implies the latest node time.
func TestNodeClock(t *testing.T) {
	var k nodeClock
	if _, ok := k.at(time.Now()); ok {
		t.Fatal("an empty clock knows nothing")
	}
	t0 := time.Now()
	node := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	k.observe(timestamppb.New(node), t0)
	// An older stamp seen later says less.
	k.observe(timestamppb.New(node.Add(-time.Second)), t0.Add(time.Millisecond))
	if at, _ := k.at(t0.Add(time.Second)); !at.Equal(node.Add(time.Second)) {
		t.Errorf("at = %s, want %s", at, node.Add(time.Second))
	}
	// A newer one says more.
	k.observe(timestamppb.New(node.Add(2*time.Second)), t0.Add(time.Second))
	if at, _ := k.at(t0.Add(time.Second)); !at.Equal(node.Add(2 * time.Second)) {
		t.Errorf("at = %s, want %s", at, node.Add(2*time.Second))
	}
}
