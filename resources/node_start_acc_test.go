package resources_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// TestAccNodeWaitsForAStartingAgent: a node whose agentd is not up yet when
// the apply starts (started in the same apply, or restarting) is adopted
// once agentd answers its grpc.health.v1 service, within dial_timeout.
func TestAccNodeWaitsForAStartingAgent(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-node-late")
	n.agent.Stop()
	started := make(chan error, 1)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			PreConfig: func() {
				go func() {
					time.Sleep(time.Second) // the apply is under way by then
					started <- n.agent.Restart(context.Background())
				}()
			},
			Config: n.providerHCL() + n.nodeHCL(""),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("herd_node.n", tfjsonpath.New("name"), knownvalue.StringExact(n.agent.Name)),
				statecheck.ExpectKnownValue("herd_node.n", tfjsonpath.New("ready"), knownvalue.Bool(true)),
			},
		}},
	})
	if err := <-started; err != nil {
		t.Fatalf("restart agentd: %v", err)
	}
}
