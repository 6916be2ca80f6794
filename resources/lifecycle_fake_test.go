package resources_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// These tests run the real CLI against fakeAgentd (see fake_agentd_test.go):
// they check the provider's side of create / read / import / delete.

func lifecycleConfig(f *fakeAgentd, nodeLabels, cpu, createTimeout string) string {
	return fmt.Sprintf(`
resource "herd_node" "n" {
  name    = %q
  address = %q
  %s
}

resource "herd_pod" "p" {
  node   = herd_node.n.id
  name   = "web"
  labels = { app = "web", tier = "front" }
  container {
    name    = "app"
    image   = "registry.example/app:1.0"
    command = ["/bin/app"]
    args    = []
    env     = { MODE = "prod" }
    cpu     = %q
    memory  = "64Mi"
  }
  container {
    name  = "sidecar"
    image = "busybox"
  }
  timeouts {
    create = %q
  }
}

data "herd_pods" "front" {
  node       = herd_node.n.id
  labels     = { tier = "front" }
  depends_on = [herd_pod.p]
}

data "herd_node" "n" {
  id         = herd_node.n.id
  depends_on = [herd_node.n]
}
`, f.name, f.addr, nodeLabels, cpu, createTimeout)
}

func TestPodLifecycleWithFakeAgentd(t *testing.T) {
	needCLI(t)
	f := startFakeAgentd(t, "node-a")
	podID := f.nodeID() + "/web"
	var firstUID string

	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			if names := f.podNames(); len(names) > 0 {
				return fmt.Errorf("pods left on the node: %v", names)
			}
			if len(f.node().GetLabels()) > 0 {
				return fmt.Errorf("node labels left: %v", f.node().GetLabels())
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: lifecycleConfig(f, `labels = { zone = "a" }`, "250m", "1m"),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "id", f.nodeID()),
					resource.TestCheckResourceAttr("herd_node.n", "ready", "true"),
					resource.TestCheckResourceAttr("herd_node.n", "os", "linux"),
					resource.TestCheckResourceAttr("herd_node.n", "allocatable_cpu_millis", "1800"),
					resource.TestCheckResourceAttr("herd_pod.p", "id", podID),
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_policy", "Always"),
					resource.TestCheckResourceAttr("herd_pod.p", "termination_grace_period_seconds", "30"),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_count", "0"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.#", "2"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.state", "running"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container_status.0.last_exit_code"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.args.#", "0"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.1.command"),
					resource.TestCheckResourceAttrSet("herd_pod.p", "start_time"),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", func(v string) error { firstUID = v; return nil }),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.#", "1"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.0.name", "web"),
					resource.TestCheckResourceAttr("data.herd_pods.front", "pods.0.containers.1.image", "busybox"),
					resource.TestCheckResourceAttr("data.herd_node.n", "labels.zone", "a"),
					func(*terraform.State) error {
						if l := f.node().GetLabels(); l["zone"] != "a" {
							return fmt.Errorf("node labels = %v", l)
						}
						return nil
					},
				),
			},
			// A refresh changes nothing: the plan is empty.
			{
				Config:   lifecycleConfig(f, `labels = { zone = "a" }`, "250m", "1m"),
				PlanOnly: true,
			},
			// Import reproduces the state (the unix address contains '/').
			{
				ResourceName:            "herd_pod.p",
				ImportState:             true,
				ImportStateId:           podID,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			{
				ResourceName:      "herd_node.n",
				ImportState:       true,
				ImportStateVerify: true,
			},
			// A pod deleted behind Terraform's back is created again.
			{
				PreConfig: func() { f.deletePod("web") },
				Config:    lifecycleConfig(f, `labels = { zone = "a" }`, "250m", "1m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionCreate)},
				},
				Check: resource.TestCheckResourceAttrWith("herd_pod.p", "uid", func(v string) error {
					if v == firstUID {
						return fmt.Errorf("uid did not change")
					}
					return nil
				}),
			},
			// Node labels change in place; a pod spec change replaces the pod;
			// a timeouts change alone updates in place.
			{
				Config: lifecycleConfig(f, ``, "500m", "2m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_node.n", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionReplace),
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckNoResourceAttr("herd_node.n", "labels"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.cpu", "500m"),
					func(*terraform.State) error {
						if l := f.node().GetLabels(); len(l) != 0 {
							return fmt.Errorf("node labels not cleared: %v", l)
						}
						return nil
					},
				),
			},
			{
				Config: lifecycleConfig(f, ``, "500m", "3m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate),
						// Status attributes keep their values: no "known after apply".
						plancheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("uid"), knownvalue.NotNull()),
						plancheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container_status").AtSliceIndex(0).AtMapKey("state"), knownvalue.StringExact("running")),
					},
				},
			},
		},
	})
}

func failingPodConfig(f *fakeAgentd, image, extra string) string {
	return fmt.Sprintf(`
resource "herd_node" "n" {
  name    = %q
  address = %q
}

resource "herd_pod" "p" {
  node = herd_node.n.id
  name = "web"
  %s
  container {
    name  = "side"
    image = "busybox"
  }
  container {
    name  = "app"
    image = %q
  }
}
`, f.name, f.addr, extra, image)
}

// A pod whose container does not start fails the apply with the
// container's name, exit code, reason and last log lines, and is deleted.
func TestPodStartFailuresWithFakeAgentd(t *testing.T) {
	needCLI(t)
	cases := []struct {
		name, image, extra string
		re                 *regexp.Regexp
	}{
		{
			name:  "crash",
			image: "test/crash",
			re: errRe("Pod failed to start", `container "app" terminated with exit code 3 (reason: Error)`,
				`Last 20 log lines of container "app":`, "line 12", "line 30", "boom: config missing",
				"The pod was deleted"),
		},
		{
			name:  "restart while starting",
			image: "test/flaky",
			re: errRe("Pod failed to start", `container "app" exited with code 137 and restarted 1 time(s)`,
				"boom: config missing", "The pod was deleted"),
		},
		{
			name:  "timeout",
			image: "test/hang",
			extra: `timeouts { create = "2s" }`,
			re: errRe("Pod did not start in time", `container "app" was still waiting after 2s (reason: ContainerCreating)`,
				"boom: config missing", "The pod was deleted"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeAgentd(t, "node-a")
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(),
				ErrorCheck: func(err error) error {
					if err == nil {
						return errors.New("expected the apply to fail")
					}
					out := err.Error()
					if !tc.re.MatchString(out) {
						return fmt.Errorf("output does not match %s:\n%s", tc.re, out)
					}
					// Only the last 20 log lines.
					if strings.Contains(out, "line 11") {
						return fmt.Errorf("more than 20 log lines:\n%s", out)
					}
					if n := strings.Count(out, "Error: "); n != 1 {
						return fmt.Errorf("want 1 error, got %d:\n%s", n, out)
					}
					if testing.Verbose() {
						t.Log(out)
					}
					return nil
				},
				Steps: []resource.TestStep{{
					Config: failingPodConfig(f, tc.image, tc.extra),
				}},
			})
			if names := f.podNames(); len(names) > 0 {
				t.Fatalf("pods left behind: %v", names)
			}
		})
	}
}

// An exit-0 container passes when it is not restarted.
func TestPodCompletesWithFakeAgentd(t *testing.T) {
	needCLI(t)
	f := startFakeAgentd(t, "node-a")
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config: fmt.Sprintf(`
resource "herd_pod" "job" {
  node           = %q
  name           = "job"
  restart_policy = "Never"
  container {
    name  = "once"
    image = "test/done"
  }
}
`, f.nodeID()),
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_pod.job", "phase", "Succeeded"),
				resource.TestCheckResourceAttr("herd_pod.job", "container_status.0.last_exit_code", "0"),
			),
		}},
	})
	if !slices.Equal(f.podNames(), nil) {
		t.Fatalf("pods left: %v", f.podNames())
	}
}

// A node that cannot be reached during a refresh warns and keeps its state
// instead of failing the plan; destroying it still succeeds.
func TestNodeUnreachableRefreshKeepsState(t *testing.T) {
	needCLI(t)
	f := startFakeAgentd(t, "node-a")
	config := fmt.Sprintf(`
provider "herd" {
  dial_timeout = "1s"
}

resource "herd_node" "n" {
  name    = %q
  address = %q
}
`, f.name, f.addr)
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{Config: config, Check: resource.TestCheckResourceAttr("herd_node.n", "ready", "true")},
			{
				PreConfig: f.server.Stop,
				Config:    config,
				PlanOnly:  true,
			},
		},
	})
}

// A node that reports another name is refused.
func TestNodeNameMismatchWithFakeAgentd(t *testing.T) {
	needCLI(t)
	f := startFakeAgentd(t, "node-b")
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config: fmt.Sprintf(`
resource "herd_node" "n" {
  name    = "node-a"
  address = %q
}
`, f.addr),
			ExpectError: errRe("Node name mismatch", `reports the node name "node-b", not "node-a"`),
		}},
	})
}
