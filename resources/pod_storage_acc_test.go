package resources_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// storageNode is a node with a volume directory of its own (see
// startVolumeNode) and that directory, where volume uid's files are
// <dir>/<uid>/mnt on the host.
type storageNode struct {
	*accNode
	volumes   herdv1.VolumeServiceClient
	volumeDir string
}

func startStorageNode(t *testing.T, name string) *storageNode {
	t.Helper()
	dir := t.TempDir()
	n := startNode(t, name, func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--volume-dir", dir)
	})
	vc := herdv1.NewVolumeServiceClient(n.conn)
	needVolumeService(t, vc)
	t.Cleanup(func() { removeVolumes(t, vc) })
	// Runs first: pods a failed test left would keep their volumes.
	t.Cleanup(func() {
		list, err := n.pods.ListPods(context.Background(), &herdv1.ListPodsRequest{})
		if err != nil {
			t.Errorf("cleanup: list pods: %v", err)
			return
		}
		var names []string
		for _, p := range list.GetPods() {
			names = append(names, p.GetSpec().GetName())
		}
		deletePods(t, n, names...)
	})
	return &storageNode{accNode: n, volumes: vc, volumeDir: dir}
}

// storageCounterScript keeps a counter in /data/n, appending each value
// to /data/log, and carries on from what it finds.
const storageCounterScript = `trap 'exit 0' TERM; n=$(cat /data/n 2>/dev/null || echo 0); ` +
	`while :; do n=$((n+1)); echo $n > /data/n.tmp; sync /data/n.tmp; mv /data/n.tmp /data/n; echo $n >> /data/log; sleep 0.2; done`

// counterLog reads the counter's log in the volume on the host: every
// value, in order.
func counterLog(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // not written yet
	}
	if err != nil {
		return nil, fmt.Errorf("read the counter's log: %w", err)
	}
	var out []int
	for _, l := range strings.Fields(string(b)) {
		v, err := strconv.Atoi(l)
		if err != nil {
			return nil, fmt.Errorf("counter log line %q", l)
		}
		out = append(out, v)
	}
	return out, nil
}

// counterPasses waits until the counter in the log of the state's volume
// is past *last (then moves *last there), and checks that it never went
// back: every value is larger than the one before it.
func (n *storageNode) counterPasses(last *int, what string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		uid, err := stateAttr(s, "herd_volume.v", "uid")
		if err != nil {
			return err
		}
		log := filepath.Join(n.volumeDir, uid, "mnt", "log")
		var vals []int
		var readErr error
		err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			vals, readErr = counterLog(log)
			if readErr != nil {
				return false, readErr
			}
			for i := 1; i < len(vals); i++ {
				if vals[i] <= vals[i-1] {
					return false, fmt.Errorf("%s: the counter went back from %d to %d", what, vals[i-1], vals[i])
				}
			}
			return len(vals) > 0 && vals[len(vals)-1] > *last+2, nil
		})
		if readErr != nil {
			return readErr
		}
		if err != nil {
			return fmt.Errorf("%s: the counter did not pass %d (at %v): %w", what, *last, vals[max(0, len(vals)-3):], err)
		}
		*last = vals[len(vals)-1]
		return nil
	}
}

// counterHCL is herd_volume.v and herd_pod.p, whose container keeps its
// counter in the volume; image is the container's image.
func (n *storageNode) counterHCL(image string) string {
	return n.counterHCLWith(image, "herd_volume.v.id", "one")
}

// counterHCLWith is counterHCL with the volume_mount's volume given as
// the HCL expression volume (the pod depends on the volume either way),
// and conf the content of its config file /etc/counter/conf.
func (n *storageNode) counterHCLWith(image, volume, conf string) string {
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_volume" "v" {
  node                = herd_node.n.id
  name                = "data"
  size                = "16Mi"
  deletion_protection = false
}

resource "herd_pod" "p" {
  node = herd_node.n.id
  name = "counter"
  termination_grace_period_seconds = 5
  container {
    name    = "app"
    image   = %q
    command = ["sh", "-c", %q]
    volume_mount {
      volume = %s
      path   = "/data"
    }
    config_file {
      path    = "/etc/counter/conf"
      content = %q
    }
  }
  depends_on = [herd_volume.v]
}
`, image, storageCounterScript, volume, conf)
}

// The headline through Terraform: a counter kept in a herd_volume by a
// herd_pod never goes back while three image changes replace the pod
// (each a new uid); the volume itself is neither replaced nor changed, and
// a refresh shows no diff.
func TestAccPodVolumeDataSurvivesReplacements(t *testing.T) {
	t.Parallel()
	n := startStorageNode(t, "store-survive")
	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	images := []string{n.env.Image}
	for i := range 3 {
		ref, err := n.env.Registry.Push(context.Background(), acctest.ImageRepo, fmt.Sprintf("store-%d", i), img)
		if err != nil {
			t.Fatalf("push the busybox image under another tag: %v", err)
		}
		images = append(images, ref)
	}
	var last int
	var volUID, podUID string
	steps := []resource.TestStep{{
		Config: n.counterHCL(images[0]),
		Check: resource.ComposeAggregateTestCheckFunc(
			resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
			resource.TestCheckResourceAttr("herd_pod.p", "container.0.volume_mount.0.volume", n.agent.ID()+"/default/data"),
			resource.TestCheckResourceAttrWith("herd_volume.v", "uid", record(&volUID)),
			resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&podUID)),
			n.counterPasses(&last, "first pod"),
		),
		ConfigPlanChecks: resource.ConfigPlanChecks{
			PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
		},
	}}
	for i, image := range images[1:] {
		what := fmt.Sprintf("replacement %d (%s)", i+1, image)
		steps = append(steps, resource.TestStep{
			Config: n.counterHCL(image),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionNoop),
				},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
				resource.TestCheckResourceAttr("herd_pod.p", "container.0.image", image),
				resource.TestCheckResourceAttrWith("herd_pod.p", "uid", differs(&podUID)),
				resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&podUID)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", equals(&volUID)),
				n.counterPasses(&last, what),
			),
		})
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps:                    steps,
	})
}

// containerFile checks a file as the state's container idx sees it,
// through its process's root on the host: its content and mode.
func containerFile(res string, idx int, path, content string, mode fs.FileMode) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		pid, err := stateInt(s, res, fmt.Sprintf("container_status.%d.pid", idx))
		if err != nil {
			return err
		}
		p := fmt.Sprintf("/proc/%d/root%s", pid, path)
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s in the container: %w", path, err)
		}
		if string(b) != content {
			return fmt.Errorf("%s in the container holds %q, want %q", path, b, content)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != mode {
			return fmt.Errorf("%s in the container has mode %#o, want %#o", path, fi.Mode().Perm(), mode)
		}
		return nil
	}
}

// sameRun checks with GetPod that the node's pod is still incarnation
// *uid and its container still the run that started at *startedAt, with
// process *pid, never restarted.
func (n *accNode) sameRun(pod string, uid, startedAt, pid *string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		p, err := n.pods.GetPod(context.Background(), &herdv1.GetPodRequest{Name: pod})
		if err != nil {
			return fmt.Errorf("GetPod %s: %w", pod, err)
		}
		cs := p.GetStatus().GetContainers()
		if len(cs) != 1 {
			return fmt.Errorf("pod %s has %d container statuses, want 1", pod, len(cs))
		}
		c := cs[0]
		switch {
		case p.GetUid() != *uid:
			return fmt.Errorf("pod %s is uid %s now, want %s", pod, p.GetUid(), *uid)
		case c.GetStartedAt().AsTime().UTC().Format(time.RFC3339) != *startedAt && c.GetStartedAt().AsTime().UTC().Format(time.RFC3339Nano) != *startedAt:
			return fmt.Errorf("container started at %s, want the run of %s", c.GetStartedAt().AsTime().Format(time.RFC3339Nano), *startedAt)
		case strconv.Itoa(int(c.GetPid())) != *pid:
			return fmt.Errorf("container process %d, want %s", c.GetPid(), *pid)
		case c.GetRestartCount() != 0:
			return fmt.Errorf("container restarted %d times, want 0", c.GetRestartCount())
		}
		return nil
	}
}

// configPodHCL is herd_pod.p with one config file.
func configPodHCL(n *accNode, path, content, mode string) string {
	modeLine := ""
	if mode != "" {
		modeLine = fmt.Sprintf("mode = %q", mode)
	}
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = herd_node.n.id
  name = "conf"
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %q
    command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    config_file {
      path    = %q
      content = %q
      %s
    }
  }
}
`, n.env.Image, path, content, modeLine)
}

// A config file's content and mode change in place: the plan is an
// update, the pod keeps its uid and its container its run (same start,
// process, no restart), and the container reads the new file. Moving the
// file replaces the pod.
func TestAccPodConfigFileInPlace(t *testing.T) {
	t.Parallel()
	n := startNode(t, "store-config")
	var uid, startedAt, pid string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: configPodHCL(n, "/etc/app/app.conf", "level = info\n", ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.0.config_file.0.mode"),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&uid)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.started_at", record(&startedAt)),
					resource.TestCheckResourceAttrWith("herd_pod.p", "container_status.0.pid", record(&pid)),
					containerFile("herd_pod.p", 0, "/etc/app/app.conf", "level = info\n", 0o644),
				),
			},
			// New content and mode: in place.
			{
				Config: configPodHCL(n, "/etc/app/app.conf", "level = debug\n", "0640"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.config_file.0.content", "level = debug\n"),
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.config_file.0.mode", "0640"),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", equals(&uid)),
					resource.TestCheckResourceAttr("herd_pod.p", "container_status.0.restart_count", "0"),
					n.sameRun("conf", &uid, &startedAt, &pid),
					containerFile("herd_pod.p", 0, "/etc/app/app.conf", "level = debug\n", 0o640),
				),
			},
			// The same content again, the mode back to its default: in
			// place too.
			{
				Config: configPodHCL(n, "/etc/app/app.conf", "level = debug\n", ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckNoResourceAttr("herd_pod.p", "container.0.config_file.0.mode"),
					n.sameRun("conf", &uid, &startedAt, &pid),
					containerFile("herd_pod.p", 0, "/etc/app/app.conf", "level = debug\n", 0o644),
				),
			},
			// Another path: a new pod.
			{
				Config: configPodHCL(n, "/etc/app/other.conf", "level = debug\n", ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionDestroyBeforeCreate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", differs(&uid)),
					containerFile("herd_pod.p", 0, "/etc/app/other.conf", "level = debug\n", 0o644),
				),
			},
		},
	})
}

// Two containers share the pod's empty_dirs: "writer" writes to a disk
// one (size-limited) and a memory one, "reader" prints what it finds.
func TestAccPodEmptyDirShared(t *testing.T) {
	t.Parallel()
	n := startNode(t, "store-empty")
	config := n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "p" {
  node = herd_node.n.id
  name = "shared"
  termination_grace_period_seconds = 1
  empty_dir {
    name = "scratch"
  }
  empty_dir {
    name       = "fast"
    medium     = "memory"
    size_limit = "8Mi"
  }
  container {
    name    = "writer"
    image   = %[1]q
    command = ["sh", "-c", "echo disk-from-writer > /out/msg; echo memory-from-writer > /fast/msg; trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    volume_mount {
      empty_dir = "scratch"
      path      = "/out"
    }
    volume_mount {
      empty_dir = "fast"
      path      = "/fast"
    }
  }
  container {
    name    = "reader"
    image   = %[1]q
    command = ["sh", "-c", "trap 'exit 0' TERM; while :; do echo \"read $(cat /in/msg 2>/dev/null) $(cat /fast/msg 2>/dev/null) on $(stat -f -c %%T /fast)\"; sleep 0.2; done"]
    volume_mount {
      empty_dir = "scratch"
      path      = "/in"
    }
    volume_mount {
      empty_dir = "fast"
      path      = "/fast"
    }
  }
}
`, n.env.Image)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{{
			Config: config,
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
				resource.TestCheckResourceAttr("herd_pod.p", "empty_dir.#", "2"),
				resource.TestCheckResourceAttr("herd_pod.p", "empty_dir.0.medium", "disk"),
				resource.TestCheckNoResourceAttr("herd_pod.p", "empty_dir.0.size_limit"),
				resource.TestCheckResourceAttr("herd_pod.p", "empty_dir.1.medium", "memory"),
				resource.TestCheckResourceAttr("herd_pod.p", "empty_dir.1.size_limit", "8Mi"),
				func(*terraform.State) error {
					return n.waitLogs(t, "shared", "reader", "read disk-from-writer memory-from-writer on tmpfs")
				},
			),
		}},
	})
}

// Storage mistakes are refused at plan, at the attribute, without a node.
func TestPodPlanRefusesBadStorage(t *testing.T) {
	container := func(body string) string {
		return podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
` + body + `
  }`)
	}
	cases := []planErrorCase{
		{
			name: "volume mount in /proc",
			config: container(`    volume_mount {
      volume = "data"
      path   = "/proc/data"
    }`),
			re:     errRe(`path   = "/proc/data"`, `container[0].volume_mount[0].path:`, `must not be in /proc, got "/proc/data"`),
			errors: 1,
		},
		{
			name: "volume mount inside another",
			config: container(`    volume_mount {
      volume = "data"
      path   = "/data"
    }
    volume_mount {
      volume = "logs"
      path   = "/data/logs"
    }`),
			re:     errRe(`path   = "/data/logs"`, `container[0].volume_mount[1].path:`, `/data/logs is inside /data, the path of volume_mount[0]`),
			errors: 1,
		},
		{
			name: "config file inside a volume mount",
			config: container(`    volume_mount {
      volume = "data"
      path   = "/data"
    }
    config_file {
      path    = "/data/app.conf"
      content = "x"
    }`),
			re:     errRe(`container[0]`, `/data is also the path of`),
			errors: 1,
		},
		{
			name: "sub_path leaving the volume",
			config: container(`    volume_mount {
      volume   = "data"
      path     = "/data"
      sub_path = "../x"
    }`),
			re:     errRe(`sub_path = "../x"`, `container[0].volume_mount[0].sub_path:`, `must not leave the volume (no ".."), got "../x"`),
			errors: 1,
		},
		{
			name: "volume of another node",
			config: container(`    volume_mount {
      volume = "other@127.0.0.1:1/default/data"
      path   = "/data"
    }`),
			re: errRe(`volume = "other@127.0.0.1:1/default/data"`, `container[0].volume_mount[0].volume:`,
				`volume other@127.0.0.1:1/default/data is on node other@127.0.0.1:1, and this pod runs on `+testNodeID),
			errors: 1,
		},
		{
			name: "volume of another namespace",
			config: container(`    volume_mount {
      volume = "` + testNodeID + `/team-b/data"
      path   = "/data"
    }`),
			re:     errRe(`container[0].volume_mount[0].volume:`, `is in namespace team-b: a pod in namespace default mounts only volumes of its own namespace`),
			errors: 1,
		},
		{
			name: "volume and empty_dir",
			config: podConfig(`  name = "web"
  empty_dir {
    name = "scratch"
  }
  container {
    name  = "app"
    image = "busybox"
    volume_mount {
      volume    = "data"
      empty_dir = "scratch"
      path      = "/data"
    }
  }`),
			re:     errRe(`container[0].volume_mount[0]:`, `only one of volume and empty_dir may be set`),
			errors: 1,
		},
		{
			name: "unknown empty_dir",
			config: container(`    volume_mount {
      empty_dir = "scratch"
      path      = "/scratch"
    }`),
			re:     errRe(`empty_dir = "scratch"`, `container[0].volume_mount[0].empty_dir:`, `the pod has no empty_dir "scratch"`),
			errors: 1,
		},
		{
			name: "memory empty_dir without size_limit",
			config: podConfig(`  name = "web"
  empty_dir {
    name   = "fast"
    medium = "memory"
  }`),
			re:     errRe(`empty_dir[0].size_limit:`, `is required for a memory empty_dir (the size of its tmpfs)`),
			errors: 1,
		},
		{
			name: "config file in /",
			config: container(`    config_file {
      path    = "/app.conf"
      content = "x"
    }`),
			re:     errRe(`path    = "/app.conf"`, `container[0].config_file[0].path:`, `must be in a directory of its own, not in /`),
			errors: 1,
		},
		{
			name: "config file mode with setuid",
			config: container(`    config_file {
      path    = "/etc/app/app.conf"
      content = "x"
      mode    = "4755"
    }`),
			re:     errRe(`container[0].config_file[0].mode:`),
			errors: 1,
		},
	}
	runPlanErrorCases(t, cases)
}

// A volume named by id and by name is the same mount: a pod imported (its
// state names the volume) under a configuration naming it by id, and a
// switch back to the name, are in-place updates that keep the pod and
// its writer's data, not replacements.
func TestAccPodVolumeImportKeepsPod(t *testing.T) {
	t.Parallel()
	n := startStorageNode(t, "store-import")
	byID := n.counterHCL(n.env.Image)
	byName := n.counterHCLWith(n.env.Image, `"data"`, "one")
	volumeID := n.agent.ID() + "/default/data"
	var uid string
	var last int
	inPlace := func(volume string) resource.TestStep {
		return resource.TestStep{
			Config: map[string]string{volumeID: byID, "data": byName}[volume],
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_pod.p", "container.0.volume_mount.0.volume", volume),
				resource.TestCheckResourceAttrWith("herd_pod.p", "uid", equals(&uid)),
				n.counterPasses(&last, "after an update of the volume's spelling to "+volume),
			),
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: byID,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", record(&uid)),
					n.counterPasses(&last, "first pod"),
				),
			},
			// The node knows the volume by name only: that is what an
			// import reads.
			{
				ResourceName:            "herd_pod.p",
				ImportState:             true,
				ImportStateId:           n.podID("counter"),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts", "container.0.volume_mount.0.volume"},
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					if len(states) != 1 {
						return fmt.Errorf("imported %d states, want 1", len(states))
					}
					if v := states[0].Attributes["container.0.volume_mount.0.volume"]; v != "data" {
						return fmt.Errorf("imported volume_mount volume %q, want %q", v, "data")
					}
					return nil
				},
			},
			// Terraform forgets the pod, and imports it again with an
			// import block under the configuration naming the volume by id.
			{
				Config: n.providerHCL() + n.nodeHCL("") + `
resource "herd_volume" "v" {
  node                = herd_node.n.id
  name                = "data"
  size                = "16Mi"
  deletion_protection = false
}

removed {
  from = herd_pod.p
  lifecycle {
    destroy = false
  }
}
`,
			},
			{
				Config: byID + fmt.Sprintf(`
import {
  to = herd_pod.p
  id = %q
}
`, n.podID("counter")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "container.0.volume_mount.0.volume", volumeID),
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", equals(&uid)),
					n.counterPasses(&last, "after the import"),
				),
			},
			inPlace("data"),
			inPlace(volumeID),
			// A config file changes in place while the pod writes its
			// volume: agentd does not take the pod for another writer.
			{
				Config: n.counterHCLWith(n.env.Image, "herd_volume.v.id", "two"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.p", "uid", equals(&uid)),
					containerFile("herd_pod.p", 0, "/etc/counter/conf", "two", 0o644),
					n.counterPasses(&last, "after the config change"),
				),
			},
		},
	})
}

// exampleVolumeHCL is examples/volume/main.tf on the test's node, with
// image, greeting and the volume's protection as given.
func (n *storageNode) exampleVolumeHCL(t *testing.T, image, greeting string, protected bool) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "volume", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range map[string]string{
		`default     = "demo@127.0.0.1:7443"`:              fmt.Sprintf("default     = %q", n.agent.ID()),
		`default     = "127.0.0.1:5050/herd/busybox:1.35"`: fmt.Sprintf("default     = %q", image),
		`greeting = "hello from the first config"`:         fmt.Sprintf("greeting = %q", greeting),
		`provider "herd" {}`:                               n.providerHCL(),
		`size = "64Mi"`:                                    fmt.Sprintf("size = \"64Mi\"\n  deletion_protection = %t", protected),
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("examples/volume/main.tf no longer holds %q", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	return s
}

// hostCounter checks the counter file n of the state's volume on the host
// is past *last, and moves *last there.
func (n *storageNode) hostCounter(last *int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		uid, err := stateAttr(s, "herd_volume.data", "uid")
		if err != nil {
			return err
		}
		var v int
		err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			// Not written yet, or caught between the write and the rename:
			// ask again.
			b, rerr := os.ReadFile(filepath.Join(n.volumeDir, uid, "mnt", "n"))
			got, perr := strconv.Atoi(strings.TrimSpace(string(b)))
			if rerr == nil && perr == nil {
				v = got
			}
			return rerr == nil && perr == nil && v > *last+1, nil
		})
		if err != nil {
			return fmt.Errorf("the counter in the volume did not pass %d (at %d): %w", *last, v, err)
		}
		*last = v
		return nil
	}
}

// examples/volume works as its README says: the counter carries on
// through a replacement of the pod (an image change), the greeting
// changes in place, and the volume is destroyed once unprotected.
func TestAccExampleVolume(t *testing.T) {
	t.Parallel()
	n := startStorageNode(t, "store-example")
	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	image2, err := n.env.Registry.Push(context.Background(), acctest.ImageRepo, "store-example", img)
	if err != nil {
		t.Fatalf("push the busybox image under another tag: %v", err)
	}
	const first, second = "hello from the first config", "hello from the second config"
	var uid string
	var last int
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: n.exampleVolumeHCL(t, n.env.Image, first, true),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.counter", "uid", record(&uid)),
					n.hostCounter(&last),
					func(*terraform.State) error { return n.waitLogs(t, "counter", "app", ": "+first) },
				),
			},
			// Another image: a new pod, which starts where the last one was.
			{
				Config: n.exampleVolumeHCL(t, image2, first, true),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.counter", plancheck.ResourceActionDestroyBeforeCreate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.counter", "uid", differs(&uid)),
					resource.TestCheckResourceAttrWith("herd_pod.counter", "uid", record(&uid)),
					func(*terraform.State) error {
						l, err := n.logs(t, "counter", "app")
						if err != nil {
							return err
						}
						var start int
						if _, err := fmt.Sscanf(l, "starting at %d", &start); err != nil {
							return fmt.Errorf("the new pod's log does not start with its counter: %w\n%s", err, l)
						}
						if start < last {
							return fmt.Errorf("the new pod started at %d, the old one was at %d", start, last)
						}
						return nil
					},
					n.hostCounter(&last),
				),
			},
			// Another greeting: the same pod reads the new file.
			{
				Config: n.exampleVolumeHCL(t, image2, second, true),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_pod.counter", plancheck.ResourceActionUpdate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_pod.counter", "uid", equals(&uid)),
					func(*terraform.State) error { return n.waitLogs(t, "counter", "app", ": "+second) },
					n.hostCounter(&last),
				),
			},
			// Unprotected, so that the test can destroy it.
			{
				Config: n.exampleVolumeHCL(t, image2, second, false),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_volume.data", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.counter", plancheck.ResourceActionNoop),
					},
				},
			},
		},
	})
}

// A second writer of a volume is refused at plan, at the mount's volume,
// naming the pod that writes it: the node is asked. A reader beside the
// writer is fine, and so is the writer's own replacement under a new name
// (the pod it replaces holds the volume until then).
func TestAccPodPlanRefusesSecondWriter(t *testing.T) {
	t.Parallel()
	n := startStorageNode(t, "store-writer")
	base := n.counterHCL(n.env.Image)
	extra := func(name string, readOnly bool) string {
		return fmt.Sprintf(`
resource "herd_pod" %[1]q {
  node = herd_node.n.id
  name = %[1]q
  container {
    name    = "app"
    image   = %[2]q
    command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volume_mount {
      volume    = "data"
      path      = "/data"
      read_only = %[3]t
    }
  }
  depends_on = [herd_pod.p]
}
`, name, n.env.Image, readOnly)
	}
	renamed := strings.Replace(base, `name = "counter"`, `name = "counter2"`, 1)
	if renamed == base {
		t.Fatal("the writer's name is not in counterHCL")
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: base,
				Check:  resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
			},
			{
				Config:      base + extra("second", false),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`volume default/data is mounted\s+read-write\s+by\s+pod\s+counter`),
			},
			{
				Config: base + extra("reader", true),
				Check:  resource.TestCheckResourceAttr("herd_pod.reader", "phase", "Running"),
			},
			{
				Config: renamed + extra("reader", true),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.p", "name", "counter2"),
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
				),
			},
		},
	})
}
