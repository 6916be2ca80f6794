package resources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Tunables of the wait after ApplyPod. Variables so that tests can shorten
// them.
var (
	podPollInterval = 150 * time.Millisecond
	// podStartGrace is how long a container without a readiness or
	// startup probe must have been running, by its node's clock and
	// without a restart, before apply counts it as started: nothing else
	// says it is up, and a container whose command fails at once (a bad
	// flag, a missing file) must fail the apply, not pass it. It runs from
	// the container's own start on the node, not from when the provider
	// first saw it running, so a pod that starts in 100 ms is created
	// about half a second after ApplyPod. Containers with a probe wait for
	// the probe instead.
	podStartGrace = 500 * time.Millisecond
)

const (
	podLogTailLines = 20
	maxLogBytes     = 16 << 10
)

// Container states and pod phases agentd reports.
const (
	stateWaiting    = "waiting"
	stateRunning    = "running"
	stateTerminated = "terminated"

	phaseRunning   = "Running"
	phaseSucceeded = "Succeeded"
	phaseFailed    = "Failed"
)

// failingWaitReasons are waiting reasons that will not resolve by waiting.
var failingWaitReasons = map[string]bool{
	"CrashLoopBackOff":           true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
	"CreateContainerError":       true,
	"CreateContainerConfigError": true,
	"RunContainerError":          true,
	"StartError":                 true,
}

// podFailure says why a pod did not start.
type podFailure struct {
	// container is the failing container's name; empty when the failure
	// concerns the pod as a whole.
	container string
	// what describes the failure, e.g. `terminated with exit code 3`.
	what     string
	exitCode *int32
	reason   string
	message  string
	timedOut bool
}

func (f *podFailure) String() string {
	var b strings.Builder
	if f.container != "" {
		fmt.Fprintf(&b, "container %q %s", f.container, f.what)
	} else {
		b.WriteString(f.what)
	}
	var details []string
	if f.exitCode != nil && !strings.Contains(f.what, fmt.Sprintf("code %d", *f.exitCode)) {
		details = append(details, fmt.Sprintf("exit code %d", *f.exitCode))
	}
	if f.reason != "" {
		details = append(details, "reason: "+f.reason)
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	if f.message != "" {
		b.WriteString(": " + f.message)
	}
	return b.String()
}

// exitCodeOf returns a container's last exit code, if any.
func exitCodeOf(cs *herdv1.ContainerStatus) *int32 {
	if cs.LastExitCode == nil {
		return nil
	}
	v := cs.GetLastExitCode()
	return &v
}

// containerOK reports whether a container is where it should be for the pod
// to count as started.
func containerOK(cs *herdv1.ContainerStatus, restartPolicy string) bool {
	switch cs.GetState() {
	case stateRunning:
		return true
	case stateTerminated:
		// Done, successfully, and not going to be restarted.
		return restartPolicy != spec.RestartAlways && cs.LastExitCode != nil && cs.GetLastExitCode() == 0
	}
	return false
}

// checkPodFailure returns why a pod has failed, or nil. baseline holds each
// container's restart count when the wait began.
func checkPodFailure(pod *herdv1.Pod, baseline map[string]int32) *podFailure {
	st := pod.GetStatus()
	for _, cs := range st.GetContainers() {
		f := &podFailure{container: cs.GetName(), exitCode: exitCodeOf(cs), reason: cs.GetReason(), message: cs.GetMessage()}
		switch {
		case cs.GetRestartCount() > baseline[cs.GetName()]:
			n := cs.GetRestartCount() - baseline[cs.GetName()]
			f.what = fmt.Sprintf("restarted %d time(s) while the pod was starting", n)
			if f.exitCode != nil {
				f.what = fmt.Sprintf("exited with code %d and restarted %d time(s) while the pod was starting", *f.exitCode, n)
			}
			return f
		case cs.GetState() == stateTerminated && (cs.LastExitCode == nil || cs.GetLastExitCode() != 0):
			f.what = "terminated"
			if f.exitCode != nil {
				f.what = fmt.Sprintf("terminated with exit code %d", *f.exitCode)
			}
			return f
		case cs.GetState() == stateWaiting && failingWaitReasons[cs.GetReason()]:
			f.what = "cannot start"
			return f
		}
	}
	if st.GetPhase() == phaseFailed {
		f := &podFailure{what: "the pod failed", message: st.GetMessage()}
		// Name the first container that did not end well, if any.
		for _, cs := range st.GetContainers() {
			if cs.GetState() != stateRunning && (cs.LastExitCode == nil || cs.GetLastExitCode() != 0) {
				f = &podFailure{container: cs.GetName(), what: "failed", exitCode: exitCodeOf(cs), reason: cs.GetReason(), message: firstNonEmpty(cs.GetMessage(), st.GetMessage())}
				break
			}
		}
		return f
	}
	return nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// notStarted describes the first container that is not (yet) where it
// should be, for a timeout.
func notStarted(pod *herdv1.Pod, containers []string, restartPolicy string, timeout time.Duration) *podFailure {
	f := &podFailure{timedOut: true, what: fmt.Sprintf("the pod did not start within %s", timeout)}
	if pod == nil {
		return f
	}
	seen := map[string]*herdv1.ContainerStatus{}
	for _, cs := range pod.GetStatus().GetContainers() {
		seen[cs.GetName()] = cs
	}
	for _, name := range containers {
		cs, ok := seen[name]
		if !ok {
			return &podFailure{timedOut: true, container: name, what: fmt.Sprintf("had no status after %s", timeout)}
		}
		if !containerOK(cs, restartPolicy) {
			return &podFailure{timedOut: true, container: name, exitCode: exitCodeOf(cs), reason: cs.GetReason(), message: cs.GetMessage(),
				what: fmt.Sprintf("was still %s after %s", firstNonEmpty(cs.GetState(), "unknown"), timeout)}
		}
	}
	f.message = pod.GetStatus().GetMessage()
	f.what = fmt.Sprintf("the pod was still %s after %s", firstNonEmpty(pod.GetStatus().GetPhase(), "pending"), timeout)
	return f
}

// waitForPod polls a pod until it has started (phase Succeeded, or Running
// with every container past its gate: see containerStarted), has failed,
// or ctx ends. It returns the last pod seen; exactly one of failure and
// err is set when it did not start. err is set only when the node could
// not be asked at all.
func waitForPod(ctx context.Context, pc herdv1.PodServiceClient, applied *herdv1.Pod, created bool, timeout time.Duration) (*herdv1.Pod, *podFailure, error) {
	name := applied.GetSpec().GetName()
	podSpec := applied.GetSpec()
	restartPolicy := spec.Defaulted(podSpec).GetRestartPolicy()
	var containers []string
	for _, c := range podSpec.GetContainers() {
		containers = append(containers, c.GetName())
	}
	// With a readiness probe, a pod is created once it is ready: that is
	// what its probe is for.
	needReady := hasReadinessProbe(podSpec)

	// A pod that was just created starts from zero restarts; an identical
	// pod that existed already starts from what it had.
	baseline := map[string]int32{}
	if !created {
		for _, cs := range applied.GetStatus().GetContainers() {
			baseline[cs.GetName()] = cs.GetRestartCount()
		}
	}

	// ApplyPod has returned: what it stamped is no later than the node's
	// time now.
	var clock nodeClock
	clock.observePod(applied, time.Now())

	last := applied
	timedOut := func() *podFailure {
		if f := notReady(last, podSpec, restartPolicy, timeout); f != nil {
			return f
		}
		return notStarted(last, containers, restartPolicy, timeout)
	}
	for {
		sent := time.Now()
		pod, err := pc.GetPod(ctx, &herdv1.GetPodRequest{Name: name, Namespace: spec.PodNamespace(applied.GetSpec())})
		next := podPollInterval
		switch {
		case err == nil:
			last = pod
		case ctx.Err() != nil:
			// Out of time: a failure of the pod, said by timedOut.
			return last, timedOut(), nil //nolint:nilerr // the timeout is the pod's failure, not an error of the call
		case status.Code(err) == codes.NotFound:
			return last, &podFailure{what: "the pod disappeared from the node while it was starting"}, nil
		case isUnreachable(err):
			// Keep trying until the timeout: the node may come back.
			pod = nil
		default:
			return last, nil, err
		}
		if pod != nil {
			// The node took this status after the request left: at a node
			// time no earlier than what the stamps seen so far imply.
			at, known := clock.at(sent)
			clock.observePod(pod, time.Now())
			if f := checkPodFailure(pod, baseline); f != nil {
				return last, f, nil
			}
			if pod.GetStatus().GetPhase() == phaseSucceeded {
				return last, nil, nil
			}
			done, wait := podStarted(pod, restartPolicy, at, known)
			if done && (!needReady || pod.GetStatus().GetReady()) {
				return last, nil, nil
			}
			// Look again as soon as the last grace is over, measured from
			// when this request left.
			if wait > 0 && wait < next {
				next = max(wait-time.Since(sent), time.Millisecond)
			}
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, timedOut(), nil
		case <-t.C:
		}
	}
}

// podStarted reports whether every container of pod is past its gate
// (containerStarted) in a status the node took at nodeTime or later
// (known: nodeTime is set), and otherwise how much longer the last grace
// runs (0 when waiting on something else).
func podStarted(pod *herdv1.Pod, restartPolicy string, nodeTime time.Time, known bool) (bool, time.Duration) {
	var names []string
	for _, c := range pod.GetSpec().GetContainers() {
		names = append(names, c.GetName())
	}
	if !allStarted(pod, names, restartPolicy) {
		return false, 0
	}
	seen := map[string]*herdv1.ContainerStatus{}
	for _, cs := range pod.GetStatus().GetContainers() {
		seen[cs.GetName()] = cs
	}
	done, longest := true, time.Duration(0)
	for _, c := range pod.GetSpec().GetContainers() {
		ok, wait := containerStarted(c, seen[c.GetName()], nodeTime, known)
		done = done && ok
		longest = max(longest, wait)
	}
	return done, longest
}

// containerStarted is the gate of one running (or successfully completed)
// container: its readiness probe passed, if it has one; else its startup
// probe, if it has one; else it has been running for podStartGrace. The
// second result is how much of that grace is left.
func containerStarted(c *herdv1.ContainerSpec, cs *herdv1.ContainerStatus, nodeTime time.Time, known bool) (bool, time.Duration) {
	switch {
	case cs.GetState() != stateRunning:
		return true, 0 // completed, as containerOK allowed
	case c.GetReadinessProbe() != nil:
		return cs.GetReady(), 0
	case c.GetStartupProbe() != nil:
		return cs.GetStarted(), 0
	case cs.GetStartedAt() == nil || !known:
		return false, podStartGrace
	}
	left := podStartGrace - nodeTime.Sub(cs.GetStartedAt().AsTime())
	return left <= 0, max(left, 0)
}

// nodeClock bounds a node's current time from below without comparing its
// clock with ours: a time the node stamped before answering a request
// that returned at local time T is no later than the node's time at T, and
// both clocks run at the same rate. It keeps the best such pair.
type nodeClock struct {
	node, local time.Time
	known       bool
}

func (k *nodeClock) observe(ts *timestamppb.Timestamp, local time.Time) {
	if ts == nil {
		return
	}
	node := ts.AsTime()
	// node+(t-local) beats the kept pair when node-k.node > local-k.local;
	// local times compare by the monotonic clock.
	if !k.known || node.Sub(k.node) > local.Sub(k.local) {
		k.node, k.local, k.known = node, local, true
	}
}

// observePod records the stamps of a pod the node returned by local time
// local.
func (k *nodeClock) observePod(pod *herdv1.Pod, local time.Time) {
	k.observe(pod.GetCreatedAt(), local)
	k.observe(pod.GetStatus().GetStartTime(), local)
	k.observe(pod.GetStatus().GetReadySince(), local)
	for _, cs := range pod.GetStatus().GetContainers() {
		k.observe(cs.GetStartedAt(), local)
		k.observe(cs.GetFinishedAt(), local)
	}
}

// at returns the lower bound of the node's time at local time local.
func (k *nodeClock) at(local time.Time) (time.Time, bool) {
	if !k.known {
		return time.Time{}, false
	}
	return k.node.Add(local.Sub(k.local)), true
}

// notReady describes, for a timeout, a pod whose containers all started
// but whose startup or readiness probe did not pass: the first container
// with such a probe that is not past it. nil when the containers did not
// all start (notStarted says more then) or their probes all passed.
func notReady(pod *herdv1.Pod, s *herdv1.PodSpec, restartPolicy string, timeout time.Duration) *podFailure {
	var names []string
	for _, c := range s.GetContainers() {
		names = append(names, c.GetName())
	}
	if pod == nil || !allStarted(pod, names, restartPolicy) {
		return nil
	}
	seen := map[string]*herdv1.ContainerStatus{}
	for _, cs := range pod.GetStatus().GetContainers() {
		seen[cs.GetName()] = cs
	}
	for _, c := range s.GetContainers() {
		cs := seen[c.GetName()]
		if cs.GetState() != stateRunning {
			continue
		}
		var kind string
		switch {
		case c.GetStartupProbe() != nil && !cs.GetStarted():
			// The readiness probe waits for this one.
			kind = "startup"
		case c.GetReadinessProbe() != nil && !cs.GetReady():
			kind = "readiness"
		default:
			continue
		}
		return &podFailure{timedOut: true, container: c.GetName(), reason: cs.GetReason(), message: cs.GetMessage(),
			what: fmt.Sprintf("runs, but its %s probe did not pass within %s", kind, timeout)}
	}
	if hasReadinessProbe(s) && !pod.GetStatus().GetReady() {
		return &podFailure{timedOut: true, message: pod.GetStatus().GetMessage(),
			what: fmt.Sprintf("the pod's readiness probes did not pass within %s", timeout)}
	}
	return nil
}

func allStarted(pod *herdv1.Pod, containers []string, restartPolicy string) bool {
	if pod.GetStatus().GetPhase() != phaseRunning {
		return false
	}
	seen := map[string]*herdv1.ContainerStatus{}
	for _, cs := range pod.GetStatus().GetContainers() {
		seen[cs.GetName()] = cs
	}
	for _, name := range containers {
		cs, ok := seen[name]
		if !ok || !containerOK(cs, restartPolicy) {
			return false
		}
	}
	return true
}

// fetchLogTail returns the last lines a container logged, for an error
// message. Errors are returned as text: logs are a courtesy.
func fetchLogTail(ctx context.Context, pc herdv1.PodServiceClient, namespace, pod, container string) string {
	stream, err := pc.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: pod, Namespace: namespace, Container: container, TailLines: podLogTailLines})
	if err != nil {
		return fmt.Sprintf("(logs unavailable: %v)", status.Convert(err).Message())
	}
	var b []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if len(b) == 0 {
				return fmt.Sprintf("(logs unavailable: %v)", status.Convert(err).Message())
			}
			break
		}
		b = append(b, chunk.GetData()...)
		if len(b) > maxLogBytes {
			b = b[len(b)-maxLogBytes:]
		}
	}
	text := strings.TrimRight(strings.ToValidUTF8(string(b), "\uFFFD"), "\n")
	if text == "" {
		return "(no output)"
	}
	lines := strings.Split(text, "\n")
	if len(lines) > podLogTailLines {
		lines = lines[len(lines)-podLogTailLines:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
