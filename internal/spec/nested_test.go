package spec

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func validNested() *herdv1.NestedClusterSpec {
	return &herdv1.NestedClusterSpec{
		Name:              "dev",
		KubernetesVersion: "1.34.3",
		ControlPlane:      &herdv1.NestedMachines{Replicas: 1, Cpu: "2", Memory: "4Gi", Image: "quay.io/herd/kubeadm-node:1.34.3"},
		Workers:           &herdv1.NestedMachines{Replicas: 2, Image: "quay.io/herd/kubeadm-node:1.34.3"},
		PodCidr:           "10.200.0.0/16",
		ServiceCidr:       "10.201.0.0/16",
	}
}

var testForbidden = []NestedRange{
	{Name: "herd's cluster CIDR", Prefix: netip.MustParsePrefix("10.244.0.0/16")},
	{Name: "herd's service CIDR", Prefix: netip.MustParsePrefix("10.96.0.0/16")},
	{Name: "the host cluster's range", Prefix: netip.MustParsePrefix("172.30.0.0/16")},
}

// Each case breaks one thing and must produce exactly one error at the
// path that holds the problem.
func TestValidateNestedCluster(t *testing.T) {
	tests := []mutationCase[herdv1.NestedClusterSpec]{
		{"valid", func(*herdv1.NestedClusterSpec) {}, "", ""},
		{"three control planes, passt, NodePort", func(s *herdv1.NestedClusterSpec) {
			s.ControlPlane.Replicas, s.NetworkBinding, s.EndpointExposure = 3, "passt", "NodePort"
		}, "", ""},
		{"no workers", func(s *herdv1.NestedClusterSpec) { s.Workers = nil }, "", ""},
		{"zero workers without image", func(s *herdv1.NestedClusterSpec) { s.Workers = &herdv1.NestedMachines{} }, "", ""},
		{"data volume", func(s *herdv1.NestedClusterSpec) { s.ControlPlane.DataVolumeSize = "20Gi" }, "", ""},
		{"bad name", func(s *herdv1.NestedClusterSpec) { s.Name = "Dev" }, "name", "RFC 1123"},
		{"long name", func(s *herdv1.NestedClusterSpec) { s.Name = strings.Repeat("a", 41) }, "name", "longer than 40"},
		{"version with v", func(s *herdv1.NestedClusterSpec) { s.KubernetesVersion = "v1.34.3" }, "kubernetes_version", "MAJOR.MINOR.PATCH"},
		{"version too old", func(s *herdv1.NestedClusterSpec) { s.KubernetesVersion = "1.20.0" }, "kubernetes_version", "1.27 or later"},
		{"two control planes", func(s *herdv1.NestedClusterSpec) { s.ControlPlane.Replicas = 2 }, "control_plane.replicas", "must be 1 or 3"},
		{"no control plane", func(s *herdv1.NestedClusterSpec) { s.ControlPlane = nil }, "control_plane", "required"},
		{"no image", func(s *herdv1.NestedClusterSpec) { s.ControlPlane.Image = "" }, "control_plane.image", "must not be empty"},
		{"worker without image", func(s *herdv1.NestedClusterSpec) { s.Workers.Image = "" }, "workers.image", "must not be empty"},
		{"too many workers", func(s *herdv1.NestedClusterSpec) { s.Workers.Replicas = 101 }, "workers.replicas", "between 0 and 100"},
		{"fractional cpu", func(s *herdv1.NestedClusterSpec) { s.Workers.Cpu = "1500m" }, "workers.cpu", "whole virtual CPUs"},
		{"control plane of one cpu", func(s *herdv1.NestedClusterSpec) { s.ControlPlane.Cpu = "1" }, "control_plane.cpu", "at least 2"},
		{"bad memory", func(s *herdv1.NestedClusterSpec) { s.Workers.Memory = "lots" }, "workers.memory", "invalid memory quantity"},
		{"small memory", func(s *herdv1.NestedClusterSpec) { s.ControlPlane.Memory = "1Gi" }, "control_plane.memory", "at least 1700Mi"},
		{"small data volume", func(s *herdv1.NestedClusterSpec) { s.Workers.DataVolumeSize = "100Mi" }, "workers.data_volume_size", "at least 1Gi"},
		{"no pod cidr", func(s *herdv1.NestedClusterSpec) { s.PodCidr = "" }, "pod_cidr", "required"},
		{"ipv6 pod cidr", func(s *herdv1.NestedClusterSpec) { s.PodCidr = "fd00::/64" }, "pod_cidr", "IPv4"},
		{"host bits", func(s *herdv1.NestedClusterSpec) { s.ServiceCidr = "10.201.0.1/16" }, "service_cidr", "did you mean 10.201.0.0/16"},
		{"service too large", func(s *herdv1.NestedClusterSpec) { s.ServiceCidr = "10.0.0.0/8" }, "service_cidr", "between /12 and /28"},
		{"pod and service overlap", func(s *herdv1.NestedClusterSpec) { s.ServiceCidr = "10.200.128.0/20" }, "service_cidr", "overlaps pod_cidr 10.200.0.0/16"},
		{"pod overlaps herd", func(s *herdv1.NestedClusterSpec) { s.PodCidr = "10.244.0.0/16" }, "pod_cidr", "overlaps herd's cluster CIDR 10.244.0.0/16"},
		{"service overlaps host", func(s *herdv1.NestedClusterSpec) { s.ServiceCidr = "172.30.4.0/24" }, "service_cidr", "overlaps the host cluster's range"},
		{"bad exposure", func(s *herdv1.NestedClusterSpec) { s.EndpointExposure = "Ingress" }, "endpoint_exposure", "LoadBalancer, NodePort, ClusterIP"},
		{"masquerade", func(s *herdv1.NestedClusterSpec) { s.NetworkBinding = "masquerade" }, "network_binding", "one NAT address"},
		{"bad binding", func(s *herdv1.NestedClusterSpec) { s.NetworkBinding = "sriov" }, "network_binding", "bridge, passt"},
		{"step timeout", func(s *herdv1.NestedClusterSpec) { s.StepTimeoutSeconds = 5 }, "step_timeout_seconds", "between 10 and 7200"},
	}
	runMutations(t, tests, validNested, func(s *herdv1.NestedClusterSpec) FieldErrors { return ValidateNestedCluster(s, testForbidden) }, true)
}

func TestDefaultNestedCluster(t *testing.T) {
	s := validNested()
	s.ControlPlane.Replicas, s.Workers.Cpu = 0, ""
	before := proto.Clone(s)
	d := DefaultNestedCluster(s)
	if !proto.Equal(s, before) {
		t.Fatal("DefaultNestedCluster changed its argument")
	}
	if d.ControlPlane.Replicas != 1 || d.Workers.Cpu != "2" || d.Workers.Memory != "4Gi" ||
		d.EndpointExposure != "LoadBalancer" || d.NetworkBinding != "bridge" || d.StepTimeoutSeconds != 600 {
		t.Fatalf("defaults not applied: %v", d)
	}
	if errs := ValidateNestedCluster(d, nil); len(errs) != 0 {
		t.Fatalf("defaulted spec is invalid: %v", errs)
	}
}

func TestNestedImmutableChanges(t *testing.T) {
	old := validNested()
	same := validNested()
	same.Workers.Replicas, same.DeletionProtection, same.KeepOnFailure, same.StepTimeoutSeconds = 7, true, true, 60
	if got := NestedImmutableChanges(old, same); len(got) != 0 {
		t.Fatalf("in-place fields reported as immutable: %v", got)
	}
	// Spelled-out defaults are no change.
	explicit := validNested()
	explicit.EndpointExposure, explicit.NetworkBinding, explicit.Workers.Cpu = "LoadBalancer", "bridge", "2"
	if got := NestedImmutableChanges(old, explicit); len(got) != 0 {
		t.Fatalf("explicit defaults reported as changes: %v", got)
	}
	changed := validNested()
	changed.KubernetesVersion, changed.ControlPlane.Replicas, changed.Workers.Memory, changed.PodCidr = "1.34.4", 3, "8Gi", "10.210.0.0/16"
	want := []string{"kubernetes_version", "control_plane.replicas", "workers.memory", "pod_cidr"}
	if got := NestedImmutableChanges(old, changed); !slices.Equal(got, want) {
		t.Fatalf("immutable changes = %v, want %v", got, want)
	}
}
