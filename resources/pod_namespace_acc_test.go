package resources_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// A provider holding an operator certificate limited to namespace web
// manages a pod of web end to end (create, refresh through the node's pod
// list of web, an empty plan, destroy), and is refused a pod of another
// namespace at apply, which leaves nothing behind.
func TestAccPodNamespace(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-podns")
	cert, key, err := n.env.Certs.CA.IssueClientAccess("wes", pki.Access{Role: pki.RoleOperator, Namespaces: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "wes.crt"), filepath.Join(dir, "wes.key")
	if err := os.WriteFile(certFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	providerHCL := fmt.Sprintf(`
provider "herd" {
  ca_cert     = %q
  client_cert = %q
  client_key  = %q
}
`, n.env.Certs.CAFile, certFile, keyFile)
	pod := func(name, namespace string) string {
		return fmt.Sprintf(`
resource "herd_pod" %[1]q {
  node                             = herd_node.n.id
  name                             = %[1]q
  namespace                        = %[2]q
  termination_grace_period_seconds = 0
  container {
    name    = "main"
    image   = %[3]q
    command = ["sleep", "3600"]
  }
}
`, name, namespace, n.env.Image)
	}
	hcl := providerHCL + n.nodeHCL("") + pod("inweb", "web")

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: hcl,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.inweb", "namespace", "web"),
					resource.TestCheckResourceAttr("herd_pod.inweb", "phase", "Running"),
					func(*terraform.State) error {
						p, err := n.pods.GetPod(ctx(t), &herdv1.GetPodRequest{Name: "inweb"})
						if err != nil {
							return err
						}
						if got := p.GetSpec().GetNamespace(); got != "web" {
							return fmt.Errorf("agentd has pod inweb in namespace %q, want web", got)
						}
						return nil
					},
				),
			},
			{
				Config: hcl,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				Config:      hcl + pod("indefault", "default"),
				ExpectError: regexp.MustCompile(`(?s)may not use namespace "default"`),
				Check: func(*terraform.State) error {
					_, err := n.pods.GetPod(ctx(t), &herdv1.GetPodRequest{Name: "indefault"})
					if err == nil {
						return fmt.Errorf("the refused pod indefault exists")
					}
					return nil
				},
			},
		},
	})
}
