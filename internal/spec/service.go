package spec

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Service limits and defaults.
const (
	MaxServicePorts  = 100
	NodePortMin      = 30000
	NodePortMax      = 32767
	DefaultNamespace = "default"
)

// Service types.
const (
	ServiceTypeClusterIP = "ClusterIP"
	ServiceTypeNodePort  = "NodePort"
	ServiceTypeHeadless  = "Headless"
)

// ServiceTypes lists the valid service types.
var ServiceTypes = []string{ServiceTypeClusterIP, ServiceTypeNodePort, ServiceTypeHeadless}

// Session affinities.
const (
	SessionAffinityNone     = "None"
	SessionAffinityClientIP = "ClientIP"
)

// SessionAffinities lists the valid session affinities.
var SessionAffinities = []string{SessionAffinityNone, SessionAffinityClientIP}

// ValidateService checks a whole service spec. Paths are relative to the
// spec (agentd prefixes them with "spec"), like ValidatePod's. Every
// problem is reported, so a user fixes them in one go.
func ValidateService(s *herdv1.ServiceSpec) FieldErrors {
	var errs FieldErrors
	if s == nil {
		errs.add(nil, "spec is required")
		return errs
	}
	if ns := s.GetNamespace(); ns != "" {
		if err := ValidateName(ns); err != nil {
			errs.add(Path{}.Field("namespace"), "%v", err)
		}
	}
	if err := ValidateName(s.GetName()); err != nil {
		errs.add(Path{}.Field("name"), "%v", err)
	}
	errs = append(errs, validateSelector(s.GetSelector())...)
	typ := s.GetType()
	switch typ {
	case "", ServiceTypeClusterIP, ServiceTypeNodePort, ServiceTypeHeadless:
	default:
		errs.add(Path{}.Field("type"), "invalid service type %q: must be one of %s", typ, strings.Join(ServiceTypes, ", "))
	}
	errs = append(errs, validateSessionAffinity(typ, s.GetSessionAffinity())...)
	errs = append(errs, validateServicePorts(typ, s.GetPorts())...)
	return errs
}

// validateSelector requires a selector for every type: herd has no manual
// endpoints, so a service without one could never reach a pod.
func validateSelector(sel map[string]string) FieldErrors {
	p := Path{}.Field("selector")
	if len(sel) == 0 {
		var errs FieldErrors
		errs.add(p, "at least one selector label is required: herd has no manual endpoints, so a service's endpoints are always the pods its selector matches")
		return errs
	}
	return ValidateLabels(p, sel)
}

func validateSessionAffinity(typ, aff string) FieldErrors {
	var errs FieldErrors
	p := Path{}.Field("session_affinity")
	switch aff {
	case "", SessionAffinityNone:
	case SessionAffinityClientIP:
		if typ == ServiceTypeHeadless {
			errs.add(p, "Headless services have no cluster IP to keep a client on one pod: session affinity must be None")
		}
	default:
		errs.add(p, "invalid session affinity %q: must be one of %s", aff, strings.Join(SessionAffinities, ", "))
	}
	return errs
}

// validateServicePorts checks the ports and their uniqueness: names, the
// (port, protocol) pairs on the cluster IP and node ports per protocol.
func validateServicePorts(typ string, ports []*herdv1.ServicePort) FieldErrors {
	var errs FieldErrors
	p := Path{}.Field("ports")
	switch n := len(ports); {
	case n == 0:
		errs.add(p, "at least one port is required")
	case n > MaxServicePorts:
		errs.add(p, "at most %d ports, got %d", MaxServicePorts, n)
	}
	names, pairs, nodePorts := map[string]int{}, map[string]int{}, map[string]int{}
	for i, sp := range ports {
		pp := p.Index(i)
		if sp == nil {
			errs.add(pp, "port is empty")
			continue
		}
		errs = append(errs, validatePortName(pp, i, sp.GetName(), len(ports) > 1, names)...)
		if v := sp.GetPort(); v < 1 || v > 65535 {
			errs.add(pp.Field("port"), "must be between 1 and 65535, got %d", v)
		}
		protocol := sp.GetProtocol()
		switch protocol {
		case "":
			protocol = ProtocolTCP
		case ProtocolTCP, ProtocolUDP:
		default:
			errs.add(pp.Field("protocol"), "invalid protocol %q: must be TCP or UDP", protocol)
		}
		key := fmt.Sprintf("%d/%s", sp.GetPort(), protocol)
		if j, dup := pairs[key]; dup {
			errs.add(pp.Field("port"), "duplicate port %s (also ports[%d])", key, j)
		} else {
			pairs[key] = i
		}
		errs = append(errs, validateTargetPort(pp, sp)...)
		errs = append(errs, validateNodePort(pp, i, typ, protocol, sp.GetNodePort(), nodePorts)...)
	}
	return errs
}

// validatePortName checks a service port's name: optional with a single
// port, required with several (DNS SRV records and target lookups need it).
func validatePortName(pp Path, i int, name string, required bool, seen map[string]int) FieldErrors {
	var errs FieldErrors
	np := pp.Field("name")
	if name == "" {
		if required {
			errs.add(np, "a name is required when the service has more than one port")
		}
		return errs
	}
	if err := ValidatePortName(name); err != nil {
		errs.add(np, "%v", err)
	} else if j, dup := seen[name]; dup {
		errs.add(np, "duplicate port name %q (also ports[%d])", name, j)
	} else {
		seen[name] = i
	}
	return errs
}

func validateTargetPort(pp Path, sp *herdv1.ServicePort) FieldErrors {
	var errs FieldErrors
	if v := sp.GetTargetPort(); v < 0 || v > 65535 {
		errs.add(pp.Field("target_port"), "must be between 1 and 65535 (or unset), got %d", v)
	}
	if n := sp.GetTargetPortName(); n != "" {
		if err := ValidatePortName(n); err != nil {
			errs.add(pp.Field("target_port_name"), "%v", err)
		}
		if sp.GetTargetPort() != 0 {
			errs.add(pp.Field("target_port_name"), "set either target_port (a number) or target_port_name (a container port's name), not both")
		}
	}
	return errs
}

// validateNodePort checks a requested node port; 0 asks agentd to allocate
// one (NodePort services only).
func validateNodePort(pp Path, i int, typ, protocol string, np int32, seen map[string]int) FieldErrors {
	var errs FieldErrors
	if np == 0 {
		return errs
	}
	p := pp.Field("node_port")
	if typ != ServiceTypeNodePort {
		t := typ
		if t == "" {
			t = ServiceTypeClusterIP
		}
		errs.add(p, "node ports are only allowed for type NodePort, not %s", t)
		return errs
	}
	if np < NodePortMin || np > NodePortMax {
		errs.add(p, "must be between %d and %d (or unset, to have one allocated), got %d", NodePortMin, NodePortMax, np)
		return errs
	}
	key := fmt.Sprintf("%d/%s", np, protocol)
	if j, dup := seen[key]; dup {
		errs.add(p, "duplicate node port %s (also ports[%d])", key, j)
	} else {
		seen[key] = i
	}
	return errs
}

// DefaultService returns a copy of s with defaults filled in: namespace
// "default", type ClusterIP, session affinity None, protocol TCP, and the
// target port equal to the port when neither target field is set. Node
// ports are left alone: 0 means "allocate".
func DefaultService(s *herdv1.ServiceSpec) *herdv1.ServiceSpec {
	if s == nil {
		return nil
	}
	out := proto.Clone(s).(*herdv1.ServiceSpec)
	if out.Namespace == "" {
		out.Namespace = DefaultNamespace
	}
	if out.Type == "" {
		out.Type = ServiceTypeClusterIP
	}
	if out.SessionAffinity == "" {
		out.SessionAffinity = SessionAffinityNone
	}
	for _, p := range out.GetPorts() {
		if p == nil {
			continue
		}
		if p.Protocol == "" {
			p.Protocol = ProtocolTCP
		}
		if p.TargetPort == 0 && p.TargetPortName == "" {
			p.TargetPort = p.Port
		}
	}
	return out
}
