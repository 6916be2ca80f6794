package resources_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// refreshPodsHCL declares pods r0..r(n-1) on the node, each sleeping.
func refreshPodsHCL(n *accNode, count int) string {
	var b strings.Builder
	b.WriteString(n.providerHCL() + n.nodeHCL(""))
	for i := range count {
		fmt.Fprintf(&b, `
resource "herd_pod" "r%[1]d" {
  node                             = herd_node.n.id
  name                             = "r%[1]d"
  termination_grace_period_seconds = 0
  container {
    name    = "main"
    image   = %[2]q
    command = ["sleep", "3600"]
    memory  = "16Mi"
  }
}
`, i, n.env.Image)
	}
	return b.String()
}

// The refresh of many pods on one node is answered by one pod list, and
// it still sees each pod as the node has it now: between two plans, a pod
// deleted behind Terraform's back is planned for creation, a pod replaced
// behind its back by one with another command is planned for replacement,
// the others are left alone; the apply converges and the next plan is
// empty.
func TestAccPodRefreshSeesOutOfBandChanges(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-refresh")
	const count = 4
	hcl := refreshPodsHCL(n, count)
	var uid2 string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: hcl,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.r0", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.r3", "phase", "Running"),
					resource.TestCheckResourceAttrWith("herd_pod.r2", "uid", record(&uid2)),
				),
			},
			// Refreshed without a change: the pods the list reports match.
			{
				Config: hcl,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				PreConfig: func() {
					c := context.Background()
					// r1 deleted out of band.
					if _, err := n.pods.DeletePod(c, &herdv1.DeletePodRequest{Name: "r1"}); err != nil {
						t.Fatalf("DeletePod r1: %v", err)
					}
					if err := n.waitPodGone(t, "r1", time.Minute); err != nil {
						t.Fatal(err)
					}
					// r2 replaced out of band by a pod of the same name
					// with another command.
					old, err := n.pods.GetPod(c, &herdv1.GetPodRequest{Name: "r2"})
					if err != nil {
						t.Fatalf("GetPod r2: %v", err)
					}
					if _, err := n.pods.DeletePod(c, &herdv1.DeletePodRequest{Name: "r2"}); err != nil {
						t.Fatalf("DeletePod r2: %v", err)
					}
					if err := n.waitPodGone(t, "r2", time.Minute); err != nil {
						t.Fatal(err)
					}
					spec := proto.Clone(old.GetSpec()).(*herdv1.PodSpec)
					spec.Containers[0].Command = []string{"sleep", "3601"}
					if _, err := n.pods.ApplyPod(c, &herdv1.ApplyPodRequest{Spec: spec}); err != nil {
						t.Fatalf("ApplyPod r2: %v", err)
					}
				},
				Config: hcl,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_pod.r0", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("herd_pod.r1", plancheck.ResourceActionCreate),
						plancheck.ExpectResourceAction("herd_pod.r2", plancheck.ResourceActionReplace),
						plancheck.ExpectResourceAction("herd_pod.r3", plancheck.ResourceActionNoop),
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.r1", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.r2", "phase", "Running"),
					resource.TestCheckResourceAttr("herd_pod.r2", "container.0.command.1", "3600"),
					resource.TestCheckResourceAttrWith("herd_pod.r2", "uid", differs(&uid2)),
					func(*terraform.State) error {
						p, err := n.pods.GetPod(context.Background(), &herdv1.GetPodRequest{Name: "r2"})
						if err != nil {
							return err
						}
						if got := p.GetSpec().GetContainers()[0].GetCommand(); len(got) != 2 || got[1] != "3600" {
							return fmt.Errorf("r2 runs %q after the apply, want the declared sleep 3600", got)
						}
						return nil
					},
				),
			},
		},
	})
}
