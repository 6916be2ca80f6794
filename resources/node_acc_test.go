package resources_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// hostFacts is what agentd must report about this machine.
type hostFacts struct {
	cpuMillis, memBytes int64
	kernel              string
}

func readHostFacts(t *testing.T) hostFacts {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mem int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			mem = kb * 1024
		}
	}
	if mem == 0 {
		t.Fatal("no MemTotal in /proc/meminfo")
	}
	return hostFacts{cpuMillis: int64(runtime.NumCPU()) * 1000, memBytes: mem, kernel: unix.ByteSliceToString(u.Release[:])}
}

// nodeLabelsAre checks the labels the node itself reports.
func (n *accNode) nodeLabelsAre(t *testing.T, want map[string]string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		node, err := n.nodes.GetNode(context.Background(), &herdv1.GetNodeRequest{})
		if err != nil {
			return err
		}
		if got := node.GetLabels(); !maps.Equal(got, want) {
			return fmt.Errorf("node reports labels %v, want %v", got, want)
		}
		return nil
	}
}

// herd_node adopts a real node: its computed attributes are the host's,
// its labels are set, changed and cleared in place on the node; the
// herd_node and herd_pods data sources read the real node and its pods,
// including a pod Terraform does not manage.
func TestAccNodeLabelsAndDataSources(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-node", func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--reserved-cpu", "100m", "--reserved-memory", "64Mi")
	})
	host := readHostFacts(t)

	// A pod created behind Terraform's back, matching the data source's
	// label filter.
	g := int64(0)
	_, err := n.pods.ApplyPod(context.Background(), &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{
		Name:                          "oob",
		Labels:                        map[string]string{"tier": "front", "app": "oob"},
		TerminationGracePeriodSeconds: &g,
		Containers:                    []*herdv1.ContainerSpec{{Name: "app", Image: n.env.Image, Command: []string{"sleep", "3600"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = n.pods.DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: "oob"})
	})

	config := func(labels string) string {
		return n.providerHCL() + n.nodeHCL(labels) + fmt.Sprintf(`
resource "herd_pod" "web" {
  node   = herd_node.n.id
  name   = "web"
  labels = { tier = "front", app = "web" }
  termination_grace_period_seconds = 0
  container {
    name    = "app"
    image   = %[1]q
    command = ["sleep", "3600"]
  }
}

resource "herd_pod" "db" {
  node   = herd_node.n.id
  name   = "db"
  labels = { tier = "back", app = "db" }
  termination_grace_period_seconds = 0
  container {
    name    = "db"
    image   = %[1]q
    command = ["sleep", "3600"]
  }
}

data "herd_node" "n" {
  id         = herd_node.n.id
  depends_on = [herd_node.n]
}

data "herd_pods" "front" {
  node       = herd_node.n.id
  labels     = { tier = "front" }
  depends_on = [herd_pod.web, herd_pod.db]
}

data "herd_pods" "all" {
  node       = herd_node.n.id
  depends_on = [herd_pod.web, herd_pod.db]
}
`, n.env.Image)
	}
	hostChecks := func(res string) resource.TestCheckFunc {
		return resource.ComposeAggregateTestCheckFunc(
			resource.TestCheckResourceAttr(res, "os", runtime.GOOS),
			resource.TestCheckResourceAttr(res, "arch", runtime.GOARCH),
			resource.TestCheckResourceAttr(res, "kernel_version", host.kernel),
			resource.TestCheckResourceAttr(res, "capacity_cpu_millis", strconv.FormatInt(host.cpuMillis, 10)),
			resource.TestCheckResourceAttr(res, "capacity_memory_bytes", strconv.FormatInt(host.memBytes, 10)),
			resource.TestCheckResourceAttr(res, "allocatable_cpu_millis", strconv.FormatInt(host.cpuMillis-100, 10)),
			resource.TestCheckResourceAttr(res, "allocatable_memory_bytes", strconv.FormatInt(host.memBytes-64<<20, 10)),
			resource.TestCheckResourceAttr(res, "agent_version", "dev"),
			resource.TestCheckResourceAttr(res, "ready", "true"),
		)
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(s *terraform.State) error {
			// Only the pod Terraform did not create is left, and the
			// node's labels are cleared.
			list, err := n.pods.ListPods(context.Background(), &herdv1.ListPodsRequest{})
			if err != nil {
				return err
			}
			if len(list.GetPods()) != 1 || list.GetPods()[0].GetSpec().GetName() != "oob" {
				return fmt.Errorf("pods after destroy: %v", list.GetPods())
			}
			return n.nodeLabelsAre(t, map[string]string{})(s)
		},
		Steps: []resource.TestStep{
			{
				Config: config(`labels = { zone = "a", rack = "r1" }`),
				Check: resource.ComposeAggregateTestCheckFunc(
					hostChecks("herd_node.n"),
					hostChecks("data.herd_node.n"),
					resource.TestCheckResourceAttr("herd_node.n", "labels.%", "2"),
					resource.TestCheckResourceAttr("data.herd_node.n", "name", n.agent.Name),
					resource.TestCheckResourceAttr("data.herd_node.n", "address", n.agent.Addr),
					resource.TestCheckResourceAttr("data.herd_node.n", "labels.zone", "a"),
					n.nodeLabelsAre(t, map[string]string{"zone": "a", "rack": "r1"}),
					// Filtered by label, sorted by name, with a pod that
					// Terraform does not manage.
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.#", "2"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.0.name", "oob"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.0.phase", "Running"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.0.labels.app", "oob"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.1.name", "web"),
					resource.TestCheckResourceAttrPair("data.herd_pods.front", "pods.1.uid", "herd_pod.web", "uid"),
					resource.TestCheckResourceAttrPair("data.herd_pods.front", "pods.1.pod_ip", "herd_pod.web", "pod_ip"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.1.containers.0.name", "app"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.1.containers.0.image", n.env.Image),
					resource.TestCheckResourceAttr("data.herd_pods.all", "pods.#", "3"),
					resource.TestCheckResourceAttr("data.herd_pods.all", "pods.0.name", "db"),
					resource.TestCheckResourceAttr("data.herd_pods.all", "pods.1.name", "oob"),
					resource.TestCheckResourceAttr("data.herd_pods.all", "pods.2.name", "web"),
				),
			},
			// Labels change in place; the pods are untouched.
			{
				Config: config(`labels = { zone = "b" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_node.n", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.web", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("herd_pod.db", plancheck.ResourceActionNoop),
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "labels.%", "1"),
					resource.TestCheckResourceAttr("herd_node.n", "labels.zone", "b"),
					resource.TestCheckResourceAttr("data.herd_node.n", "labels.zone", "b"),
					n.nodeLabelsAre(t, map[string]string{"zone": "b"}),
				),
			},
			// labels = {} clears them and stays empty (no diff after apply).
			{
				Config: config(`labels = {}`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_node.n", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "labels.%", "0"),
					n.nodeLabelsAre(t, map[string]string{}),
				),
			},
			// Set again, then removed from the configuration: cleared.
			{
				Config: config(`labels = { zone = "c" }`),
				Check:  n.nodeLabelsAre(t, map[string]string{"zone": "c"}),
			},
			{
				Config: config(``),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_node.n", plancheck.ResourceActionUpdate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckNoResourceAttr("herd_node.n", "labels.%"),
					n.nodeLabelsAre(t, map[string]string{}),
				),
			},
		},
	})
}

// A node whose agentd is down: a refresh warns and keeps the last known
// attributes with ready = false, the plan is empty, the data source fails,
// and destroying the node still succeeds.
func TestAccNodeUnreachable(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-down")
	provider := fmt.Sprintf(`
provider "herd" {
  ca_cert      = %q
  client_cert  = %q
  client_key   = %q
  dial_timeout = "1s"
}
`, n.env.Certs.CAFile, n.env.Certs.ClientCertFile, n.env.Certs.ClientKeyFile)
	config := provider + n.nodeHCL(`labels = { zone = "a" }`)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "ready", "true"),
					n.nodeLabelsAre(t, map[string]string{"zone": "a"}),
				),
			},
			{
				PreConfig: n.agent.Stop,
				Config:    config,
				PlanOnly:  true,
			},
			{
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "ready", "false"),
					resource.TestCheckResourceAttr("herd_node.n", "os", runtime.GOOS),
					resource.TestCheckResourceAttr("herd_node.n", "labels.zone", "a"),
				),
			},
		},
	})

	// The data source has no state to fall back on: it fails.
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config: provider + fmt.Sprintf(`
data "herd_node" "n" {
  id = %q
}
`, n.agent.ID()),
			ExpectError: errRe("Cannot reach node", n.agent.Name),
		}},
	})
}

// A node that runs without a cluster: cluster_members is empty and
// pod_cidr too (no pod network), in the resource and the data source;
// asking it to join a cluster fails at apply, naming the agentd flags it
// lacks, and leaves the node's labels alone. Removing join adopts it.
func TestAccNodeJoinWithoutCluster(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-nocluster")
	// Never dialled: the node refuses before it would contact anyone.
	join := `join = ["127.0.0.1:7946"]
  labels = { zone = "a" }`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{
				Config:      n.providerHCL() + n.nodeHCL(join),
				ExpectError: errRe("Node runs without a cluster", n.agent.Name, "--cluster-cidr", "--gossip-listen", "--gossip-key"),
			},
			{
				PreConfig: func() {
					if err := n.nodeLabelsAre(t, map[string]string{})(nil); err != nil {
						t.Fatalf("after the failed join: %v", err)
					}
				},
				Config: n.providerHCL() + n.nodeHCL(`labels = { zone = "a" }`) + `
data "herd_node" "n" {
  id         = herd_node.n.id
  depends_on = [herd_node.n]
}
`,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckNoResourceAttr("herd_node.n", "join.#"),
					resource.TestCheckResourceAttr("herd_node.n", "cluster_members.#", "0"),
					resource.TestCheckResourceAttr("herd_node.n", "pod_cidr", ""),
					resource.TestCheckResourceAttr("data.herd_node.n", "cluster_members.#", "0"),
					resource.TestCheckResourceAttr("data.herd_node.n", "pod_cidr", ""),
					n.nodeLabelsAre(t, map[string]string{"zone": "a"}),
				),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			// Set on an adopted node: the update fails the same way.
			{
				Config:      n.providerHCL() + n.nodeHCL(join),
				ExpectError: errRe("Node runs without a cluster", "--cluster-cidr"),
			},
		},
	})
}

// join is validated at plan time, without a node.
func TestNodePlanRefusesBadJoin(t *testing.T) {
	node := func(join string) string {
		return fmt.Sprintf(`
resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
  join    = %s
}
`, join)
	}
	cases := []struct {
		name, join string
		re         *regexp.Regexp
		errors     int
	}{
		{"empty", `[]`, errRe("Invalid join", "at least one gossip address"), 1},
		{"no port", `["10.0.0.5"]`, errRe("Invalid gossip address", `"10.0.0.5": want host:port`), 1},
		{"port 0 and out of range", `["10.0.0.5:0", "h:70000"]`, errRe("Invalid gossip address", "port must be a number from 1 to 65535", "Invalid gossip address"), 2},
		{"no host", `[":7946"]`, errRe("Invalid gossip address", "host is empty"), 1},
		{"unbracketed IPv6", `["fd00::5:7946"]`, errRe("Invalid gossip address", "want host:port"), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectPlanErrors(t, node(tc.join), tc.re, tc.errors)
		})
	}
}
