package spec

import (
	"strings"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Probe defaults, the kubelet's.
const (
	DefaultProbeInitialDelay     = 0
	DefaultProbePeriod           = 10
	DefaultProbeTimeout          = 1
	DefaultProbeSuccessThreshold = 1
	DefaultProbeFailureThreshold = 3
)

// Probe kinds, named as the container spec's fields.
const (
	ReadinessProbe = "readiness_probe"
	LivenessProbe  = "liveness_probe"
	StartupProbe   = "startup_probe"
)

// ProbeTimings are a probe's timings with the defaults filled in.
type ProbeTimings struct {
	InitialDelaySeconds, PeriodSeconds, TimeoutSeconds int32
	SuccessThreshold, FailureThreshold                 int32
}

// Timings returns p's timings, defaulted.
func Timings(p *herdv1.Probe) ProbeTimings {
	t := ProbeTimings{
		InitialDelaySeconds: DefaultProbeInitialDelay,
		PeriodSeconds:       DefaultProbePeriod,
		TimeoutSeconds:      DefaultProbeTimeout,
		SuccessThreshold:    DefaultProbeSuccessThreshold,
		FailureThreshold:    DefaultProbeFailureThreshold,
	}
	if p.InitialDelaySeconds != nil {
		t.InitialDelaySeconds = p.GetInitialDelaySeconds()
	}
	if p.PeriodSeconds != nil {
		t.PeriodSeconds = p.GetPeriodSeconds()
	}
	if p.TimeoutSeconds != nil {
		t.TimeoutSeconds = p.GetTimeoutSeconds()
	}
	if p.SuccessThreshold != nil {
		t.SuccessThreshold = p.GetSuccessThreshold()
	}
	if p.FailureThreshold != nil {
		t.FailureThreshold = p.GetFailureThreshold()
	}
	return t
}

// validateProbes checks the three probes of container c at p.
func validateProbes(p Path, c *herdv1.ContainerSpec) FieldErrors {
	var errs FieldErrors
	for _, pr := range []struct {
		kind  string
		probe *herdv1.Probe
	}{
		{ReadinessProbe, c.GetReadinessProbe()},
		{LivenessProbe, c.GetLivenessProbe()},
		{StartupProbe, c.GetStartupProbe()},
	} {
		if pr.probe != nil {
			errs = append(errs, ValidateProbe(p.Field(pr.kind), pr.kind, pr.probe, c.GetPorts())...)
		}
	}
	return errs
}

// ValidateProbe checks one probe of kind (ReadinessProbe, LivenessProbe or
// StartupProbe) of a container that declares ports.
func ValidateProbe(p Path, kind string, pr *herdv1.Probe, ports []*herdv1.ContainerPort) FieldErrors {
	var errs FieldErrors
	handlers := 0
	if h := pr.GetHttpGet(); h != nil {
		handlers++
		hp := p.Field("http_get")
		if path := h.GetPath(); path != "" && !strings.HasPrefix(path, "/") {
			errs.add(hp.Field("path"), "must start with \"/\", got %q", path)
		} else if strings.ContainsAny(path, " \t\r\n\x00") {
			errs.add(hp.Field("path"), "must not contain whitespace or NUL bytes, got %q", path)
		}
		errs = append(errs, validateProbePort(hp, h.GetPort(), h.GetPortName(), ports)...)
	}
	if t := pr.GetTcpSocket(); t != nil {
		handlers++
		errs = append(errs, validateProbePort(p.Field("tcp_socket"), t.GetPort(), t.GetPortName(), ports)...)
	}
	if e := pr.GetExec(); e != nil {
		handlers++
		ep := p.Field("exec").Field("command")
		if len(e.GetCommand()) == 0 || e.GetCommand()[0] == "" {
			errs.add(ep, "must not be empty")
		}
		errs = append(errs, validateStrings(ep, e.GetCommand())...)
	}
	if handlers != 1 {
		errs.add(p, "exactly one of http_get, tcp_socket and exec must be set, got %d", handlers)
	}
	errs = append(errs, validateTimings(p, kind, pr)...)
	return errs
}

// validateProbePort checks that exactly one of port and name is set: a
// port number, or the name of one of the container's TCP ports.
func validateProbePort(p Path, port int32, name string, ports []*herdv1.ContainerPort) FieldErrors {
	var errs FieldErrors
	switch {
	case port != 0 && name != "":
		errs.add(p.Field("port"), "set either port or port_name, not both")
	case name != "":
		cp := findPort(ports, name)
		switch {
		case cp == nil:
			errs.add(p.Field("port_name"), "%q is not the name of one of the container's ports", name)
		case cp.GetProtocol() != "" && cp.GetProtocol() != ProtocolTCP:
			errs.add(p.Field("port_name"), "port %q is %s; probes connect over TCP", name, cp.GetProtocol())
		}
	case port < 1 || port > 65535:
		errs.add(p.Field("port"), "must be between 1 and 65535 (or set port_name), got %d", port)
	}
	return errs
}

func findPort(ports []*herdv1.ContainerPort, name string) *herdv1.ContainerPort {
	for _, cp := range ports {
		if cp != nil && cp.GetName() == name {
			return cp
		}
	}
	return nil
}

// ProbePort resolves the port a probe handler dials: its number, or the
// number of the container port it names (0 if none).
func ProbePort(port int32, name string, ports []*herdv1.ContainerPort) int32 {
	if name == "" {
		return port
	}
	return findPort(ports, name).GetContainerPort()
}

// validateTimings applies the kubelet's rules: a non-negative delay,
// everything else at least 1, and a success threshold of 1 where a single
// success is what counts (liveness, startup).
func validateTimings(p Path, kind string, pr *herdv1.Probe) FieldErrors {
	var errs FieldErrors
	check := func(field string, v *int32, minimum int32) {
		if v != nil && *v < minimum {
			errs.add(p.Field(field), "must be at least %d, got %d", minimum, *v)
		}
	}
	check("initial_delay_seconds", pr.InitialDelaySeconds, 0)
	check("period_seconds", pr.PeriodSeconds, 1)
	check("timeout_seconds", pr.TimeoutSeconds, 1)
	check("success_threshold", pr.SuccessThreshold, 1)
	check("failure_threshold", pr.FailureThreshold, 1)
	if kind != ReadinessProbe && pr.GetSuccessThreshold() > 1 {
		errs.add(p.Field("success_threshold"), "must be 1 for a %s, got %d", strings.ReplaceAll(kind, "_", " "), pr.GetSuccessThreshold())
	}
	return errs
}
