package resources_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// herd_cluster: a state written without identity gets one on the first
// refresh with no change planned; the identity stays through a refresh, a
// scale-out in place and a change of the node's address (in place, the
// same agentd); it imports by identity.
func TestAccNestedClusterIdentity(t *testing.T) {
	t.Parallel()
	e := startNestedNode(t, "nested-ident")
	const cluster, lbIP = "idc", "127.0.97.3"
	ns := e.hostNamespace(cluster)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{LBIPs: []string{lbIP}, Delay: 300 * time.Millisecond})
	t.Cleanup(stop)
	e.playGuest(t, cluster, lbIP, cluster+"-cp-0", cluster+"-worker-0")

	tcpID := e.node.agent.ID()
	socketID := e.node.agent.Name + "@unix://" + e.node.agent.Socket
	config := func(workers int, node string) string {
		hcl := e.clusterHCL(cluster, workers, "deletion_protection = false")
		if node != "" {
			hcl = strings.Replace(hcl, "node               = herd_node.n.id", fmt.Sprintf("node               = %q", node), 1)
		}
		return hcl
	}
	identity := identityIs("herd_cluster.c", map[string]string{"name": cluster, "node": tcpID})

	resource.Test(t, resource.TestCase{
		TerraformVersionChecks: identityCLI,
		CheckDestroy:           func(*terraform.State) error { return e.nothingLeft(t, cluster, false) },
		Steps: []resource.TestStep{
			// 1. Written by a provider without identity.
			{
				ProtoV6ProviderFactories: providerFactoriesWithoutIdentity(),
				Config:                   config(1, ""),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("herd_cluster.c", tfjsonpath.New("phase"), knownvalue.StringExact("Ready")),
				},
			},
			// 2. The upgrade: identity filled in, nothing to change.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(1, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{identity},
			},
			// 3. Another refresh keeps it.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(1, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{identity},
			},
			// 4. Scaling out in place keeps it.
			{
				ProtoV6ProviderFactories: providerFactories(),
				PreConfig:                func() { e.playGuest(t, cluster, "", cluster+"-worker-1") },
				Config:                   config(2, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_cluster.c", plancheck.ResourceActionUpdate)},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					identity,
					statecheck.ExpectKnownValue("herd_cluster.c", tfjsonpath.New("vms"), knownvalue.ListSizeExact(3)),
				},
			},
			// 5. So does reaching the same agentd at another address.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(2, socketID),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_cluster.c", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					identity,
					statecheck.ExpectKnownValue("herd_cluster.c", tfjsonpath.New("node"), knownvalue.StringExact(socketID)),
				},
			},
			// 6. An import block by identity (into a copy of the state
			// without the cluster), through the identity's node. Only the
			// timeouts block, never imported, is left to write.
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_cluster.c",
				ImportState:              true,
				ImportStateKind:          resource.ImportBlockWithResourceIdentity,
				Config:                   requiredHerd + config(2, ""),
				ExpectNonEmptyPlan:       true,
				ImportPlanChecks: resource.ImportPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_cluster.c", plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue("herd_cluster.c", tfjsonpath.New("uid"), knownvalue.NotNull()),
					},
				},
			},
			// 7. The configuration the test's destroy runs with.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(2, socketID),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{identity},
			},
		},
	})
}
