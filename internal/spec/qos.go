package spec

import herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"

// QoS classes, as Kubernetes names them.
const (
	QoSGuaranteed = "Guaranteed"
	QoSBurstable  = "Burstable"
	QoSBestEffort = "BestEffort"
)

// The kubelet's oom_score_adj values (pkg/kubelet/qos/policy.go).
const (
	guaranteedOOMScoreAdj = -997
	bestEffortOOMScoreAdj = 1000
)

// ContainerLimits returns a container's CPU (millicores) and memory
// (bytes) limits, 0 where none is set or the quantity does not parse
// (validation refuses those).
func ContainerLimits(c *herdv1.ContainerSpec) (cpuMillis, memBytes int64) {
	return quantity(ParseCPU, c.GetCpu()), quantity(ParseMemory, c.GetMemory())
}

// ContainerRequests returns a container's effective requests: the
// request when set, else the limit (as Kubernetes defaults it), else 0.
func ContainerRequests(c *herdv1.ContainerSpec) (cpuMillis, memBytes int64) {
	cpuMillis, memBytes = ContainerLimits(c)
	if q := c.GetCpuRequest(); q != "" {
		cpuMillis = quantity(ParseCPU, q)
	}
	if q := c.GetMemoryRequest(); q != "" {
		memBytes = quantity(ParseMemory, q)
	}
	return cpuMillis, memBytes
}

// PodRequests sums the effective requests of a pod's containers.
func PodRequests(s *herdv1.PodSpec) (cpuMillis, memBytes int64) {
	for _, c := range s.GetContainers() {
		cpu, mem := ContainerRequests(c)
		cpuMillis += cpu
		memBytes += mem
	}
	return cpuMillis, memBytes
}

func quantity(parse func(string) (int64, error), s string) int64 {
	if s == "" {
		return 0
	}
	v, err := parse(s)
	if err != nil {
		return 0
	}
	return v
}

// ContainerQoS is the class a pod made of this container alone would
// have.
func ContainerQoS(c *herdv1.ContainerSpec) string {
	return PodQoS(&herdv1.PodSpec{Containers: []*herdv1.ContainerSpec{c}})
}

// PodQoS applies Kubernetes' rules: BestEffort when no container has a
// request or limit; Guaranteed when every container has CPU and memory
// limits and requests equal to them; Burstable otherwise.
func PodQoS(s *herdv1.PodSpec) string {
	set, guaranteed := false, true
	for _, c := range s.GetContainers() {
		cpuLim, memLim := ContainerLimits(c)
		cpuReq, memReq := ContainerRequests(c)
		if cpuLim > 0 || memLim > 0 || cpuReq > 0 || memReq > 0 {
			set = true
		}
		if cpuLim == 0 || memLim == 0 || cpuReq != cpuLim || memReq != memLim {
			guaranteed = false
		}
	}
	switch {
	case !set:
		return QoSBestEffort
	case guaranteed:
		return QoSGuaranteed
	}
	return QoSBurstable
}

// OOMScoreAdj is the kubelet's oom_score_adj for a container of a pod of
// the given class: Guaranteed -997, BestEffort 1000, Burstable 1000 less
// the container's memory request in thousandths of the node's memory
// capacity, kept between 3 (above what a Guaranteed pod using all memory
// scores) and 999 (below BestEffort).
func OOMScoreAdj(class string, memRequest, memCapacity int64) int {
	switch class {
	case QoSGuaranteed:
		return guaranteedOOMScoreAdj
	case QoSBestEffort:
		return bestEffortOOMScoreAdj
	}
	if memCapacity <= 0 {
		return bestEffortOOMScoreAdj - 1
	}
	if memRequest >= memCapacity {
		// Also keeps 1000*memRequest from overflowing.
		return 1000 + guaranteedOOMScoreAdj
	}
	adj := 1000 - (1000*memRequest)/memCapacity
	switch {
	case adj < 1000+guaranteedOOMScoreAdj:
		return 1000 + guaranteedOOMScoreAdj
	case adj >= bestEffortOOMScoreAdj:
		return bestEffortOOMScoreAdj - 1
	}
	return int(adj)
}
