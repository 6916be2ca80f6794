package resources_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// storageCluster is a cluster whose nodes keep their volumes in
// directories of their own, and the node that gets the test's volume.
type storageCluster struct {
	c       *acctest.TestCluster
	volDirs map[string]string // node name → its --volume-dir
	// on has the volume; through is the member Terraform writes the
	// deployments through (another one, so that placement by volume shows).
	on, through *acctest.ClusterNode
	volumes     herdv1.VolumeServiceClient // on's
	// volumeAt, when set, is the HCL line that places herd_volume.v
	// instead of node = on's id.
	volumeAt string
}

func startStorageCluster(t *testing.T, subnet string, names ...string) *storageCluster {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	base := t.TempDir()
	dirs := map[string]string{}
	for _, n := range names {
		dirs[n] = filepath.Join(base, n)
		if err := os.MkdirAll(dirs[n], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c := acctest.SharedEnv(t).NewCluster(t, acctest.ClusterOptions{
		Names:       names,
		Subnet:      netip.MustParsePrefix(subnet),
		ServiceCIDR: accServiceCIDR,
		Mutate: func(o *acctest.AgentOptions) {
			o.ExtraArgs = append(o.ExtraArgs, "--volume-dir", dirs[o.Name])
		},
	})
	sc := &storageCluster{c: c, volDirs: dirs, on: c.Nodes[len(c.Nodes)-1], through: c.Nodes[0]}
	sc.volumes = herdv1.NewVolumeServiceClient(sc.on.Conn)
	needVolumeService(t, sc.volumes)
	// Runs before the cluster's own cleanup: a failed test's replicas
	// would keep the volume mounted, so they go first, then the volumes.
	t.Cleanup(func() {
		sc.deleteDeployments(t)
		removeVolumes(t, sc.volumes)
	})
	return sc
}

// deleteDeployments deletes every deployment of the cluster and waits
// until no node runs a pod.
func (sc *storageCluster) deleteDeployments(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := sc.through.Deployments.ListDeployments(ctx, &herdv1.ListDeploymentsRequest{})
	if err != nil {
		t.Errorf("cleanup: list deployments: %v", err)
		return
	}
	for _, d := range list.GetDeployments() {
		s := d.GetSpec()
		if _, err := sc.through.Deployments.DeleteDeployment(ctx, &herdv1.DeleteDeploymentRequest{Namespace: s.GetNamespace(), Name: s.GetName()}); err != nil {
			t.Errorf("cleanup: delete deployment %s/%s: %v", s.GetNamespace(), s.GetName(), err)
		}
	}
	var last error
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		last = sc.noPods(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Errorf("cleanup: %v", last)
	}
}

// noPods checks that no node of the cluster runs a pod.
func (sc *storageCluster) noPods(ctx context.Context) error {
	for _, n := range sc.c.Nodes {
		res, err := n.Pods.ListPods(ctx, &herdv1.ListPodsRequest{})
		if err != nil {
			return fmt.Errorf("list pods on %s: %w", n.Agent.Name, err)
		}
		if len(res.GetPods()) > 0 {
			var names []string
			for _, p := range res.GetPods() {
				names = append(names, p.GetSpec().GetName())
			}
			return fmt.Errorf("%s still runs %s", n.Agent.Name, strings.Join(names, ", "))
		}
	}
	return nil
}

// storageDeploymentHCL is herd_volume.v on sc.on and herd_deployment.w,
// one replica that keeps storageCounterScript's counter in the volume
// (volume is the HCL of its volume_mount's volume) and first touches a
// file in its empty_dir (it exits when it cannot). readers > 0 adds
// herd_deployment.r: that many replicas spread over the cluster that
// mount the volume read-only and read the counter.
func (sc *storageCluster) storageDeploymentHCL(image, volume string, replicas, readers int) string {
	certs := sc.c.Env.Certs
	script := "touch /scratch/started || exit 1; " + storageCounterScript
	hcl := fmt.Sprintf(`
provider "herd" {
  ca_cert     = %q
  client_cert = %q
  client_key  = %q
}

resource "herd_volume" "v" {
  %s
  name                = "data"
  size                = "16Mi"
  deletion_protection = false
}

resource "herd_deployment" "w" {
  node     = %q
  name     = "counter"
  replicas = %d
  selector = { app = "counter" }
  template {
    labels                           = { app = "counter" }
    termination_grace_period_seconds = 5
    empty_dir {
      name = "scratch"
    }
    container {
      name    = "app"
      image   = %q
      command = ["sh", "-c", %q]
      volume_mount {
        volume = %s
        path   = "/data"
      }
      volume_mount {
        empty_dir = "scratch"
        path      = "/scratch"
      }
    }
  }
  timeouts {
    create = "3m"
    update = "3m"
    delete = "2m"
  }
  depends_on = [herd_volume.v]
}
`, certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile, sc.volumeLine(), sc.through.Agent.ID(), replicas, image,
		script, volume)
	if readers > 0 {
		hcl += fmt.Sprintf(`
resource "herd_deployment" "r" {
  node      = %q
  name      = "reader"
  replicas  = %d
  selector  = { app = "reader" }
  placement = { strategy = "spread" }
  template {
    labels                           = { app = "reader" }
    termination_grace_period_seconds = 1
    container {
      name    = "app"
      image   = %q
      command = ["sh", "-c", "trap 'exit 0' TERM; while :; do cat /data/n > /dev/null; sleep 1; done"]
      volume_mount {
        volume    = herd_volume.v.id
        path      = "/data"
        read_only = true
      }
    }
  }
  timeouts {
    create = "3m"
    update = "3m"
    delete = "2m"
  }
}
`, sc.through.Agent.ID(), readers, image)
	}
	return hcl
}

func (sc *storageCluster) volumeLine() string {
	if sc.volumeAt != "" {
		return sc.volumeAt
	}
	return fmt.Sprintf("node = %q", sc.on.Agent.ID())
}

// replicasOf is the replica_status of res as pod → node, each of
// revision rev and ready; there must be want of them.
func replicasOf(s *terraform.State, res string, want int, rev string) (map[string]string, error) {
	rs, ok := s.RootModule().Resources[res]
	if !ok {
		return nil, fmt.Errorf("%s not in state", res)
	}
	a := rs.Primary.Attributes
	if a["replica_status.#"] != fmt.Sprint(want) {
		return nil, fmt.Errorf("%s: %s replicas, want %d", res, a["replica_status.#"], want)
	}
	out := map[string]string{}
	for i := range want {
		p := fmt.Sprintf("replica_status.%d.", i)
		if rev != "" && a[p+"revision"] != rev {
			return nil, fmt.Errorf("%s: replica %s of revision %s, want %s", res, a[p+"pod"], a[p+"revision"], rev)
		}
		if a[p+"ready"] != "true" {
			return nil, fmt.Errorf("%s: replica %s not ready", res, a[p+"pod"])
		}
		out[a[p+"pod"]] = a[p+"node"]
	}
	return out, nil
}

// writerOnVolume checks that herd_deployment.w has one ready replica of
// its current revision, on the volume's node, that the volume (asked on
// its node: the state's bound_to is the last refresh's) is bound to it,
// and records the replica in pod.
func (sc *storageCluster) writerOnVolume(pod *string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rev, err := stateAttr(s, "herd_deployment.w", "revision")
		if err != nil {
			return err
		}
		set, err := replicasOf(s, "herd_deployment.w", 1, rev)
		if err != nil {
			return err
		}
		for p, node := range set {
			if node != sc.on.Agent.Name {
				return fmt.Errorf("replica %s runs on %s, not on the volume's node %s", p, node, sc.on.Agent.Name)
			}
			*pod = p
		}
		return sc.waitVolume(func(v *herdv1.Volume) error {
			if b := v.GetStatus().GetBoundTo(); b != *pod {
				return fmt.Errorf("volume bound to %q, want the replica %s", b, *pod)
			}
			return nil
		})
	}
}

// waitVolume polls the volume on its node until ok accepts it, for the
// status to catch up with a replica that has just started.
func (sc *storageCluster) waitVolume(ok func(*herdv1.Volume) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		v, err := sc.volumes.GetVolume(ctx, &herdv1.GetVolumeRequest{Namespace: "default", Name: "data"})
		if last = err; err == nil {
			last = ok(v)
		}
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("volume default/data on %s: %w", sc.on.Agent.Name, last)
	}
	return nil
}

// counterPasses is storageNode.counterPasses on the volume's node.
func (sc *storageCluster) counterPasses(last *int, what string) resource.TestCheckFunc {
	return (&storageNode{volumeDir: sc.volDirs[sc.on.Agent.Name]}).counterPasses(last, what)
}

// A herd_deployment that writes a herd_volume on a cluster of three,
// written through another member than the volume's: its one replica runs
// on the volume's node and the volume is bound to it; two image changes
// roll out (stop, then start) a new replica each time, there too, and
// the counter it keeps in the volume never goes back; switching the
// volume_mount from the volume's id to its name changes nothing (same
// revision, same replica); two writing replicas are refused at plan
// time; a read-only deployment's two replicas, spread placement
// notwithstanding, both run on the volume's node and read it beside the
// writer. Everything is destroyed.
func TestAccDeploymentVolume(t *testing.T) {
	t.Parallel()
	sc := startStorageCluster(t, "10.94.0.0/24", "dvol-a", "dvol-b", "dvol-c")
	env := sc.c.Env
	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	images := []string{env.Image}
	for i := range 2 {
		ref, err := env.Registry.Push(context.Background(), acctest.ImageRepo, fmt.Sprintf("dvol-%d", i), img)
		if err != nil {
			t.Fatalf("push the busybox image under another tag: %v", err)
		}
		images = append(images, ref)
	}
	const w = "herd_deployment.w"
	byID := "herd_volume.v.id"
	var last int
	var volUID string
	pods := make([]string, len(images))
	var steps []resource.TestStep
	for i, image := range images {
		what := fmt.Sprintf("revision %d (%s)", i+1, image)
		step := resource.TestStep{
			Config: sc.storageDeploymentHCL(image, byID, 1, 0),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(w, "revision", fmt.Sprint(i+1)),
				resource.TestCheckResourceAttr(w, "phase", spec.PhaseComplete),
				resource.TestCheckResourceAttr(w, "template.container.0.volume_mount.0.volume", sc.on.Agent.ID()+"/default/data"),
				resource.TestCheckResourceAttr(w, "template.empty_dir.0.medium", spec.EmptyDirDisk),
				sc.writerOnVolume(&pods[i]),
				sc.counterPasses(&last, what),
			),
		}
		if i == 0 {
			step.Check = resource.ComposeAggregateTestCheckFunc(step.Check,
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", record(&volUID)))
		} else {
			step.ConfigPlanChecks.PreApply = []plancheck.PlanCheck{
				plancheck.ExpectResourceAction(w, plancheck.ResourceActionUpdate),
				plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionNoop),
			}
			prev := &pods[i-1]
			step.Check = resource.ComposeAggregateTestCheckFunc(step.Check,
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", equals(&volUID)),
				func(*terraform.State) error {
					if pods[i] == *prev {
						return fmt.Errorf("%s: replica %s is the previous revision's", what, pods[i])
					}
					return nil
				})
		}
		steps = append(steps, step)
	}
	final := images[len(images)-1]
	finalPod := &pods[len(pods)-1]
	steps = append(steps,
		resource.TestStep{
			// The volume by name: agentd gets the same spec, nothing rolls out.
			Config: sc.storageDeploymentHCL(final, `"data"`, 1, 0),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(w, plancheck.ResourceActionUpdate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(w, "revision", fmt.Sprint(len(images))),
				resource.TestCheckResourceAttr(w, "template.container.0.volume_mount.0.volume", "data"),
				resource.TestCheckResourceAttrWith(w, "replica_status.0.pod", equals(finalPod)),
				sc.writerOnVolume(finalPod),
				sc.counterPasses(&last, "after the volume's spelling changed"),
			),
		},
		resource.TestStep{
			Config:      sc.storageDeploymentHCL(final, `"data"`, 2, 0),
			PlanOnly:    true,
			ExpectError: errRe("Invalid deployment specification", "replicas", "must be 0 or 1", "writes persistent volume data"),
		},
		resource.TestStep{
			Config: sc.storageDeploymentHCL(final, `"data"`, 1, 2),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("herd_deployment.r", plancheck.ResourceActionCreate),
					plancheck.ExpectResourceAction(w, plancheck.ResourceActionNoop),
				},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				func(s *terraform.State) error {
					set, err := replicasOf(s, "herd_deployment.r", 2, "1")
					if err != nil {
						return err
					}
					for p, node := range set {
						if node != sc.on.Agent.Name {
							return fmt.Errorf("read-only replica %s runs on %s, not on the volume's node %s", p, node, sc.on.Agent.Name)
						}
					}
					return sc.waitVolume(func(v *herdv1.Volume) error {
						got := slices.Sorted(slices.Values(v.GetStatus().GetReaders()))
						want := slices.Sorted(maps.Keys(set))
						if !slices.Equal(got, want) || v.GetStatus().GetBoundTo() != *finalPod {
							return fmt.Errorf("volume readers %v bound to %q, want readers %v and the writer %s", got,
								v.GetStatus().GetBoundTo(), want, *finalPod)
						}
						return nil
					})
				},
				resource.TestCheckResourceAttrWith(w, "replica_status.0.pod", equals(finalPod)),
				sc.counterPasses(&last, "beside two readers"),
			),
		},
	)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, name := range []string{"counter", "reader"} {
				_, err := sc.through.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Namespace: "default", Name: name})
				if status.Code(err) != codes.NotFound {
					return fmt.Errorf("GetDeployment %s after destroy: %v, want NotFound", name, err)
				}
			}
			if _, err := sc.volumes.GetVolume(ctx, &herdv1.GetVolumeRequest{Namespace: "default", Name: "data"}); status.Code(err) != codes.NotFound {
				return fmt.Errorf("GetVolume after destroy: %v, want NotFound", err)
			}
			return sc.noPods(ctx)
		},
		Steps: steps,
	})
}
