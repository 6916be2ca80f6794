package resources_test

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// clusterDefaults are the lines of a valid herd_cluster configuration: a
// top-level argument ("name") or one in a block ("workers.replicas").
var clusterDefaults = map[string]string{
	"node":                  fmt.Sprintf("%q", testNodeID),
	"name":                  `"dev"`,
	"kubernetes_version":    `"1.34.3"`,
	"pod_cidr":              `"10.200.0.0/16"`,
	"service_cidr":          `"10.201.0.0/16"`,
	"control_plane.image":   `"registry.example/kube-node:1.34.3"`,
	"workers.replicas":      `2`,
	"workers.image":         `"registry.example/kube-node:1.34.3"`,
	"control_plane.__block": "",
	"workers.__block":       "",
}

// clusterConfig renders herd_cluster.c on the unreachable test node: the
// valid defaults with set applied ("" removes an argument; "-" as the
// value of "BLOCK.__block" removes the whole block).
func clusterConfig(set map[string]string) string {
	fields := map[string]string{}
	for k, v := range clusterDefaults {
		fields[k] = v
	}
	for k, v := range set {
		fields[k] = v
	}
	var top, blocks []string
	byBlock := map[string][]string{}
	for k, v := range fields {
		if v == "" && !strings.HasSuffix(k, ".__block") {
			continue
		}
		if b, a, ok := strings.Cut(k, "."); ok {
			if a == "__block" {
				if v != "-" {
					blocks = append(blocks, b)
				}
				continue
			}
			byBlock[b] = append(byBlock[b], fmt.Sprintf("    %s = %s", a, v))
			continue
		}
		top = append(top, fmt.Sprintf("  %s = %s", k, v))
	}
	sort.Strings(top)
	sort.Strings(blocks)
	var b strings.Builder
	b.WriteString("resource \"herd_cluster\" \"c\" {\n")
	b.WriteString(strings.Join(top, "\n") + "\n")
	for _, name := range blocks {
		lines := byBlock[name]
		sort.Strings(lines)
		fmt.Fprintf(&b, "  %s {\n%s\n  }\n", name, strings.Join(lines, "\n"))
	}
	b.WriteString("}\n")
	return b.String()
}

// Every invalid herd_cluster is refused at plan time, without a node, at
// the attribute that holds the problem.
func TestClusterPlanRefusesBadInput(t *testing.T) {
	cases := []struct {
		name   string
		set    map[string]string
		re     *regexp.Regexp
		errors int
	}{
		{"name not a label", map[string]string{"name": `"Dev_1"`},
			errRe("Invalid cluster specification", `name: "Dev_1" must be a lowercase RFC 1123 label`), 1},
		{"empty name", map[string]string{"name": `""`}, errRe(`name: must not be empty`), 1},
		{"name too long", map[string]string{"name": `"a234567890123456789012345678901234567890z"`},
			errRe(`name: "a234567890123456789012345678901234567890z" is longer than 40 characters`), 1},
		{"version with v", map[string]string{"kubernetes_version": `"v1.34.3"`},
			errRe(`kubernetes_version: invalid Kubernetes version "v1.34.3": want MAJOR.MINOR.PATCH such as "1.34.3" (no leading v)`), 1},
		{"version without patch", map[string]string{"kubernetes_version": `"1.34"`},
			errRe(`kubernetes_version: invalid Kubernetes version "1.34"`), 1},
		{"version too old", map[string]string{"kubernetes_version": `"1.26.15"`},
			errRe(`kubernetes_version: 1.26.15 is not supported: herd's kubeadm configuration needs 1.27 or later`), 1},
		{"two control-plane replicas", map[string]string{"control_plane.replicas": `2`},
			errRe(`control_plane.replicas: must be 1 or 3 (etcd needs an odd number of members`, `got 2`), 1},
		{"no control-plane replicas", map[string]string{"control_plane.replicas": `0`},
			errRe(`control_plane.replicas: must be 1 or 3, got 0`), 1},
		{"too many workers", map[string]string{"workers.replicas": `101`},
			errRe(`workers.replicas: must be between 0 and 100, got 101`), 1},
		{"negative workers", map[string]string{"workers.replicas": `-1`},
			errRe(`workers.replicas: must be between 0 and 100, got -1`), 1},
		{"workers beyond int32", map[string]string{"workers.replicas": `4294967296`},
			errRe(`workers.replicas: must be between 0 and 100, got 4294967296`), 1},
		{"bad cpu", map[string]string{"control_plane.cpu": `"two"`},
			errRe(`control_plane.cpu: invalid CPU quantity "two"`), 1},
		{"zero cpu", map[string]string{"workers.cpu": `"0"`},
			errRe(`workers.cpu: invalid CPU quantity "0": must be greater than zero`), 1},
		{"fractional cpu", map[string]string{"workers.cpu": `"1500m"`},
			errRe(`workers.cpu: "1500m": a VM gets whole virtual CPUs`), 1},
		{"control plane below kubeadm's cpu", map[string]string{"control_plane.cpu": `"1"`},
			errRe(`control_plane.cpu: "1": at least 2 (kubeadm's preflight checks)`), 1},
		{"control plane below kubeadm's memory", map[string]string{"control_plane.memory": `"1Gi"`},
			errRe(`control_plane.memory: "1Gi": at least 1700Mi`), 1},
		{"bad memory", map[string]string{"workers.memory": `"lots"`},
			errRe(`workers.memory: invalid memory quantity "lots"`), 1},
		{"bad data volume size", map[string]string{"control_plane.data_volume_size": `"1.5"`},
			errRe(`control_plane.data_volume_size: invalid memory quantity "1.5": not a whole number of bytes`), 1},
		{"small data volume", map[string]string{"workers.data_volume_size": `"512Mi"`},
			errRe(`workers.data_volume_size: "512Mi": at least 1Gi`), 1},
		{"bad image", map[string]string{"workers.image": `"Registry/UPPER"`},
			errRe(`workers.image: invalid image reference "Registry/UPPER"`), 1},
		{"missing control-plane image", map[string]string{"control_plane.image": ""},
			errRe(`control_plane.image: must not be empty (a container disk image with cloud-init and kubeadm)`), 1},
		{"missing worker image", map[string]string{"workers.image": ""},
			errRe(`workers.image: must not be empty`), 1},
		{"missing workers block", map[string]string{"workers.__block": "-"},
			errRe("Invalid Block", "Block workers must have a configuration value"), 1},
		{"pod cidr not a cidr", map[string]string{"pod_cidr": `"banana"`},
			errRe(`pod_cidr: want an IPv4 network such as 10.200.0.0/16, got "banana"`), 1},
		{"pod cidr IPv6", map[string]string{"pod_cidr": `"fd00:10::/48"`},
			errRe(`pod_cidr: want an IPv4 network`), 1},
		{"pod cidr not a network address", map[string]string{"pod_cidr": `"10.200.0.1/16"`},
			errRe(`pod_cidr: "10.200.0.1/16" has host bits set: did you mean 10.200.0.0/16?`), 1},
		{"service cidr too small", map[string]string{"service_cidr": `"10.201.0.0/29"`},
			errRe(`service_cidr: 10.201.0.0/29: the prefix length must be between /12 and /28`), 1},
		{"service cidr overlaps pod cidr", map[string]string{"service_cidr": `"10.200.128.0/20"`},
			errRe(`service_cidr: 10.200.128.0/20 overlaps pod_cidr 10.200.0.0/16`), 1},
		{"exposure", map[string]string{"endpoint_exposure": `"Ingress"`},
			errRe(`endpoint_exposure: invalid exposure "Ingress": must be one of LoadBalancer, NodePort, ClusterIP`), 1},
		{"masquerade binding", map[string]string{"network_binding": `"masquerade"`},
			errRe(`network_binding: masquerade is refused: every VM would reach the others from one NAT address`, `use bridge or passt`), 1},
		{"unknown binding", map[string]string{"network_binding": `"sriov"`},
			errRe(`network_binding: invalid binding "sriov": must be one of bridge, passt`), 1},
		{"step timeout without unit", map[string]string{"step_timeout": `"600"`},
			errRe(`step_timeout: must be a Go duration such as "10m" or "90s", got "600"`), 1},
		{"step timeout too short", map[string]string{"step_timeout": `"5s"`},
			errRe(`step_timeout: must be between 10s and 2h, got "5s"`), 1},
		{"step timeout fractional seconds", map[string]string{"step_timeout": `"10500ms"`},
			errRe(`step_timeout: must be a whole number of seconds, got "10500ms"`), 1},
		{"step timeout too long", map[string]string{"step_timeout": `"3h"`},
			errRe(`step_timeout: must be between 10s and 2h, got "3h"`), 1},
		{"bad node id", map[string]string{"node": `"node-a"`}, errRe("Invalid node id"), 1},
		{"several at once", map[string]string{
			"name": `"X"`, "control_plane.replicas": `2`, "workers.memory": `"lots"`, "network_binding": `"masquerade"`,
		}, errRe(`name: "X" must be`, `control_plane.replicas: must be 1 or 3`), 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectPlanErrors(t, clusterConfig(tc.set), tc.re, tc.errors)
		})
	}
}

// A valid cluster, and one whose values are partly unknown at plan time,
// plan without asking any node (the test node does not exist).
func TestClusterPlanNeedsNoNode(t *testing.T) {
	needCLI(t)
	unknown := `
resource "terraform_data" "v" {
  input = "1.34.3"
}
` + strings.Replace(clusterConfig(map[string]string{
		"step_timeout":     `"90s"`,
		"workers.cpu":      `"3"`,
		"workers.replicas": `0`,
	}), `kubernetes_version = "1.34.3"`, `kubernetes_version = terraform_data.v.output`, 1)
	for name, config := range map[string]string{
		"known":   clusterConfig(map[string]string{"control_plane.replicas": `3`, "network_binding": `"passt"`}),
		"unknown": unknown,
	} {
		t.Run(name, func(t *testing.T) {
			expectPlanAccepted(t, config)
		})
	}
}
