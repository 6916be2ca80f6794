package spec

import (
	"testing"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func ctr(cpu, mem, cpuReq, memReq string) *herdv1.ContainerSpec {
	return &herdv1.ContainerSpec{Name: "c", Cpu: cpu, Memory: mem, CpuRequest: cpuReq, MemoryRequest: memReq}
}

func TestContainerRequests(t *testing.T) {
	tests := []struct {
		name     string
		c        *herdv1.ContainerSpec
		cpu, mem int64
	}{
		{"none", ctr("", "", "", ""), 0, 0},
		{"limits only default the requests", ctr("500m", "64Mi", "", ""), 500, 64 << 20},
		{"requests below limits", ctr("2", "1Gi", "250m", "128Mi"), 250, 128 << 20},
		{"requests only", ctr("", "", "100m", "32Mi"), 100, 32 << 20},
		{"cpu limit, memory request", ctr("1", "", "", "10Mi"), 1000, 10 << 20},
		{"nil", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpu, mem := ContainerRequests(tt.c)
			if cpu != tt.cpu || mem != tt.mem {
				t.Fatalf("ContainerRequests = %d, %d; want %d, %d", cpu, mem, tt.cpu, tt.mem)
			}
		})
	}
	cpu, mem := PodRequests(&herdv1.PodSpec{Containers: []*herdv1.ContainerSpec{
		ctr("500m", "64Mi", "", ""), ctr("", "", "", ""), ctr("2", "1Gi", "250m", "128Mi"),
	}})
	if cpu != 750 || mem != 192<<20 {
		t.Fatalf("PodRequests = %d, %d; want 750, %d", cpu, mem, 192<<20)
	}
}

func TestQoS(t *testing.T) {
	tests := []struct {
		name       string
		containers []*herdv1.ContainerSpec
		want       string
	}{
		{"nothing set", []*herdv1.ContainerSpec{ctr("", "", "", "")}, QoSBestEffort},
		{"limits only", []*herdv1.ContainerSpec{ctr("500m", "64Mi", "", "")}, QoSGuaranteed},
		{"requests equal to limits", []*herdv1.ContainerSpec{ctr("500m", "64Mi", "0.5", "64Mi")}, QoSGuaranteed},
		{"memory request below limit", []*herdv1.ContainerSpec{ctr("500m", "64Mi", "", "32Mi")}, QoSBurstable},
		{"memory limit only", []*herdv1.ContainerSpec{ctr("", "64Mi", "", "")}, QoSBurstable},
		{"cpu request only", []*herdv1.ContainerSpec{ctr("", "", "100m", "")}, QoSBurstable},
		{"guaranteed and best effort containers", []*herdv1.ContainerSpec{ctr("1", "64Mi", "", ""), ctr("", "", "", "")}, QoSBurstable},
		{"two guaranteed containers", []*herdv1.ContainerSpec{ctr("1", "64Mi", "", ""), ctr("2", "1Gi", "2", "1Gi")}, QoSGuaranteed},
		{"two best effort containers", []*herdv1.ContainerSpec{ctr("", "", "", ""), ctr("", "", "", "")}, QoSBestEffort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodQoS(&herdv1.PodSpec{Containers: tt.containers}); got != tt.want {
				t.Fatalf("PodQoS = %s, want %s", got, tt.want)
			}
			if len(tt.containers) == 1 {
				if got := ContainerQoS(tt.containers[0]); got != tt.want {
					t.Fatalf("ContainerQoS = %s, want %s", got, tt.want)
				}
			}
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	const gi = int64(1) << 30
	tests := []struct {
		name          string
		class         string
		req, capacity int64
		want          int
	}{
		{"guaranteed", QoSGuaranteed, gi, 4 * gi, -997},
		{"best effort", QoSBestEffort, 0, 4 * gi, 1000},
		{"burstable quarter", QoSBurstable, gi, 4 * gi, 750},
		{"burstable tenth", QoSBurstable, 100, 1000, 900},
		{"burstable just below a tenth", QoSBurstable, 4 * gi / 10, 4 * gi, 901},
		{"burstable rounds toward a higher score", QoSBurstable, 1, 3, 1000 - 333},
		{"burstable without memory request", QoSBurstable, 0, 4 * gi, 999},
		{"burstable tiny request", QoSBurstable, 1 << 20, 4 * gi, 999},
		{"burstable nearly all memory", QoSBurstable, 4*gi - 1, 4 * gi, 3},
		{"burstable above capacity", QoSBurstable, 1 << 62, 4 * gi, 3},
		{"burstable 99.8%", QoSBurstable, 998, 1000, 3},
		{"burstable 99.6%", QoSBurstable, 996, 1000, 4},
		{"unknown capacity", QoSBurstable, gi, 0, 999},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OOMScoreAdj(tt.class, tt.req, tt.capacity); got != tt.want {
				t.Fatalf("OOMScoreAdj(%s, %d, %d) = %d, want %d", tt.class, tt.req, tt.capacity, got, tt.want)
			}
		})
	}
}
