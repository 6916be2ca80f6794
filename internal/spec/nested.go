package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Nested cluster limits and defaults. The provider validates with the same
// functions at plan time; agentd validates again on every request.
const (
	// MaxNestedClusterName keeps every derived name (VMs "<name>-worker-99",
	// Secrets "<name>-worker-99-userdata") within a 63-character label.
	MaxNestedClusterName = 40
	MaxNestedWorkers     = 100
	DefaultNestedCPU     = "2"
	DefaultNestedMemory  = "4Gi"
	// DefaultNestedStepTimeout bounds each wait of a creation (seconds).
	DefaultNestedStepTimeout = 600
	MinNestedStepTimeout     = 10
	MaxNestedStepTimeout     = 7200
	// MinNestedVersion is the oldest Kubernetes the generated kubeadm
	// configuration (v1beta3 / v1beta4) supports.
	MinNestedMinor = 27
	// kubeadm's preflight checks refuse control planes below 2 CPUs and
	// about 1700 MB of memory.
	minNestedControlPlaneCPU = 2000
	minNestedControlPlaneMem = 1700 << 20
	minNestedWorkerMem       = 1 << 30
	minNestedDataVolume      = 1 << 30
)

// Endpoint exposures of a nested cluster's API server.
const (
	NestedExposureLoadBalancer = "LoadBalancer"
	NestedExposureNodePort     = "NodePort"
	NestedExposureClusterIP    = "ClusterIP"
)

// NestedExposures lists the valid endpoint exposures.
var NestedExposures = []string{NestedExposureLoadBalancer, NestedExposureNodePort, NestedExposureClusterIP}

// Network bindings of the VMs' pod network interface.
const (
	NestedBindingBridge = "bridge"
	NestedBindingPasst  = "passt"
)

// NestedBindings lists the valid network bindings.
var NestedBindings = []string{NestedBindingBridge, NestedBindingPasst}

// NestedRange is a network a nested cluster's ranges may not overlap, with
// what it is (for the message), e.g. {"herd's service CIDR", 10.96.0.0/16}.
type NestedRange struct {
	Name   string
	Prefix netip.Prefix
}

var versionRe = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// ParseNestedVersion parses "1.34.3" into its major, minor and patch.
func ParseNestedVersion(s string) (major, minor, patch int, err error) {
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("invalid Kubernetes version %q: want MAJOR.MINOR.PATCH such as \"1.34.3\" (no leading v)", s)
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	patch, _ = strconv.Atoi(m[3])
	return major, minor, patch, nil
}

// DefaultNestedCluster returns a copy of s with every default filled in:
// cpu, memory, endpoint exposure, network binding and step timeout.
func DefaultNestedCluster(s *herdv1.NestedClusterSpec) *herdv1.NestedClusterSpec {
	out := proto.Clone(s).(*herdv1.NestedClusterSpec)
	if out.ControlPlane == nil {
		out.ControlPlane = &herdv1.NestedMachines{}
	}
	if out.Workers == nil {
		out.Workers = &herdv1.NestedMachines{}
	}
	for _, m := range []*herdv1.NestedMachines{out.ControlPlane, out.Workers} {
		if m.Cpu == "" {
			m.Cpu = DefaultNestedCPU
		}
		if m.Memory == "" {
			m.Memory = DefaultNestedMemory
		}
	}
	if out.ControlPlane.Replicas == 0 {
		out.ControlPlane.Replicas = 1
	}
	if out.EndpointExposure == "" {
		out.EndpointExposure = NestedExposureLoadBalancer
	}
	if out.NetworkBinding == "" {
		out.NetworkBinding = NestedBindingBridge
	}
	if out.StepTimeoutSeconds == 0 {
		out.StepTimeoutSeconds = DefaultNestedStepTimeout
	}
	return out
}

// ValidateNestedCluster checks a nested cluster spec (defaults applied or
// not: empty optional fields are fine). forbidden are the ranges pod_cidr
// and service_cidr may not overlap: herd's own ranges and the host
// cluster's. Paths are relative to the spec.
func ValidateNestedCluster(s *herdv1.NestedClusterSpec, forbidden []NestedRange) FieldErrors {
	var errs FieldErrors
	if s == nil {
		errs.add(nil, "spec is required")
		return errs
	}
	if err := ValidateName(s.GetName()); err != nil {
		errs.add(Path{}.Field("name"), "%v", err)
	} else if len(s.GetName()) > MaxNestedClusterName {
		errs.add(Path{}.Field("name"), "%q is longer than %d characters (the VMs and their host objects are named after it)", s.GetName(), MaxNestedClusterName)
	}
	if _, minor, _, err := ParseNestedVersion(s.GetKubernetesVersion()); err != nil {
		errs.add(Path{}.Field("kubernetes_version"), "%v", err)
	} else if major, _, _, _ := ParseNestedVersion(s.GetKubernetesVersion()); major != 1 || minor < MinNestedMinor {
		errs.add(Path{}.Field("kubernetes_version"), "%s is not supported: herd's kubeadm configuration needs 1.%d or later", s.GetKubernetesVersion(), MinNestedMinor)
	}
	cp := Path{}.Field("control_plane")
	if s.GetControlPlane() == nil {
		errs.add(cp, "required (replicas 1 or 3 and an image)")
	} else {
		switch r := s.GetControlPlane().GetReplicas(); r {
		case 0, 1, 3: // 0: the default, 1
		default:
			errs.add(cp.Field("replicas"), "must be 1 or 3 (etcd needs an odd number of members; 3 tolerates one failure), got %d", r)
		}
		errs = append(errs, validateMachines(cp, s.GetControlPlane(), minNestedControlPlaneCPU, minNestedControlPlaneMem)...)
	}
	if w := s.GetWorkers(); w != nil {
		if r := w.GetReplicas(); r < 0 || r > MaxNestedWorkers {
			errs.add(Path{}.Field("workers").Field("replicas"), "must be between 0 and %d, got %d", MaxNestedWorkers, r)
		}
		if w.GetReplicas() > 0 || w.GetImage() != "" {
			errs = append(errs, validateMachines(Path{}.Field("workers"), w, 1000, minNestedWorkerMem)...)
		}
	}
	errs = append(errs, validateNestedCIDRs(s.GetPodCidr(), s.GetServiceCidr(), forbidden)...)
	switch e := s.GetEndpointExposure(); e {
	case "", NestedExposureLoadBalancer, NestedExposureNodePort, NestedExposureClusterIP:
	default:
		errs.add(Path{}.Field("endpoint_exposure"), "invalid exposure %q: must be one of %s", e, strings.Join(NestedExposures, ", "))
	}
	switch b := s.GetNetworkBinding(); b {
	case "", NestedBindingBridge, NestedBindingPasst:
	case "masquerade":
		errs.add(Path{}.Field("network_binding"), "masquerade is refused: every VM would reach the others from one NAT address, which breaks etcd peers, kubelet registration and pod traffic in a multi-node cluster; use bridge or passt")
	default:
		errs.add(Path{}.Field("network_binding"), "invalid binding %q: must be one of %s", b, strings.Join(NestedBindings, ", "))
	}
	if t := s.GetStepTimeoutSeconds(); t != 0 && (t < MinNestedStepTimeout || t > MaxNestedStepTimeout) {
		errs.add(Path{}.Field("step_timeout_seconds"), "must be between %d and %d (0: %d), got %d", MinNestedStepTimeout, MaxNestedStepTimeout, DefaultNestedStepTimeout, t)
	}
	return errs
}

func validateMachines(p Path, m *herdv1.NestedMachines, minCPU, minMem int64) FieldErrors {
	var errs FieldErrors
	if err := ValidateImage(m.GetImage()); err != nil {
		errs.add(p.Field("image"), "%v (a container disk image with cloud-init and kubeadm)", err)
	}
	if c := m.GetCpu(); c != "" {
		milli, err := ParseCPU(c)
		switch {
		case err != nil:
			errs.add(p.Field("cpu"), "%v", err)
		case milli%1000 != 0:
			errs.add(p.Field("cpu"), "%q: a VM gets whole virtual CPUs", c)
		case milli < minCPU:
			errs.add(p.Field("cpu"), "%q: at least %d (kubeadm's preflight checks)", c, minCPU/1000)
		}
	}
	if v := m.GetMemory(); v != "" {
		n, err := ParseMemory(v)
		switch {
		case err != nil:
			errs.add(p.Field("memory"), "%v", err)
		case n < minMem:
			errs.add(p.Field("memory"), "%q: at least %dMi", v, minMem>>20)
		}
	}
	if v := m.GetDataVolumeSize(); v != "" {
		n, err := ParseMemory(v)
		switch {
		case err != nil:
			errs.add(p.Field("data_volume_size"), "%v", err)
		case n < minNestedDataVolume:
			errs.add(p.Field("data_volume_size"), "%q: at least 1Gi", v)
		}
	}
	return errs
}

// validateNestedCIDRs checks both ranges: IPv4 networks of a usable size,
// not overlapping each other or any forbidden range.
func validateNestedCIDRs(pod, svc string, forbidden []NestedRange) FieldErrors {
	var errs FieldErrors
	pp, podOK := parseNestedCIDR(&errs, Path{}.Field("pod_cidr"), pod, 8, 24, "10.200.0.0/16")
	sp, svcOK := parseNestedCIDR(&errs, Path{}.Field("service_cidr"), svc, 12, 28, "10.201.0.0/16")
	if podOK && svcOK && pp.Overlaps(sp) {
		errs.add(Path{}.Field("service_cidr"), "%s overlaps pod_cidr %s", sp, pp)
	}
	for _, f := range forbidden {
		if podOK && pp.Overlaps(f.Prefix) {
			errs.add(Path{}.Field("pod_cidr"), "%s overlaps %s %s", pp, f.Name, f.Prefix)
		}
		if svcOK && sp.Overlaps(f.Prefix) {
			errs.add(Path{}.Field("service_cidr"), "%s overlaps %s %s", sp, f.Name, f.Prefix)
		}
	}
	return errs
}

func parseNestedCIDR(errs *FieldErrors, p Path, s string, minBits, maxBits int, example string) (netip.Prefix, bool) {
	if s == "" {
		errs.add(p, "required: an IPv4 network such as %s", example)
		return netip.Prefix{}, false
	}
	pr, err := netip.ParsePrefix(s)
	if err != nil || !pr.Addr().Is4() {
		errs.add(p, "want an IPv4 network such as %s, got %q", example, s)
		return netip.Prefix{}, false
	}
	if pr != pr.Masked() {
		errs.add(p, "%q has host bits set: did you mean %s?", s, pr.Masked())
		return netip.Prefix{}, false
	}
	if pr.Bits() < minBits || pr.Bits() > maxBits {
		errs.add(p, "%s: the prefix length must be between /%d and /%d", pr, minBits, maxBits)
		return netip.Prefix{}, false
	}
	return pr, true
}

// NestedImmutableChanges names the fields whose change from prior to next
// cannot be made in place (both specs are defaulted first). Only
// workers.replicas, deletion_protection, keep_on_failure and
// step_timeout_seconds may change in place; anything else replaces the
// cluster.
func NestedImmutableChanges(prior, next *herdv1.NestedClusterSpec) []string {
	a, b := DefaultNestedCluster(prior), DefaultNestedCluster(next)
	var out []string
	cmp := func(field, x, y string) {
		if x != y {
			out = append(out, field)
		}
	}
	cmp("name", a.GetName(), b.GetName())
	cmp("kubernetes_version", a.GetKubernetesVersion(), b.GetKubernetesVersion())
	cmp("control_plane.replicas", strconv.Itoa(int(a.GetControlPlane().GetReplicas())), strconv.Itoa(int(b.GetControlPlane().GetReplicas())))
	for _, m := range []struct {
		name string
		x, y *herdv1.NestedMachines
	}{{"control_plane", a.GetControlPlane(), b.GetControlPlane()}, {"workers", a.GetWorkers(), b.GetWorkers()}} {
		cmp(m.name+".cpu", m.x.GetCpu(), m.y.GetCpu())
		cmp(m.name+".memory", m.x.GetMemory(), m.y.GetMemory())
		cmp(m.name+".data_volume_size", m.x.GetDataVolumeSize(), m.y.GetDataVolumeSize())
		if m.name == "workers" && (m.x.GetImage() == "" || m.y.GetImage() == "") {
			continue // a cluster without workers may get its first image
		}
		cmp(m.name+".image", m.x.GetImage(), m.y.GetImage())
	}
	cmp("pod_cidr", a.GetPodCidr(), b.GetPodCidr())
	cmp("service_cidr", a.GetServiceCidr(), b.GetServiceCidr())
	cmp("endpoint_exposure", a.GetEndpointExposure(), b.GetEndpointExposure())
	cmp("network_binding", a.GetNetworkBinding(), b.GetNetworkBinding())
	return out
}
