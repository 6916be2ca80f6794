package resources_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	fwprovider "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	fwresource "github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"github.com/hashicorp/terraform-plugin-testing/tfversion"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/provider"
)

// Resource identity needs Terraform or OpenTofu 1.12 or later.
var identityCLI = []tfversion.TerraformVersionCheck{tfversion.SkipBelow(tfversion.Version1_12_0)}

// providerFactoriesWithoutIdentity serves the provider as a release
// without resource identity did: the same resources, none of them
// offering an identity schema, so the CLI writes state without identity.
// Switching to providerFactories() afterwards is the upgrade users make.
func providerFactoriesWithoutIdentity() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"herd": providerserver.NewProtocol6WithError(withoutIdentity{provider.New("test")().(fullProvider)}),
	}
}

type fullProvider interface {
	fwprovider.Provider
	fwprovider.ProviderWithEphemeralResources
}

type withoutIdentity struct{ fullProvider }

func (p withoutIdentity) Resources(ctx context.Context) []func() fwresource.Resource {
	var out []func() fwresource.Resource
	for _, newResource := range p.fullProvider.Resources(ctx) {
		out = append(out, func() fwresource.Resource { return identityless{newResource().(fullResource)} })
	}
	return out
}

func (p withoutIdentity) EphemeralResources(ctx context.Context) []func() ephemeral.EphemeralResource {
	return p.fullProvider.EphemeralResources(ctx)
}

// fullResource is what every herd resource implements, identity aside.
type fullResource interface {
	fwresource.Resource
	fwresource.ResourceWithConfigure
	fwresource.ResourceWithImportState
}

// identityless forwards everything but IdentitySchema, and
// ValidateConfig and ModifyPlan to the resources that have them.
type identityless struct{ fullResource }

func (r identityless) ValidateConfig(ctx context.Context, req fwresource.ValidateConfigRequest, resp *fwresource.ValidateConfigResponse) {
	if v, ok := r.fullResource.(fwresource.ResourceWithValidateConfig); ok {
		v.ValidateConfig(ctx, req, resp)
	}
}

func (r identityless) ModifyPlan(ctx context.Context, req fwresource.ModifyPlanRequest, resp *fwresource.ModifyPlanResponse) {
	if m, ok := r.fullResource.(fwresource.ResourceWithModifyPlan); ok {
		m.ModifyPlan(ctx, req, resp)
	}
}

func TestProviderWithoutIdentityHasNone(t *testing.T) {
	// The test double above must really hide identity, or the upgrade
	// tests prove nothing.
	for _, newResource := range (withoutIdentity{provider.New("test")().(fullProvider)}).Resources(context.Background()) {
		r := newResource()
		if _, ok := r.(fwresource.ResourceWithIdentity); ok {
			var md fwresource.MetadataResponse
			r.Metadata(context.Background(), fwresource.MetadataRequest{ProviderTypeName: "herd"}, &md)
			t.Errorf("%s still offers an identity", md.TypeName)
		}
	}
	for _, newResource := range provider.New("test")().Resources(context.Background()) {
		r := newResource()
		if _, ok := r.(fwresource.ResourceWithIdentity); !ok {
			var md fwresource.MetadataResponse
			r.Metadata(context.Background(), fwresource.MetadataRequest{ProviderTypeName: "herd"}, &md)
			t.Errorf("%s offers no identity", md.TypeName)
		}
	}
}

// requiredHerd declares the provider for the configuration of an import
// step, which terraform-plugin-testing uses as is.
const requiredHerd = `
terraform {
  required_providers {
    herd = { source = "herd-project/herd" }
  }
}
`

func identityIs(addr string, values map[string]string) statecheck.StateCheck {
	m := map[string]knownvalue.Check{}
	for k, v := range values {
		m[k] = knownvalue.StringExact(v)
	}
	return statecheck.ExpectIdentity(addr, m)
}

// herd_node and herd_pod: a state written without identity gets one on
// the first refresh with no change planned; the identity stays through a
// refresh and an in-place update; both import by identity, and by id.
func TestAccNodePodIdentity(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-ident")
	podHCL := func(node string) string {
		return fmt.Sprintf(`
resource "herd_pod" "web" {
  node   = %s
  name   = "web"
  termination_grace_period_seconds = 0
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "3600"]
  }
}
`, node, n.env.Image)
	}
	config := func(labels string) string {
		return n.providerHCL() + n.nodeHCL("labels = "+labels) + podHCL("herd_node.n.id")
	}
	nodeIdentity := identityIs("herd_node.n", map[string]string{"name": n.agent.Name, "address": n.agent.Addr})
	podIdentity := identityIs("herd_pod.web", map[string]string{"node": n.agent.ID(), "name": "web"})

	resource.Test(t, resource.TestCase{
		TerraformVersionChecks: identityCLI,
		CheckDestroy:           n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			// 1. Written by a provider without identity.
			{
				ProtoV6ProviderFactories: providerFactoriesWithoutIdentity(),
				Config:                   config(`{ tier = "one" }`),
			},
			// 2. The upgrade: the refresh fills the identity in, nothing
			// to change, no error.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(`{ tier = "one" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{nodeIdentity, podIdentity},
			},
			// 3. Another refresh (and an empty plan) keeps it.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(`{ tier = "one" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{nodeIdentity, podIdentity},
			},
			// 4. An in-place update keeps it.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(`{ tier = "two" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_node.n", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.web", plancheck.ResourceActionNoop),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					nodeIdentity, podIdentity,
					statecheck.ExpectKnownValue("herd_node.n", tfjsonpath.New("labels"), knownvalue.MapExact(map[string]knownvalue.Check{
						"tier": knownvalue.StringExact("two"),
					})),
				},
			},
			// 5. Import blocks by identity (into a copy of the state
			// without the resource): no change planned, the same identity.
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_node.n",
				ImportState:              true,
				ImportStateKind:          resource.ImportBlockWithResourceIdentity,
				Config:                   requiredHerd + config(`{ tier = "two" }`),
			},
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_pod.web",
				ImportState:              true,
				ImportStateKind:          resource.ImportBlockWithResourceIdentity,
				Config:                   requiredHerd + config(`{ tier = "two" }`),
			},
			// 6. The id strings keep working, in import blocks and with
			// the import command.
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_pod.web",
				ImportState:              true,
				ImportStateKind:          resource.ImportBlockWithID,
				ImportStateId:            n.podID("web"),
				Config:                   requiredHerd + config(`{ tier = "two" }`),
			},
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_node.n",
				ImportState:              true,
				ImportStateId:            n.agent.ID(),
				ImportStateVerify:        true,
				Config:                   requiredHerd + config(`{ tier = "two" }`),
			},
			// 7. Still nothing to change; this step's configuration is
			// also the one the test's destroy runs with.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(`{ tier = "two" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{nodeIdentity, podIdentity},
			},
		},
	})
}

// herd_service and herd_secret: as for nodes and pods; their identity
// keeps the node they were written through when node changes in place.
func TestAccServiceSecretIdentity(t *testing.T) {
	t.Parallel()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       []string{"ident-svc"},
		Subnet:      netip.MustParsePrefix("10.89.0.0/24"),
		ServiceCIDR: netip.MustParsePrefix("10.98.0.0/16"),
	})
	cn := c.Nodes[0]
	needServiceService(t, cn.Services)
	needSecretService(t, herdv1.NewSecretServiceClient(cn.Conn))
	n := &accNode{env: env, agent: cn.Agent, conn: cn.Conn, pods: cn.Pods, nodes: cn.Nodes}
	// The same node, by its local socket: another node id, changed in
	// place.
	socketID := n.agent.Name + "@unix://" + n.agent.Socket

	objectsHCL := func(node, selector, value string) string {
		return fmt.Sprintf(`
resource "herd_service" "s" {
  node     = %[1]s
  name     = "web"
  selector = { app = %[2]q }
  port {
    port        = 80
    target_port = 8080
  }
}

resource "herd_secret" "s" {
  node      = %[1]s
  namespace = "apps"
  name      = "db"
  data      = { password = %[3]q }
}
`, node, selector, value)
	}
	config := func(node, selector, value string) string {
		return n.providerHCL() + n.nodeHCL("") + objectsHCL(node, selector, value)
	}
	identities := []statecheck.StateCheck{
		identityIs("herd_service.s", map[string]string{"namespace": "default", "name": "web", "node": n.agent.ID()}),
		identityIs("herd_secret.s", map[string]string{"namespace": "apps", "name": "db", "node": n.agent.ID()}),
	}

	resource.Test(t, resource.TestCase{
		TerraformVersionChecks: identityCLI,
		Steps: []resource.TestStep{
			// 1. Written by a provider without identity.
			{
				ProtoV6ProviderFactories: providerFactoriesWithoutIdentity(),
				Config:                   config("herd_node.n.id", "web", "one"),
			},
			// 2. The upgrade: identity filled in, nothing to change.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config("herd_node.n.id", "web", "one"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: identities,
			},
			// 3. Another refresh (and an empty plan) keeps it.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config("herd_node.n.id", "web", "one"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: identities,
			},
			// 4. In-place updates keep it: the selector and the data, then
			// the node the objects are written through.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config("herd_node.n.id", "api", "two"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_service.s", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: append([]statecheck.StateCheck{
					statecheck.ExpectKnownValue("herd_service.s", tfjsonpath.New("selector"), knownvalue.MapExact(map[string]knownvalue.Check{
						"app": knownvalue.StringExact("api"),
					})),
				}, identities...),
			},
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(fmt.Sprintf("%q", socketID), "api", "two"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_service.s", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: append([]statecheck.StateCheck{
					statecheck.ExpectKnownValue("herd_service.s", tfjsonpath.New("node"), knownvalue.StringExact(socketID)),
				}, identities...),
			},
			// 5. Import blocks by identity (into a copy of the state
			// without the resource), through the node of the identity.
			// Secret values are never imported: the plan writes the
			// configured data.
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_service.s",
				ImportState:              true,
				ImportStateKind:          resource.ImportBlockWithResourceIdentity,
				Config:                   requiredHerd + config("herd_node.n.id", "api", "two"),
			},
			{
				ProtoV6ProviderFactories: providerFactories(),
				ResourceName:             "herd_secret.s",
				ImportState:              true,
				ImportStateKind:          resource.ImportBlockWithResourceIdentity,
				Config:                   requiredHerd + config("herd_node.n.id", "api", "two"),
				ExpectNonEmptyPlan:       true,
				ImportPlanChecks: resource.ImportPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate)},
				},
			},
			// 6. Still nothing to change; this step's configuration is
			// also the one the test's destroy runs with.
			{
				ProtoV6ProviderFactories: providerFactories(),
				Config:                   config(fmt.Sprintf("%q", socketID), "api", "two"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: identities,
			},
		},
	})
}
