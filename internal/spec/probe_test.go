package spec

import (
	"testing"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestValidateProbes(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	tcp := func(port int32) *herdv1.Probe {
		return &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{Port: port}}
	}
	// tcp80With is a TCP probe of port 80 that set has changed.
	tcp80With := func(set func(*herdv1.Probe)) *herdv1.Probe {
		p := tcp(80)
		set(p)
		return p
	}
	tests := []struct {
		name     string
		mutate   func(*herdv1.ContainerSpec)
		wantPath string
		wantMsg  string
	}{
		{"valid all three", func(c *herdv1.ContainerSpec) {
			c.Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
			c.ReadinessProbe = &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/healthz", PortName: "http"}, SuccessThreshold: i32(2)}
			c.LivenessProbe = &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"true"}}, InitialDelaySeconds: i32(0)}
			c.StartupProbe = &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{Port: 8080}, PeriodSeconds: i32(1), FailureThreshold: i32(30)}
		}, "", ""},
		{"http without path", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Port: 80}}
		}, "", ""},
		{"no handler", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{}
		}, "containers[0].readiness_probe", "exactly one of http_get, tcp_socket and exec"},
		{"two handlers", func(c *herdv1.ContainerSpec) {
			c.LivenessProbe = &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{Port: 80}, Exec: &herdv1.ExecAction{Command: []string{"true"}}}
		}, "containers[0].liveness_probe", "got 2"},
		{"port out of range", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Port: 70000}}
		}, "containers[0].readiness_probe.http_get.port", "between 1 and 65535"},
		{"no port", func(c *herdv1.ContainerSpec) { c.StartupProbe = tcp(0) }, "containers[0].startup_probe.tcp_socket.port", "between 1 and 65535"},
		{"port and name", func(c *herdv1.ContainerSpec) {
			c.Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
			c.ReadinessProbe = &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{Port: 8080, PortName: "http"}}
		}, "containers[0].readiness_probe.tcp_socket.port", "not both"},
		{"unknown port name", func(c *herdv1.ContainerSpec) {
			c.Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
			c.ReadinessProbe = &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{PortName: "admin"}}
		}, "containers[0].readiness_probe.http_get.port_name", `"admin" is not the name of one of the container's ports`},
		{"UDP port name", func(c *herdv1.ContainerSpec) {
			c.Ports = []*herdv1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: "UDP"}}
			c.LivenessProbe = &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{PortName: "dns"}}
		}, "containers[0].liveness_probe.tcp_socket.port_name", "UDP"},
		{"relative path", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "healthz", Port: 80}}
		}, "containers[0].readiness_probe.http_get.path", `must start with "/"`},
		{"path with space", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/a b", Port: 80}}
		}, "containers[0].readiness_probe.http_get.path", "whitespace"},
		{"empty exec", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{Exec: &herdv1.ExecAction{}}
		}, "containers[0].readiness_probe.exec.command", "must not be empty"},
		{"NUL in exec", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"sh", "a\x00"}}}
		}, "containers[0].readiness_probe.exec.command[1]", "NUL"},
		{"negative delay", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = tcp80With(func(p *herdv1.Probe) { p.InitialDelaySeconds = i32(-1) })
		}, "containers[0].readiness_probe.initial_delay_seconds", "at least 0"},
		{"zero period", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = tcp80With(func(p *herdv1.Probe) { p.PeriodSeconds = i32(0) })
		}, "containers[0].readiness_probe.period_seconds", "at least 1"},
		{"zero timeout", func(c *herdv1.ContainerSpec) {
			c.LivenessProbe = tcp80With(func(p *herdv1.Probe) { p.TimeoutSeconds = i32(0) })
		}, "containers[0].liveness_probe.timeout_seconds", "at least 1"},
		{"zero failure threshold", func(c *herdv1.ContainerSpec) {
			c.StartupProbe = tcp80With(func(p *herdv1.Probe) { p.FailureThreshold = i32(0) })
		}, "containers[0].startup_probe.failure_threshold", "at least 1"},
		{"zero success threshold", func(c *herdv1.ContainerSpec) {
			c.ReadinessProbe = tcp80With(func(p *herdv1.Probe) { p.SuccessThreshold = i32(0) })
		}, "containers[0].readiness_probe.success_threshold", "at least 1"},
		{"liveness success threshold", func(c *herdv1.ContainerSpec) {
			c.LivenessProbe = tcp80With(func(p *herdv1.Probe) { p.SuccessThreshold = i32(2) })
		}, "containers[0].liveness_probe.success_threshold", "must be 1 for a liveness probe"},
		{"startup success threshold", func(c *herdv1.ContainerSpec) {
			c.StartupProbe = tcp80With(func(p *herdv1.Probe) { p.SuccessThreshold = i32(3) })
		}, "containers[0].startup_probe.success_threshold", "must be 1 for a startup probe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validPod()
			tt.mutate(s.Containers[0])
			errs := ValidatePod(s)
			wantFieldError(t, errs, tt.wantPath, tt.wantMsg, true)
		})
	}
}

func TestTimingsAndProbePort(t *testing.T) {
	got := Timings(&herdv1.Probe{})
	want := ProbeTimings{InitialDelaySeconds: 0, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}
	if got != want {
		t.Fatalf("defaults: got %+v, want %+v", got, want)
	}
	five := int32(5)
	if got := Timings(&herdv1.Probe{PeriodSeconds: &five, FailureThreshold: &five}); got.PeriodSeconds != 5 || got.FailureThreshold != 5 || got.TimeoutSeconds != 1 {
		t.Fatalf("set values: got %+v", got)
	}
	ports := []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	for _, tt := range []struct {
		port int32
		name string
		want int32
	}{{80, "", 80}, {0, "http", 8080}, {0, "nope", 0}} {
		if got := ProbePort(tt.port, tt.name, ports); got != tt.want {
			t.Errorf("ProbePort(%d, %q) = %d, want %d", tt.port, tt.name, got, tt.want)
		}
	}
}
