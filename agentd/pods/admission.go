package pods

import (
	"errors"
	"fmt"
	"strings"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// ErrInsufficientResources is matched (errors.Is) by the refusal of a pod
// whose requests exceed what its node has free. The gRPC server maps it
// to FailedPrecondition, with the reason
// herdv1.ReasonInsufficientResources.
var ErrInsufficientResources error = &reasonError{msg: "insufficient resources on this node", reason: herdv1.ReasonInsufficientResources}

// insufficientError is the refusal itself: its message has the numbers.
type insufficientError struct{ msg string }

func (e *insufficientError) Error() string        { return e.msg }
func (e *insufficientError) Is(target error) bool { return target == ErrInsufficientResources }
func (e *insufficientError) ErrorReason() string  { return herdv1.ReasonInsufficientResources }

// ErrTooManyPods is matched (errors.Is) by the refusal of a new pod on a
// node that holds Config.MaxPods pods already. The gRPC server maps it to
// ResourceExhausted.
var ErrTooManyPods = errors.New("the node holds its limit of pods")

// admitCount refuses a new pod once the node holds MaxPods pods,
// terminating ones included (they hold their containers, network and
// tmpfs until they are gone). Apply calls it holding applyMu, like admit.
func (m *Manager) admitCount(name string) error {
	if m.cfg.MaxPods <= 0 {
		return nil
	}
	m.mu.Lock()
	n := len(m.pods)
	if _, ok := m.pods[name]; ok {
		n-- // its own earlier incarnation, not one more pod
	}
	m.mu.Unlock()
	if n < m.cfg.MaxPods {
		return nil
	}
	return newError(ErrTooManyPods, "pod %s: node %s holds %s, its limit (--max-pods)", name, m.nodeName(), podCount(n))
}

// Requested returns the sum of the effective requests of every pod on the
// node, terminating ones included (they hold their resources until they
// are gone), and the number of pods.
func (m *Manager) Requested() (capacity.Resources, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum capacity.Resources
	for _, e := range m.pods {
		sum = sum.Add(capacity.Requests(e.spec))
	}
	return sum, len(m.pods)
}

// admit refuses a new pod whose requests do not fit in what the other
// pods leave of the node's allocatable resources. Apply calls it holding
// applyMu until the pod is an entry, so two pods cannot both take the
// last room.
func (m *Manager) admit(d *herdv1.PodSpec) error {
	if m.cfg.Allocatable == nil {
		return nil
	}
	want := capacity.Requests(d)
	if want.IsZero() {
		return nil
	}
	alloc := *m.cfg.Allocatable
	var used capacity.Resources
	var cpuPods, memPods int
	m.mu.Lock()
	for name, e := range m.pods {
		if name == d.GetName() {
			continue
		}
		r := capacity.Requests(e.spec)
		used = used.Add(r)
		if r.CPUMillis > 0 {
			cpuPods++
		}
		if r.MemoryBytes > 0 {
			memPods++
		}
	}
	m.mu.Unlock()
	node := m.nodeName()
	var short []string
	if want.CPUMillis > 0 && want.CPUMillis > alloc.CPUMillis-used.CPUMillis {
		short = append(short, fmt.Sprintf("requests cpu %s but %s has %s free (allocatable %s, requested %s by %s)",
			capacity.FormatCPU(want.CPUMillis), node, capacity.FormatCPU(max(alloc.CPUMillis-used.CPUMillis, 0)),
			capacity.FormatCPU(alloc.CPUMillis), capacity.FormatCPU(used.CPUMillis), podCount(cpuPods)))
	}
	if want.MemoryBytes > 0 && want.MemoryBytes > alloc.MemoryBytes-used.MemoryBytes {
		short = append(short, fmt.Sprintf("requests memory %s but %s has %s free (allocatable %s, requested %s by %s)",
			capacity.FormatMemory(want.MemoryBytes), node, capacity.FormatMemory(max(alloc.MemoryBytes-used.MemoryBytes, 0)),
			capacity.FormatMemory(alloc.MemoryBytes), capacity.FormatMemory(used.MemoryBytes), podCount(memPods)))
	}
	if len(short) == 0 {
		return nil
	}
	return &insufficientError{msg: fmt.Sprintf("pod %s: %s", d.GetName(), strings.Join(short, "; "))}
}

// nodeName names the node in refusals.
func (m *Manager) nodeName() string {
	if m.cfg.NodeName == "" {
		return "the node"
	}
	return m.cfg.NodeName
}

func podCount(n int) string {
	if n == 1 {
		return "1 pod"
	}
	return fmt.Sprintf("%d pods", n)
}

// setQoS records the QoS class of the pod and of each container, and the
// oom_score_adj the containers' processes get.
func (m *Manager) setQoS(s *herdv1.PodSpec, st *herdv1.PodStatus) {
	if st == nil {
		return
	}
	st.QosClass = spec.PodQoS(s)
	byName := map[string]*herdv1.ContainerSpec{}
	for _, c := range s.GetContainers() {
		byName[c.GetName()] = c
	}
	for _, cs := range st.GetContainers() {
		c := byName[cs.GetName()]
		if c == nil {
			continue
		}
		cs.QosClass = spec.ContainerQoS(c)
		cs.OomScoreAdj = int32(m.oomScoreAdj(s, c))
	}
}

// oomScoreAdj is the kubelet's value for container c of pod s (from the
// pod's class and, when Burstable, c's memory request), raised to what
// this node can set.
func (m *Manager) oomScoreAdj(s *herdv1.PodSpec, c *herdv1.ContainerSpec) int {
	_, mem := spec.ContainerRequests(c)
	return max(spec.OOMScoreAdj(spec.PodQoS(s), mem, m.cfg.MemoryCapacity), *m.cfg.OOMScoreAdjFloor)
}
