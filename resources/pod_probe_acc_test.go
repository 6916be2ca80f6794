package resources_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// probePodHCL is a pod whose container "app" runs script and is ready
// when /tmp/ready exists (checked every second).
func probePodHCL(n *accNode, name, script, createTimeout string) string {
	return n.providerHCL() + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = %q
  name = %q
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %q
    command = ["sh", "-c", %q]
    readiness_probe {
      exec {
        command = ["test", "-f", "/tmp/ready"]
      }
      period_seconds    = 1
      failure_threshold = 1
    }
  }
  timeouts {
    create = %q
  }
}
`, n.agent.ID(), name, n.env.Image, script, createTimeout)
}

// A pod with a readiness probe is created once it is ready: apply waits
// for the probe (here passing after a couple of seconds) and the state
// says ready; likewise for a startup probe. One whose probe never passes fails the apply when the
// create timeout ends, saying so, and is deleted.
func TestAccPodReadinessProbe(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-ready")

	t.Run("never ready", func(t *testing.T) {
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(),
			ErrorCheck: func(err error) error {
				if err == nil {
					return errors.New("expected the apply to fail")
				}
				re := errRe("Pod did not start in time", `container "app" runs, but its readiness probe did not pass within 6s`,
					`Readiness probe failed: command ["test" "-f" "/tmp/ready"] exited with code 1`, "The pod was deleted")
				if !re.MatchString(err.Error()) {
					return fmt.Errorf("output does not match %s:\n%s", re, err)
				}
				return nil
			},
			Steps: []resource.TestStep{{Config: probePodHCL(n, "never-ready", "exec sleep 3600", "6s")}},
		})
		if err := n.nothingLeft(t); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("startup", func(t *testing.T) {
		// Only a startup probe, passing after a couple of seconds: apply
		// waits for it, so the state says started and ready (a container
		// without a readiness probe is ready once started).
		config := strings.NewReplacer("readiness_probe", "startup_probe", "/tmp/ready", "/tmp/started",
			"failure_threshold = 1", "failure_threshold = 30").Replace(
			probePodHCL(n, "startup", "sleep 2; touch /tmp/started; exec sleep 3600", "2m"))
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(),
			CheckDestroy:             n.checkNothingLeft(t),
			Steps: []resource.TestStep{{
				Config: config,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "ready", "true"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.ready", "true"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.startup_probe.failure_threshold", "30"),
				),
			}},
		})
	})

	t.Run("ready", func(t *testing.T) {
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(),
			CheckDestroy:             n.checkNothingLeft(t),
			Steps: []resource.TestStep{{
				// Ready only after a while: an apply that did not wait
				// would record ready = false.
				Config: probePodHCL(n, "ready", "sleep 2; touch /tmp/ready; exec sleep 3600", "2m"),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "ready", "true"),
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.ready", "true"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.readiness_probe.exec.command.#", "3"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.readiness_probe.period_seconds", "1"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.0.readiness_probe.timeout_seconds"),
					func(*terraform.State) error {
						pod, err := n.pods.GetPod(ctx(t), &herdv1.GetPodRequest{Name: "ready"})
						if err != nil {
							return err
						}
						if !pod.GetStatus().GetReady() || pod.GetSpec().GetContainers()[0].GetReadinessProbe() == nil {
							return fmt.Errorf("node reports ready=%v, probe %v", pod.GetStatus().GetReady(), pod.GetSpec().GetContainers()[0].GetReadinessProbe())
						}
						return nil
					},
				),
			}, {
				// Refreshed and planned again: no diff from the probe block.
				Config:   probePodHCL(n, "ready", "sleep 2; touch /tmp/ready; exec sleep 3600", "2m"),
				PlanOnly: true,
			}, {
				ResourceName:            "herd_pod.p",
				ImportState:             true,
				ImportStateId:           n.podID("ready"),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts", "container_status", "restart_count"},
			}, {
				// A probe change replaces the pod.
				Config: strings.Replace(probePodHCL(n, "ready", "sleep 2; touch /tmp/ready; exec sleep 3600", "2m"),
					"failure_threshold = 1", "failure_threshold = 2", 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionDestroyBeforeCreate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.readiness_probe.failure_threshold", "2"),
					resource.TestCheckResourceAttr("herd_pod.p", "ready", "true"),
				),
			}},
		})
	})
}
