package spec

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func validPod() *herdv1.PodSpec {
	return &herdv1.PodSpec{
		Name:   "web",
		Labels: map[string]string{"app": "web", "example.com/tier": "front"},
		Containers: []*herdv1.ContainerSpec{{
			Name:    "app",
			Image:   "127.0.0.1:5000/herd/busybox:1.35",
			Command: []string{"sh", "-c"},
			Args:    []string{"echo hi"},
			Env:     map[string]string{"GREETING": "hello"},
			Cpu:     "500m",
			Memory:  "64Mi",
		}},
	}
}

func TestValidatePod(t *testing.T) {
	grace := func(v int64) *int64 { return &v }
	tests := []mutationCase[herdv1.PodSpec]{
		{"valid", func(*herdv1.PodSpec) {}, "", ""},
		{"bad pod name", func(s *herdv1.PodSpec) { s.Name = "Web_1" }, "name", "RFC 1123"},
		{"long pod name", func(s *herdv1.PodSpec) { s.Name = strings.Repeat("a", 64) }, "name", "RFC 1123"},
		{"empty pod name", func(s *herdv1.PodSpec) { s.Name = "" }, "name", "must not be empty"},
		{"no containers", func(s *herdv1.PodSpec) { s.Containers = nil }, "containers", "at least one"},
		{"bad container name", func(s *herdv1.PodSpec) { s.Containers[0].Name = "-app" }, "containers[0].name", "RFC 1123"},
		{"duplicate container", func(s *herdv1.PodSpec) {
			s.Containers = append(s.Containers, proto.Clone(s.Containers[0]).(*herdv1.ContainerSpec))
		}, "containers[1].name", "duplicate container name"},
		{"bad image", func(s *herdv1.PodSpec) { s.Containers[0].Image = "Not a/valid::image" }, "containers[0].image", "invalid image reference"},
		{"empty image", func(s *herdv1.PodSpec) { s.Containers[0].Image = "" }, "containers[0].image", "must not be empty"},
		{"bad cpu", func(s *herdv1.PodSpec) { s.Containers[0].Cpu = "12Q" }, "containers[0].cpu", "invalid CPU quantity"},
		{"bad memory", func(s *herdv1.PodSpec) { s.Containers[0].Memory = "-1Mi" }, "containers[0].memory", "invalid memory quantity"},
		{"tiny memory", func(s *herdv1.PodSpec) { s.Containers[0].Memory = "1Mi" }, "containers[0].memory", "minimum"},
		{"bad restart policy", func(s *herdv1.PodSpec) { s.RestartPolicy = "Sometimes" }, "restart_policy", "invalid restart policy"},
		{"grace too long", func(s *herdv1.PodSpec) { s.TerminationGracePeriodSeconds = grace(7200) }, "termination_grace_period_seconds", "between 0 and 3600"},
		{"negative grace", func(s *herdv1.PodSpec) { s.TerminationGracePeriodSeconds = grace(-1) }, "termination_grace_period_seconds", "between 0"},
		{"bad label key", func(s *herdv1.PodSpec) { s.Labels["bad key!"] = "x" }, `labels["bad key!"]`, "label key"},
		{"bad label value", func(s *herdv1.PodSpec) { s.Labels["ok"] = "no spaces" }, `labels["ok"]`, "label value"},
		{"bad env name", func(s *herdv1.PodSpec) { s.Containers[0].Env["1X"] = "v" }, `containers[0].env["1X"]`, "environment variable name"},
		{"relative workdir", func(s *herdv1.PodSpec) { s.Containers[0].WorkingDir = "tmp" }, "containers[0].working_dir", "absolute"},
		{"valid ports", func(s *herdv1.PodSpec) {
			s.Containers[0].Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: "UDP"}, {ContainerPort: 53}}
		}, "", ""},
		{"bad port name", func(s *herdv1.PodSpec) {
			s.Containers[0].Ports = []*herdv1.ContainerPort{{Name: "HTTP_1", ContainerPort: 80}}
		}, "containers[0].ports[0].name", "invalid port name"},
		{"numeric port name", func(s *herdv1.PodSpec) {
			s.Containers[0].Ports = []*herdv1.ContainerPort{{Name: "8080", ContainerPort: 80}}
		}, "containers[0].ports[0].name", "invalid port name"},
		{"port out of range", func(s *herdv1.PodSpec) {
			s.Containers[0].Ports = []*herdv1.ContainerPort{{ContainerPort: 70000}}
		}, "containers[0].ports[0].container_port", "between 1 and 65535"},
		{"bad protocol", func(s *herdv1.PodSpec) {
			s.Containers[0].Ports = []*herdv1.ContainerPort{{ContainerPort: 80, Protocol: "SCTP"}}
		}, "containers[0].ports[0].protocol", "TCP or UDP"},
		{"duplicate port across containers", func(s *herdv1.PodSpec) {
			c := proto.Clone(s.Containers[0]).(*herdv1.ContainerSpec)
			c.Name = "side"
			s.Containers[0].Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 80}}
			c.Ports = []*herdv1.ContainerPort{{Name: "web", ContainerPort: 80, Protocol: "TCP"}}
			s.Containers = append(s.Containers, c)
		}, "containers[1].ports[0].container_port", "duplicate port 80/TCP"},
		{"duplicate port name", func(s *herdv1.PodSpec) {
			s.Containers[0].Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 80}, {Name: "http", ContainerPort: 81}}
		}, "containers[0].ports[1].name", "duplicate port name"},
		{"NUL in args", func(s *herdv1.PodSpec) { s.Containers[0].Args = []string{"a\x00b"} }, "containers[0].args[0]", "NUL"},
		{"requests at the limits", func(s *herdv1.PodSpec) { s.Containers[0].CpuRequest, s.Containers[0].MemoryRequest = "0.5", "64Mi" }, "", ""},
		{"requests without limits", func(s *herdv1.PodSpec) {
			s.Containers[0].Cpu, s.Containers[0].Memory = "", ""
			s.Containers[0].CpuRequest, s.Containers[0].MemoryRequest = "4", "1Mi"
		}, "", ""},
		{"bad cpu request", func(s *herdv1.PodSpec) { s.Containers[0].CpuRequest = "0.0001" }, "containers[0].cpu_request", "finer than one millicore"},
		{"bad memory request", func(s *herdv1.PodSpec) { s.Containers[0].MemoryRequest = "0" }, "containers[0].memory_request", "greater than zero"},
		{"cpu request above limit", func(s *herdv1.PodSpec) { s.Containers[0].CpuRequest = "501m" }, "containers[0].cpu_request", "501m is above the CPU limit 500m"},
		{"memory request above limit", func(s *herdv1.PodSpec) {
			s.Containers[0].Memory, s.Containers[0].MemoryRequest = "256Mi", "512Mi"
		}, "containers[0].memory_request", "512Mi is above the memory limit 256Mi"},
	}
	runMutations(t, tests, validPod, ValidatePod, false)
}

func TestValidatePodNil(t *testing.T) {
	if errs := ValidatePod(nil); len(errs) != 1 {
		t.Fatalf("want one error for a nil spec, got %v", errs)
	}
}

func TestHashIdempotence(t *testing.T) {
	a, b := validPod(), validPod()
	if Hash(a) != Hash(b) {
		t.Fatal("equal specs hash differently")
	}
	// Defaults are part of identity: explicit defaults equal omitted ones.
	b.RestartPolicy = RestartAlways
	g := int64(DefaultGracePeriod)
	b.TerminationGracePeriodSeconds = &g
	if Hash(a) != Hash(b) {
		t.Fatal("explicit defaults hash differently from omitted ones")
	}
	b.Containers[0].Args = []string{"echo bye"}
	if Hash(a) == Hash(b) {
		t.Fatal("different specs hash equally")
	}
}

func TestPathString(t *testing.T) {
	p := Path{}.Field("containers").Index(2).Field("env").Key("A B")
	if got, want := p.String(), `containers[2].env["A B"]`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("want error containing %q, got nil", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("want error containing %q, got %v", want, err)
	}
}
