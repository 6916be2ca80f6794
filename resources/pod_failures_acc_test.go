package resources_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// blackholeRegistry listens on 127.0.0.1 and accepts connections but never
// answers: an image pull from it hangs, so its pod stays waiting in
// ContainerCreating. It returns the registry's host:port.
func blackholeRegistry(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// A pod that does not start fails the apply with what explains it (the
// container, its exit code or reason, its last log lines) and is deleted:
// nothing is left on the node, in agentd or in containerd.
func TestAccPodStartFailures(t *testing.T) {
	t.Parallel()
	hole := blackholeRegistry(t)
	n := startNode(t, "acc-fail", func(o *acctest.AgentOptions) {
		o.InsecureRegistries = append(o.InsecureRegistries, hole)
	})
	cases := []struct {
		name           string
		image, command string
		extra          string
		re             *regexp.Regexp
		notInOutput    string
	}{
		{
			// Exits non-zero at once: exit code, reason and the last 20 of
			// its 31 log lines in the error.
			name:    "exit 3",
			command: `["sh", "-c", "for i in $(seq 1 30); do echo line $i; done; echo boom; exit 3"]`,
			extra:   `restart_policy = "Never"`,
			re: errRe("Pod failed to start", `container "app" terminated with exit code 3 (reason: Error)`,
				`Last 20 log lines of container "app":`, "line 12", "line 30", "boom", "The pod was deleted"),
			notInOutput: "line 11\n",
		},
		{
			// Runs briefly, crashes and is restarted by agentd while the
			// apply waits: the restart (or the crash itself) fails it.
			name:    "crash while starting",
			command: `["sh", "-c", "echo boom; sleep 0.3; exit 2"]`,
			re:      errRe("Pod failed to start", `container "app"`, "code 2", "boom", "The pod was deleted"),
		},
		{
			// A tag the registry does not have: fails fast with the pull
			// error rather than waiting for the create timeout.
			name:    "image not found",
			image:   "%REGISTRY%/herd/busybox:no-such-tag",
			command: `["sleep", "3600"]`,
			re:      errRe("Pod failed to start", `container "app" cannot start (reason: ErrImagePull)`, "no-such-tag", "The pod was deleted"),
		},
		{
			// A registry that never answers: the create timeout ends the
			// wait; the pod (with its pull in flight) is deleted.
			name:    "create timeout",
			image:   hole + "/herd/busybox:1.35",
			command: `["sleep", "3600"]`,
			extra:   `timeouts { create = "3s" }`,
			re: errRe("Pod did not start in time", `container "app" was still waiting after 3s (reason: ContainerCreating)`,
				"The pod was deleted"),
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			image := strings.ReplaceAll(tc.image, "%REGISTRY%", n.env.Registry.Host())
			if image == "" {
				image = n.env.Image
			}
			pod := fmt.Sprintf("fail-%d", i)
			config := n.providerHCL() + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = %q
  name = %q
  termination_grace_period_seconds = 1
  %s
  container {
    name    = "app"
    image   = %q
    command = %s
  }
}
`, n.agent.ID(), pod, tc.extra, image, tc.command)
			start := time.Now()
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(),
				ErrorCheck: func(err error) error {
					if err == nil {
						return errors.New("expected the apply to fail")
					}
					out := err.Error()
					if !tc.re.MatchString(out) {
						return fmt.Errorf("output does not match %s:\n%s", tc.re, out)
					}
					if tc.notInOutput != "" && strings.Contains(out, tc.notInOutput) {
						return fmt.Errorf("output holds %q:\n%s", tc.notInOutput, out)
					}
					if c := strings.Count(out, "Error: "); c != 1 {
						return fmt.Errorf("want 1 error, got %d:\n%s", c, out)
					}
					// (failing fast shows in the reason: a pull error, not
					// the create timeout's message)
					t.Logf("failed after %s", time.Since(start).Round(time.Millisecond))
					if testing.Verbose() {
						t.Log(out)
					}
					return nil
				},
				Steps: []resource.TestStep{{Config: config}},
			})
			if err := n.nothingLeft(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A pod that runs to completion with restart_policy Never succeeds, and a
// pod name taken by another specification is refused.
func TestAccPodCompletesAndNameTaken(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-done")
	t.Run("completes", func(t *testing.T) {
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(),
			CheckDestroy:             n.checkNothingLeft(t),
			Steps: []resource.TestStep{{
				Config: n.providerHCL() + fmt.Sprintf(`
resource "herd_pod" "job" {
  node           = %q
  name           = "job"
  restart_policy = "Never"
  container {
    name    = "once"
    image   = %q
    command = ["sh", "-c", "echo done"]
  }
}
`, n.agent.ID(), n.env.Image),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.job", "phase", "Succeeded"),
					resource.TestCheckResourceAttr("herd_pod.job", "container_status.0.state", "terminated"),
					resource.TestCheckResourceAttr("herd_pod.job", "container_status.0.reason", "Completed"),
					resource.TestCheckResourceAttr("herd_pod.job", "container_status.0.last_exit_code", "0"),
					resource.TestCheckResourceAttr("herd_pod.job", "container_status.0.pid", "0"),
					resource.TestCheckResourceAttr("herd_pod.job", "restart_count", "0"),
					func(*terraform.State) error { return n.waitLogs(t, "job", "once", "done\n") },
				),
			}},
		})
	})

	t.Run("name taken", func(t *testing.T) {
		// A pod "taken" that Terraform does not manage.
		g := int64(0)
		_, err := n.pods.ApplyPod(context.Background(), &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{
			Name:                          "taken",
			TerminationGracePeriodSeconds: &g,
			Containers:                    []*herdv1.ContainerSpec{{Name: "app", Image: n.env.Image, Command: []string{"sleep", "3600"}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		var uid string
		if p, err := n.pods.GetPod(context.Background(), &herdv1.GetPodRequest{Name: "taken"}); err != nil {
			t.Fatal(err)
		} else {
			uid = p.GetUid()
		}
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(),
			Steps: []resource.TestStep{{
				Config: n.providerHCL() + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = %q
  name = "taken"
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "60"]
  }
}
`, n.agent.ID(), n.env.Image),
				ExpectError: errRe("Pod already exists with another specification", `a pod named "taken"`,
					"import it with the id", n.podID("taken")),
			}},
		})
		// The other pod is untouched.
		p, err := n.pods.GetPod(context.Background(), &herdv1.GetPodRequest{Name: "taken"})
		if err != nil || p.GetUid() != uid {
			t.Fatalf("pod taken changed: %v (err %v), want uid %s", p, err, uid)
		}
		if _, err := n.pods.DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: "taken"}); err != nil {
			t.Fatal(err)
		}
		if err := n.nothingLeft(t); err != nil {
			t.Fatal(err)
		}
	})
}
