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
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Tunables of the wait after ApplyPod. Variables so that tests can shorten
// them.
var (
	podPollInterval = 150 * time.Millisecond
	// podStableFor is how long every container must keep running, without
	// a restart, before a pod counts as started: a container that crashes
	// straight away must fail the apply, not pass it.
	podStableFor = time.Second
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

// waitForPod polls a pod until it has started (phase Succeeded, or every
// container running for podStableFor with no restart), has failed, or ctx
// ends. It returns the last pod seen; exactly one of failure and err is
// set when it did not start. err is set only when the node could not be
// asked at all.
func waitForPod(ctx context.Context, pc herdv1.PodServiceClient, applied *herdv1.Pod, created bool, timeout time.Duration) (*herdv1.Pod, *podFailure, error) {
	name := applied.GetSpec().GetName()
	restartPolicy := spec.Defaulted(applied.GetSpec()).GetRestartPolicy()
	var containers []string
	for _, c := range applied.GetSpec().GetContainers() {
		containers = append(containers, c.GetName())
	}
	// With a readiness probe, a pod is created once it is ready: that is
	// what its probe is for.
	needReady := hasReadinessProbe(applied.GetSpec())

	// A pod that was just created starts from zero restarts; an identical
	// pod that existed already starts from what it had.
	baseline := map[string]int32{}
	if !created {
		for _, cs := range applied.GetStatus().GetContainers() {
			baseline[cs.GetName()] = cs.GetRestartCount()
		}
	}

	last := applied
	timedOut := func() *podFailure {
		if f := notReady(last, applied.GetSpec(), restartPolicy, timeout); needReady && f != nil {
			return f
		}
		return notStarted(last, containers, restartPolicy, timeout)
	}
	var stableSince time.Time
	var failure *podFailure
	err := wait.PollUntilContextCancel(ctx, podPollInterval, true, func(ctx context.Context) (bool, error) {
		pod, err := pc.GetPod(ctx, &herdv1.GetPodRequest{Name: name})
		switch {
		case err == nil:
			last = pod
		case ctx.Err() != nil:
			return false, ctx.Err()
		case status.Code(err) == codes.NotFound:
			failure = &podFailure{what: "the pod disappeared from the node while it was starting"}
			return true, nil
		case isUnreachable(err):
			// Keep trying until the timeout: the node may come back.
			return false, nil
		default:
			return false, err
		}
		if f := checkPodFailure(pod, baseline); f != nil {
			failure = f
			return true, nil
		}
		if pod.GetStatus().GetPhase() == phaseSucceeded {
			return true, nil
		}
		if allStarted(pod, containers, restartPolicy) && (!needReady || pod.GetStatus().GetReady()) {
			if stableSince.IsZero() {
				stableSince = time.Now()
			}
			return time.Since(stableSince) >= podStableFor, nil
		}
		stableSince = time.Time{}
		return false, nil
	})
	switch {
	case err == nil:
		return last, failure, nil
	case ctx.Err() != nil:
		// Out of time: a failure of the pod, said by timedOut.
		return last, timedOut(), nil //nolint:nilerr // reported as a podFailure
	}
	return last, nil, err
}

// notReady describes, for a timeout, a pod whose containers all started
// but whose readiness probe did not pass: the first container with a
// readiness probe that is not ready. nil when the containers did not all
// start (notStarted says more then) or all are ready.
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
		if c.GetReadinessProbe() == nil || cs.GetReady() {
			continue
		}
		return &podFailure{timedOut: true, container: c.GetName(), reason: cs.GetReason(), message: cs.GetMessage(),
			what: fmt.Sprintf("runs, but its readiness probe did not pass within %s", timeout)}
	}
	if !pod.GetStatus().GetReady() {
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
func fetchLogTail(ctx context.Context, pc herdv1.PodServiceClient, pod, container string) string {
	stream, err := pc.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: pod, Container: container, TailLines: podLogTailLines})
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
