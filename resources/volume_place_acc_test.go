package resources_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// applyBusyPod runs pod "busy", which requests 8Gi, so that spread
// prefers any other node.
func applyBusyPod(t *testing.T, pods herdv1.PodServiceClient, image string) {
	t.Helper()
	busy := &herdv1.PodSpec{Name: "busy", Containers: []*herdv1.ContainerSpec{{
		Name: "app", Image: image, Memory: "8Gi",
		Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
	}}}
	if _, err := pods.ApplyPod(context.Background(), &herdv1.ApplyPodRequest{Spec: busy}); err != nil {
		t.Fatal(err)
	}
}

// A herd_volume without a node is placed by herd's scheduler among its
// node_candidates and then fixed: of two nodes, the one with the smaller
// name already runs a pod that requests 8Gi, so spread takes the other
// (a first-candidate or by-name choice would not). Dropping the chosen
// node from the candidates (with a warning), or naming it as node, then
// moves nothing; and a pod on the chosen node mounts the volume by id.
func TestAccVolumeNodeChosenByScheduler(t *testing.T) {
	t.Parallel()
	a := startStorageNode(t, "vplace-a")
	b := startStorageNode(t, "vplace-b")
	applyBusyPod(t, a.pods, a.env.Image)
	volume := func(placement string) string {
		return a.providerHCL() + fmt.Sprintf(`
resource "herd_volume" "v" {
  %s
  name                = "data"
  size                = "8Mi"
  deletion_protection = false
}

resource "herd_pod" "p" {
  node = herd_volume.v.node
  name = "user"
  container {
    name    = "app"
    image   = %q
    command = ["sh", "-c", "trap 'exit 0' TERM; echo hi > /data/f; sleep 3600 & wait"]
    volume_mount {
      volume = herd_volume.v.id
      path   = "/data"
    }
  }
}
`, placement, a.env.Image)
	}
	candidates := fmt.Sprintf("node_candidates = [%q, %q]", a.agent.ID(), b.agent.ID())
	// The volume's update only records the new list: no replacement, and
	// the pod that mounts it is not touched.
	stays := func(checks ...plancheck.PlanCheck) resource.ConfigPlanChecks {
		return resource.ConfigPlanChecks{PreApply: append([]plancheck.PlanCheck{
			plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionUpdate),
			plancheck.ExpectKnownValue("herd_volume.v", tfjsonpath.New("node"), knownvalue.StringExact(b.agent.ID())),
			plancheck.ExpectResourceAction("herd_pod.p", plancheck.ResourceActionNoop),
		}, checks...)}
	}
	rec := &warningRecorder{}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: rec.factories(),
		CheckDestroy: func(*terraform.State) error {
			if l, err := b.volumes.ListVolumes(context.Background(), &herdv1.ListVolumesRequest{}); err != nil || len(l.GetVolumes()) > 0 {
				return fmt.Errorf("volumes left on the chosen node: %v, %v", l.GetVolumes(), err)
			}
			return b.nothingLeft(t)
		},
		Steps: []resource.TestStep{
			{
				Config: volume(candidates),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_volume.v", "node", b.agent.ID()),
					resource.TestCheckResourceAttr("herd_volume.v", "id", b.agent.ID()+"/default/data"),
					resource.TestCheckResourceAttr("herd_pod.p", "phase", "Running"),
					func(*terraform.State) error {
						if _, err := b.volumes.GetVolume(context.Background(), &herdv1.GetVolumeRequest{Name: "data"}); err != nil {
							return fmt.Errorf("the chosen node has no volume: %w", err)
						}
						if _, err := a.volumes.GetVolume(context.Background(), &herdv1.GetVolumeRequest{Name: "data"}); err == nil {
							return fmt.Errorf("the busy node has the volume too")
						}
						return nil
					},
				),
			},
			{
				Config: volume(fmt.Sprintf("node_candidates = [%q]", a.agent.ID())),
				ConfigPlanChecks: stays(expectWarning{rec: rec, parts: []string{"Volume stays on its node",
					"default/data stays on node \"vplace-b\"", "no longer lists"}}),
				Check: resource.TestCheckResourceAttr("herd_volume.v", "node", b.agent.ID()),
			},
			{
				Config:           volume(fmt.Sprintf("node = %q", b.agent.ID())),
				ConfigPlanChecks: stays(),
				Check:            resource.TestCheckResourceAttr("herd_volume.v", "node", b.agent.ID()),
			},
		},
	})
}

// The same for a deployment, on a cluster of two: the volume goes to the
// node without the busy pod, and the deployment that writes it, applied
// through the busy node, follows it there; a later change of the
// candidates, or naming the chosen node, moves neither.
func TestAccDeploymentVolumeChosenByScheduler(t *testing.T) {
	t.Parallel()
	sc := startStorageCluster(t, "10.95.0.0/24", "dvplace-a", "dvplace-b")
	busyNode := sc.through // dvplace-a, which wins ties by name
	applyBusyPod(t, busyNode.Pods, sc.c.Env.Image)
	// Runs before the cluster's cleanup, which wants no pod left.
	t.Cleanup(func() {
		if _, err := busyNode.Pods.DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: "busy"}); err != nil {
			t.Errorf("cleanup: delete pod busy: %v", err)
		}
	})
	chosen := sc.on.Agent.ID()
	const w = "herd_deployment.w"
	stays := resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
		plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionUpdate),
		plancheck.ExpectKnownValue("herd_volume.v", tfjsonpath.New("node"), knownvalue.StringExact(chosen)),
		plancheck.ExpectResourceAction(w, plancheck.ResourceActionNoop),
	}}
	var pod string
	var last int
	config := func(at string) string {
		sc.volumeAt = at
		return sc.storageDeploymentHCL(sc.c.Env.Image, "herd_volume.v.id", 1, 0)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{
				Config: config(fmt.Sprintf("node_candidates = [%q, %q]", busyNode.Agent.ID(), chosen)),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_volume.v", "node", chosen),
					resource.TestCheckResourceAttr(w, "phase", spec.PhaseComplete),
					sc.writerOnVolume(&pod),
					sc.counterPasses(&last, "on the chosen node"),
				),
			},
			{
				Config:           config(fmt.Sprintf("node_candidates = [%q]", busyNode.Agent.ID())),
				ConfigPlanChecks: stays,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith(w, "replica_status.0.pod", equals(&pod)),
					sc.counterPasses(&last, "after the candidates changed"),
				),
			},
			{
				Config:           config(fmt.Sprintf("node = %q", chosen)),
				ConfigPlanChecks: stays,
				Check:            resource.TestCheckResourceAttrWith(w, "replica_status.0.pod", equals(&pod)),
			},
		},
	})
}
