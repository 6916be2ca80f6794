package resources_test

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"

	"github.com/herd-project/terraform-provider-herd/provider"
)

// shortcutHCL declares two pods: one with restart_policy = "Never" unless
// defaulted, one with a UDP port unless its protocol is defaulted.
func shortcutHCL(n *accNode, defaulted bool) string {
	restart, protocol := `restart_policy = "Never"`, `protocol = "UDP"`
	if defaulted {
		restart, protocol = "", ""
	}
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "a" {
  node                             = herd_node.n.id
  name                             = "shortcut-a"
  termination_grace_period_seconds = 0
  %[2]s
  container {
    name    = "main"
    image   = %[1]q
    command = ["sleep", "3600"]
  }
}

resource "herd_pod" "b" {
  node                             = herd_node.n.id
  name                             = "shortcut-b"
  termination_grace_period_seconds = 0
  container {
    name    = "main"
    image   = %[1]q
    command = ["sleep", "3600"]
    port {
      container_port = 5353
      %[3]s
    }
  }
}
`, n.env.Image, restart, protocol)
}

// The provider answers a refresh that finds the pod as it was, and a plan
// that changes nothing, without the framework; those shortcuts must never
// hide a change. After a refresh has been saved (the second apply), plans
// take them; then removing an attribute whose default differs from the
// state (restart_policy, a port's protocol) still plans the replacement.
// Out-of-band changes with shortcuts in place are covered by
// TestAccPodRefreshSeesOutOfBandChanges.
func TestAccPodShortcutsHideNoChange(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-shortcut")
	var before [2][2]int64
	count := func() [2][2]int64 {
		var c [2][2]int64
		c[0][0], c[0][1] = provider.Shortcuts("shortcut-a")
		c[1][0], c[1][1] = provider.Shortcuts("shortcut-b")
		return c
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: shortcutHCL(n, false),
				Check:  resource.TestCheckResourceAttr("herd_pod.a", "restart_policy", "Never"),
			},
			// This apply refreshes the pods and saves the stamps; the plan
			// after it takes the shortcuts.
			{
				PreConfig: func() { before = count() },
				Config:    shortcutHCL(n, false),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				PreConfig: func() {
					after := count()
					for i, name := range []string{"shortcut-a", "shortcut-b"} {
						if after[i][0] <= before[i][0] || after[i][1] <= before[i][1] {
							t.Errorf("%s: refresh shortcuts %d -> %d, plan shortcuts %d -> %d: want both to grow once a refresh is saved",
								name, before[i][0], after[i][0], before[i][1], after[i][1])
						}
					}
				},
				Config: shortcutHCL(n, true),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_pod.a", plancheck.ResourceActionReplace),
						plancheck.ExpectResourceAction("herd_pod.b", plancheck.ResourceActionReplace),
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.a", "restart_policy", "Always"),
					resource.TestCheckResourceAttr("herd_pod.b", "container.0.port.0.protocol", "TCP"),
				),
			},
		},
	})
}
