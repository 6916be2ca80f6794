package pods

import (
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"
)

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
	switch {
	case !ready:
		w.pod.Status.ReadySince = nil
	case w.pod.Status.ReadySince == nil:
		w.pod.Status.ReadySince = timestamppb.Now()
	}
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
