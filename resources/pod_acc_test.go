package resources_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"k8s.io/apimachinery/pkg/util/wait"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// webPodHCL is a two-container pod: "app" greets with $NAME (from env) and
// sleeps, "side" only sleeps. The explicit empty args of "side" and the
// omitted working_dir/env must survive refreshes and imports as they are
// (and the memory request of "side", which makes the pod Burstable);
// so must the ports of "app" (a named TCP one with the protocol left to
// its default, an unnamed UDP one) and the absence of ports of "side".
// A grace period of 1 s keeps deletions short (sh and sleep as PID 1
// ignore SIGTERM).
func webPodHCL(n *accNode, script, createTimeout string) string {
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "p" {
  node   = herd_node.n.id
  name   = "web"
  labels = { app = "web" }
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %[1]q
    command = ["sh", "-c"]
    args    = [%[2]q]
    env     = { NAME = "herd" }
    memory  = "64Mi"
    cpu     = "250m"
    port {
      name           = "http"
      container_port = 8080
    }
    port {
      container_port = 5353
      protocol       = "UDP"
    }
  }
  container {
    name           = "side"
    image          = %[1]q
    command        = ["sleep", "3600"]
    args           = []
    memory_request = "32Mi"
  }
  timeouts {
    create = %[3]q
  }
}
`, n.env.Image, script, createTimeout)
}

// The life of a pod on a real node: created and running (its output in
// its log, its processes on the host), refreshed without a diff, imported,
// updated in place (timeouts), deleted behind Terraform's back and
// recreated, replaced when its spec changes, destroyed.
func TestAccPodLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-life")
	const hello, bye = "echo hello-$NAME; sleep 3600", "echo bye-$NAME; sleep 3600"
	var uid1, pid1, uid2, pid2, uid3 string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			// 1. Created and running.
			{
				Config: webPodHCL(n, hello, "1m"),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "id", n.agent.ID()),
					resource.TestCheckResourceAttr("herd_pod.p", "id", n.podID("web")),
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_policy", "Always"),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_count", "0"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.#", "2"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.name", "app"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.state", "running"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.restart_count", "0"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container_status.0.last_exit_code"),
					resource.TestCheckResourceAttrSet("herd_pod.p", "container_status.0.started_at"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.1.state", "running"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.1.args.#", "0"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.port.#", "2"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.port.0.name", "http"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.port.0.container_port", "8080"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.port.0.protocol", "TCP"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.0.port.1.name"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.port.1.container_port", "5353"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.port.1.protocol", "UDP"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.1.port.#", "0"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.1.env"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.1.working_dir"),
					resource.TestCheckResourceAttrSet("herd_pod.p", "start_time"),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&uid1)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", record(&pid1)),
					func(s *terraform.State) error {
						pid, err := stateInt(s, "herd_pod.p", "container_status.0.pid")
						if err != nil {
							return err
						}
						if pid <= 1 || !processExists(pid) {
							return fmt.Errorf("container pid %d is not a live host process", pid)
						}
						// What the node reports is what containerd has.
						if err := n.onlyContainers(t, "web", &uid1, "herd-web-app", "herd-web-side"); err != nil {
							return err
						}
						cs, err := n.containers(t, map[string]string{labelPod: "web", "io.herd.container": "app"})
						if err != nil {
							return err
						}
						if len(cs) != 1 || int(cs[0].PID) != pid {
							return fmt.Errorf("containerd's task of web/app: %+v, want pid %d", cs, pid)
						}
						// agentd stored the ports, the protocol defaulted.
						if err := n.checkPorts(t, "web", "app", []*herdv1.ContainerPort{
							{Name: "http", ContainerPort: 8080, Protocol: "TCP"},
							{ContainerPort: 5353, Protocol: "UDP"},
						}); err != nil {
							return err
						}
						if err := n.checkPorts(t, "web", "side", nil); err != nil {
							return err
						}
						// The container really ran the command, with its env.
						return n.waitLogs(t, "web", "app", "hello-herd\n")
					},
				),
				// The refresh after apply finds nothing to change.
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container_status").AtSliceIndex(0).AtMapKey("state"), knownvalue.StringExact("running")),
					statecheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container").AtSliceIndex(1).AtMapKey("args"), knownvalue.ListExact([]knownvalue.Check{})),
					statecheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container").AtSliceIndex(1).AtMapKey("working_dir"), knownvalue.Null()),
					statecheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container").AtSliceIndex(0).AtMapKey("port"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"name": knownvalue.StringExact("http"), "container_port": knownvalue.Int64Exact(8080), "protocol": knownvalue.StringExact("TCP"),
						}),
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"name": knownvalue.Null(), "container_port": knownvalue.Int64Exact(5353), "protocol": knownvalue.StringExact("UDP"),
						}),
					})),
					statecheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container").AtSliceIndex(1).AtMapKey("port"), knownvalue.ListExact([]knownvalue.Check{})),
					// agentd runs these pods without a pod network.
					statecheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("pod_ip"), knownvalue.StringExact("")),
				},
			},
			// 2. A plan against the running pod is empty.
			{
				Config:   webPodHCL(n, hello, "1m"),
				PlanOnly: true,
			},
			// 3. Import NODEID/NAME reproduces the state; so does importing
			// the node by NAME@ADDRESS.
			{
				ResourceName:            "herd_pod.p",
				ImportState:             true,
				ImportStateId:           n.podID("web"),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			// The same pod through the node's unix socket: the id's
			// address holds '/', the pod name follows the last one.
			{
				ResourceName:  "herd_pod.p",
				ImportState:   true,
				ImportStateId: n.agent.Name + "@unix://" + n.agent.Socket + "/web",
				ImportStateCheck: func(is []*terraform.InstanceState) error {
					if len(is) != 1 {
						return fmt.Errorf("imported %d instances", len(is))
					}
					a := is[0].Attributes
					want := map[string]string{
						"id":                               n.agent.Name + "@unix://" + n.agent.Socket + "/web",
						"node":                             n.agent.Name + "@unix://" + n.agent.Socket,
						"name":                             "web",
						"uid":                              uid1,
						"container.#":                      "2",
						"container.0.args.0":               hello,
						"container.0.env.NAME":             "herd",
						"container.0.memory":               "64Mi",
						"container.0.port.#":               "2",
						"container.0.port.0.name":          "http",
						"container.0.port.1.protocol":      "UDP",
						"container.1.port.#":               "0",
						"container.1.memory_request":       "32Mi",
						"qos_class":                        "Burstable",
						"container_status.0.pid":           pid1,
						"termination_grace_period_seconds": "1",
					}
					for k, v := range want {
						if a[k] != v {
							return fmt.Errorf("imported %s = %q, want %q", k, a[k], v)
						}
					}
					return nil
				},
			},
			{
				ResourceName:      "herd_node.n",
				ImportState:       true,
				ImportStateId:     n.agent.ID(),
				ImportStateVerify: true,
			},
			// 4. Only timeouts changed: an in-place update that keeps the
			// pod (same uid, same process) and knows every status value.
			{
				Config: webPodHCL(n, hello, "2m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("uid"), knownvalue.NotNull()),
						plancheck.ExpectKnownValue("herd_pod.p", tfjsonpath.New("container_status").AtSliceIndex(0).AtMapKey("state"), knownvalue.StringExact("running")),
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", equals(&uid1)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", equals(&pid1)),
				),
			},
			// 5. Deleted behind Terraform's back (DeletePod over gRPC): the
			// next plan creates it again, the apply recreates it.
			{
				PreConfig: func() {
					resp, err := n.pods.DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: "web"})
					if err != nil || !resp.GetExisted() {
						t.Fatalf("DeletePod: %v, existed=%v", err, resp.GetExisted())
					}
				},
				Config: webPodHCL(n, hello, "2m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionCreate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", differs(&uid1)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&uid2)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", differs(&pid1)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", record(&pid2)),
					func(*terraform.State) error {
						return n.onlyContainers(t, "web", &uid2, "herd-web-app", "herd-web-side")
					},
				),
			},
			// 6. A spec change replaces the pod: a new incarnation runs the
			// new args, the old containers are gone from containerd.
			{
				Config: webPodHCL(n, bye, "2m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionReplace)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", differs(&uid2)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&uid3)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", differs(&pid2)),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_count", "0"),
					func(*terraform.State) error {
						if err := n.onlyContainers(t, "web", &uid3, "herd-web-app", "herd-web-side"); err != nil {
							return err
						}
						if old, err := n.containers(t, map[string]string{labelPodUID: uid2}); err != nil || len(old) > 0 {
							return fmt.Errorf("containers of the replaced pod left: %+v (err %v)", old, err)
						}
						if err := n.waitLogs(t, "web", "app", "bye-herd\n"); err != nil {
							return err
						}
						// A new incarnation has a new log.
						if l, _ := n.logs(t, "web", "app"); strings.Contains(l, "hello") {
							return fmt.Errorf("log of the new pod holds the old pod's output:\n%s", l)
						}
						return nil
					},
				),
			},
			// 7. Every attribute of the spec forces a replacement, and the
			// plan says which ones (replace_paths). Plan only: the "node"
			// changed to one that does not exist.
			{
				Config:             webPodAllChangedHCL(n),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionReplace),
						expectReplacePaths("herd_pod.p", "node", "name", "labels", "restart_policy",
							"termination_grace_period_seconds", "container", "container.0.name", "container.0.image",
							"container.0.command", "container.0.args", "container.0.env", "container.0.working_dir",
							"container.0.cpu", "container.0.memory", "container.0.port",
							"container.0.port.0.name", "container.0.port.0.container_port", "container.0.port.0.protocol"),
					},
				},
			},
		},
	})
}

// webPodAllChangedHCL is webPodHCL with every spec attribute changed.
func webPodAllChangedHCL(n *accNode) string {
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "p" {
  node           = "%s-other@127.0.0.1:1"
  name           = "web2"
  labels         = { app = "web2" }
  restart_policy = "OnFailure"
  termination_grace_period_seconds = 2
  container {
    name        = "app2"
    image       = "%s-other"
    command     = ["sh", "-e", "-c"]
    args        = ["true"]
    env         = { NAME = "other" }
    working_dir = "/tmp"
    memory      = "65Mi"
    cpu         = "251m"
    port {
      name           = "http2"
      container_port = 8081
      protocol       = "UDP"
    }
  }
  timeouts {
    create = "2m"
  }
}
`, n.agent.Name, n.env.Image)
}

// expectReplacePaths checks that a resource's planned change lists (at
// least) these paths among its replace_paths.
func expectReplacePaths(addr string, want ...string) plancheck.PlanCheck {
	return replacePathsCheck{addr, want}
}

type replacePathsCheck struct {
	addr string
	want []string
}

func (c replacePathsCheck) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Address != c.addr {
			continue
		}
		got := map[string]bool{}
		for _, p := range rc.Change.ReplacePaths {
			steps, _ := p.([]any)
			var parts []string
			for _, s := range steps {
				parts = append(parts, fmt.Sprint(s))
			}
			got[strings.Join(parts, ".")] = true
		}
		var missing []string
		for _, w := range c.want {
			if !got[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) > 0 {
			resp.Error = fmt.Errorf("%s: replace_paths %v lack %v", c.addr, rc.Change.ReplacePaths, missing)
		}
		return
	}
	resp.Error = fmt.Errorf("%s: no planned change", c.addr)
}

// A container that crashes after a while is restarted by agentd, with
// back-off, between applies; a refresh shows it.
func TestAccPodCrashRestartedWithBackoff(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-crash", func(o *acctest.AgentOptions) { o.BackoffBase = time.Second })
	config := n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = herd_node.n.id
  name = "crash"
  termination_grace_period_seconds = 0
  container {
    name    = "app"
    image   = %q
    command = ["sh", "-c", "echo run; sleep 3; exit 3"]
  }
}
`, n.env.Image)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			// It runs for more than a second: the apply succeeds.
			{
				Config: config,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_count", "0"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container_status.0.last_exit_code"),
				),
			},
			// agentd restarts it after it exits with 3: at once the first
			// time, after the back-off (CrashLoopBackOff) the second time. A
			// refresh then records the restarts and the exit code.
			{
				PreConfig:    func() { waitBackoffRestart(t, n, "crash", time.Second) },
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "restart_count", atLeast(2)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.restart_count", atLeast(2)),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.last_exit_code", "3"),
					func(*terraform.State) error {
						// Each run logged; the log spans the restarts.
						l, err := n.logs(t, "crash", "app")
						if err != nil {
							return err
						}
						if c := strings.Count(l, "run\n"); c < 3 {
							return fmt.Errorf("want at least 3 runs in the log, got %d:\n%s", c, l)
						}
						return nil
					},
				),
			},
		},
	})
}

// agentd killed with SIGKILL and restarted: the container keeps running
// meanwhile, the new agentd re-adopts it (same process, no restart) and
// the plan is empty.
func TestAccAgentdKilledContainerSurvives(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-kill")
	config := n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = herd_node.n.id
  name = "survivor"
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "3600"]
  }
}
`, n.env.Image)
	var pid, uid string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", record(&pid)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&uid)),
				),
			},
			{
				PreConfig: func() {
					p, _ := strconv.Atoi(pid)
					if !processExists(p) {
						t.Fatalf("container pid %s is not alive before the kill", pid)
					}
					agentdPID := n.agent.PID()
					n.agent.Kill()
					if processExists(agentdPID) {
						t.Fatalf("agentd (pid %d) still alive after SIGKILL", agentdPID)
					}
					// Nothing supervises the container now; it runs on.
					time.Sleep(500 * time.Millisecond)
					if !processExists(p) {
						t.Fatalf("container pid %d died with agentd", p)
					}
					if err := n.agent.Restart(context.Background()); err != nil {
						t.Fatal(err)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", equals(&pid)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", equals(&uid)),
					resource.TestCheckResourceAttr("herd_pod.p", "restart_count", "0"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.restart_count", "0"),
					func(*terraform.State) error {
						return n.onlyContainers(t, "survivor", &uid, "herd-survivor-app")
					},
				),
			},
		},
	})
}

// waitBackoffRestart waits until the first container of a pod has been
// restarted twice, and checks that the second restart came after a
// CrashLoopBackOff wait of at least backoff.
func waitBackoffRestart(t *testing.T, n *accNode, pod string, backoff time.Duration) {
	t.Helper()
	var waitingSince, nextRestart time.Time
	// The checks compare the times agentd reports, not how long this
	// waited; 50ms polls only make sure the back-off wait is seen.
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 40*time.Second, true, func(c context.Context) (bool, error) {
		p, err := n.pods.GetPod(c, &herdv1.GetPodRequest{Name: pod})
		if err != nil {
			return false, err
		}
		cs := p.GetStatus().GetContainers()[0]
		switch {
		case cs.GetState() == "waiting" && cs.GetReason() == "CrashLoopBackOff" && waitingSince.IsZero():
			if cs.GetLastExitCode() != 3 || cs.NextRestartAt == nil || cs.FinishedAt == nil {
				t.Fatalf("in back-off without exit code 3, finish and next restart times: %v", cs)
			}
			waitingSince, nextRestart = time.Now(), cs.GetNextRestartAt().AsTime()
			if d := nextRestart.Sub(cs.GetFinishedAt().AsTime()); d < backoff-10*time.Millisecond {
				t.Fatalf("back-off of %s after the second exit, want %s", d, backoff)
			}
		case cs.GetRestartCount() >= 2 && cs.GetState() == "running":
			if waitingSince.IsZero() {
				t.Fatalf("restarted twice without a CrashLoopBackOff wait being seen: %v", cs)
			}
			started := cs.GetStartedAt().AsTime()
			if started.Before(nextRestart.Add(-50 * time.Millisecond)) {
				t.Fatalf("restarted at %s, before the back-off ended at %s", started, nextRestart)
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod %s: no second restart after back-off within 40s (%v); agentd log:\n%s", pod, err, n.agent.LogTail(30))
	}
}

// Deleting a pod stops its containers with SIGTERM and waits for them up
// to termination_grace_period_seconds, then SIGKILLs them: a container
// that exits on SIGTERM goes at once, one that ignores it (sleep as PID 1
// has no handler) only after the grace period. timeouts.delete bounds how
// long the provider waits; agentd finishes the deletion anyway.
func TestAccPodDeleteGracePeriod(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-grace")
	// Long grace periods, so that a slow machine cannot pass them by:
	// "at once" is then anything well short of them.
	const politeGrace, stubbornGrace = 600, 20
	pod := func(name, script string, grace int, extra string) string {
		return fmt.Sprintf(`
resource "herd_pod" %[1]q {
  node = herd_node.n.id
  name = %[1]q
  termination_grace_period_seconds = %[3]d
  container {
    name    = "app"
    image   = %[4]q
    command = ["sh", "-c", %[2]q]
  }
  %[5]s
}
`, name, script, grace, n.env.Image, extra)
	}
	base := n.providerHCL() + n.nodeHCL("")
	polite := pod("polite", "trap 'echo bye; exit 0' TERM; sleep 3600 & wait", politeGrace, "")
	stubborn := pod("stubborn", "exec sleep 3600", stubbornGrace, "")
	stubbornImpatient := pod("stubborn", "exec sleep 3600", stubbornGrace, `timeouts { delete = "2s" }`)
	var started time.Time
	var pid string
	since := func(check func(time.Duration) error) resource.TestCheckFunc {
		return func(*terraform.State) error { return check(time.Since(started)) }
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: base + polite + stubborn,
				Check:  resource.TestCheckResourceAttrWith("herd_pod.stubborn", "container_status.0.pid", record(&pid)),
			},
			// The polite one is gone well within its 600 s.
			{
				PreConfig: func() { started = time.Now() },
				Config:    base + stubborn,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.polite", plancheck.ResourceActionDestroy)},
				},
				Check: since(func(d time.Duration) error {
					if d >= politeGrace*time.Second/2 {
						return fmt.Errorf("deleting a pod that exits on SIGTERM took %s", d)
					}
					t.Logf("a pod that exits on SIGTERM deleted in %s", d)
					return nil
				}),
			},
			// Timeouts change in place.
			{
				Config: base + stubbornImpatient,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.stubborn", plancheck.ResourceActionUpdate)},
				},
			},
			// The provider gives up after timeouts.delete...
			{
				PreConfig:   func() { started = time.Now() },
				Config:      base,
				ExpectError: errRe(`Timed out: delete pod "stubborn" within 2s`),
			},
			// ...while agentd SIGKILLs the container once the grace period
			// is over, and removes the pod; the refresh forgets it.
			{
				PreConfig: func() {
					if d := time.Since(started); d >= stubbornGrace*time.Second {
						t.Fatalf("the provider waited %s for the delete, beyond timeouts.delete", d)
					}
					p, _ := strconv.Atoi(pid)
					if !processExists(p) {
						t.Fatalf("container process %d gone %s after SIGTERM, before its grace period of %ds", p, time.Since(started), stubbornGrace)
					}
					// Timing out leaves the process there: the check below fails.
					_ = wait.PollUntilContextTimeout(ctx(t), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
						return !processExists(p), nil
					})
					if d := time.Since(started); d < stubbornGrace*time.Second {
						t.Fatalf("a container that ignores SIGTERM was killed after %s, before its grace period of %ds", d, stubbornGrace)
					}
					if err := n.waitPodGone(t, "stubborn", 30*time.Second); err != nil {
						t.Fatal(err)
					}
				},
				Config: base,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: func(*terraform.State) error { return n.nothingLeft(t) },
			},
		},
	})
}

// checkPorts checks, over gRPC, the ports agentd stored for a container.
func (n *accNode) checkPorts(t *testing.T, pod, container string, want []*herdv1.ContainerPort) error {
	t.Helper()
	p, err := n.pods.GetPod(context.Background(), &herdv1.GetPodRequest{Name: pod})
	if err != nil {
		return fmt.Errorf("GetPod %s: %w", pod, err)
	}
	for _, c := range p.GetSpec().GetContainers() {
		if c.GetName() != container {
			continue
		}
		got := c.GetPorts()
		ok := len(got) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = proto.Equal(got[i], want[i])
		}
		if !ok {
			return fmt.Errorf("agentd's ports of %s/%s: %v, want %v", pod, container, got, want)
		}
		return nil
	}
	return fmt.Errorf("agentd's pod %s has no container %q", pod, container)
}
