package resources_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
	"github.com/herd-project/terraform-provider-herd/provider"
)

// startDeploymentCluster starts a cluster of three nodes.
func startDeploymentCluster(t *testing.T, subnet string, names ...string) *acctest.TestCluster {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	c := acctest.SharedEnv(t).NewCluster(t, acctest.ClusterOptions{
		Names:       names,
		Subnet:      netip.MustParsePrefix(subnet),
		ServiceCIDR: accServiceCIDR,
	})
	dc := herdv1.NewDeploymentServiceClient(c.Nodes[0].Conn)
	needDeploymentService(t, dc)
	needDeploymentDriver(t, dc, c.Env.Image)
	return c
}

// needDeploymentDriver skips the test when no member drives deployments
// (the agentd under test serves DeploymentService without its driver): a
// deployment of 0 replicas is never observed within a minute.
func needDeploymentDriver(t *testing.T, dc herdv1.DeploymentServiceClient, image string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	probe := &herdv1.DeploymentSpec{Name: "gate-probe", Selector: map[string]string{"app": "gate-probe"},
		Template: &herdv1.PodSpec{Labels: map[string]string{"app": "gate-probe"},
			Containers: []*herdv1.ContainerSpec{{Name: "c", Image: image}}}}
	res, err := dc.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: probe})
	if err != nil {
		t.Fatalf("apply the gate probe deployment: %v", err)
	}
	defer func() {
		_, _ = dc.DeleteDeployment(context.Background(), &herdv1.DeleteDeploymentRequest{Name: "gate-probe"})
	}()
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := dc.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "gate-probe"})
		return err == nil && d.GetStatus().GetObservedVersion() >= res.GetDeployment().GetVersion(), nil
	})
	if err != nil {
		t.Skipf("no member drives deployments yet (a deployment of 0 replicas was not observed): %v", err)
	}
}

// needDeploymentService skips the test only when the agentd under test
// does not implement or serve DeploymentService; any other answer but
// NotFound for a missing deployment fails it.
func needDeploymentService(t *testing.T, dc herdv1.DeploymentServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := dc.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Namespace: "default", Name: "gate-probe"})
	switch status.Code(err) {
	case codes.Unimplemented:
		t.Skipf("agentd does not implement DeploymentService yet: %v", err)
	case codes.FailedPrecondition:
		// The nodes are a cluster: agentd serves the API without its
		// registry wired in.
		t.Skipf("agentd does not serve deployments in a cluster yet: %v", err)
	case codes.NotFound:
	default:
		t.Fatalf("GetDeployment of a missing deployment: %v, want NotFound", err)
	}
}

// warningRecorder serves the provider and keeps the warnings of every
// plan, which terraform-plugin-testing does not expose.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) factories() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"herd": func() (tfprotov6.ProviderServer, error) {
			s, err := providerserver.NewProtocol6WithError(provider.New("test")())()
			return &recordingServer{ProviderServer: s, rec: w}, err
		},
	}
}

// take returns the warnings recorded since the last take.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

type recordingServer struct {
	tfprotov6.ProviderServer
	rec *warningRecorder
}

func (s *recordingServer) PlanResourceChange(ctx context.Context, req *tfprotov6.PlanResourceChangeRequest) (*tfprotov6.PlanResourceChangeResponse, error) {
	resp, err := s.ProviderServer.PlanResourceChange(ctx, req)
	if resp != nil {
		s.rec.mu.Lock()
		for _, d := range resp.Diagnostics {
			if d.Severity == tfprotov6.DiagnosticSeverityWarning {
				s.rec.warnings = append(s.rec.warnings, d.Summary+": "+d.Detail)
			}
		}
		s.rec.mu.Unlock()
	}
	return resp, err
}

// expectWarning is a plan check: some plan since the last one checked
// warned with all of parts.
type expectWarning struct {
	rec   *warningRecorder
	parts []string
}

func (e expectWarning) CheckPlan(_ context.Context, _ plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	got := e.rec.take()
	for _, w := range got {
		ok := true
		for _, p := range e.parts {
			ok = ok && strings.Contains(w, p)
		}
		if ok {
			return
		}
	}
	resp.Error = fmt.Errorf("no plan warning with %q; warnings: %q", e.parts, got)
}

const spreadPlacement = `{ strategy = "spread" }`

// deploymentAccHCL is herd_deployment.web (busybox httpd answering its
// message, with a readiness probe) through node, and herd_service.web over it.
func deploymentAccHCL(c *acctest.TestCluster, node *acctest.ClusterNode, replicas int, message, placement string) string {
	certs := c.Env.Certs
	return fmt.Sprintf(`
provider "herd" {
  ca_cert     = %q
  client_cert = %q
  client_key  = %q
}

resource "herd_deployment" "web" {
  node     = %q
  name     = "web"
  replicas = %d
  selector = { app = "web" }
  template {
    labels = { app = "web" }
    termination_grace_period_seconds = 1
    container {
      name    = "httpd"
      image   = %q
      command = ["sh", "-c", "mkdir -p /www && echo \"$MESSAGE $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
      env     = { MESSAGE = %q }
      cpu            = "100m"
      memory         = "32Mi"
      memory_request = "16Mi"
      port {
        name           = "http"
        container_port = 8080
      }
      readiness_probe {
        http_get {
          path      = "/"
          port_name = "http"
        }
        period_seconds = 1
      }
    }
  }
  placement = %s
  timeouts {
    create = "5m"
    update = "5m"
    delete = "3m"
  }
}

resource "herd_service" "web" {
  node     = %q
  name     = "web"
  selector = herd_deployment.web.selector
  port {
    port             = 80
    target_port_name = "http"
  }
}
`, certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile, node.Agent.ID(), replicas, c.Env.Image, message, placement,
		node.Agent.ID())
}

// replicaSet is replica_status as pod name → "uid node revision ready".
func replicaSet(s *terraform.State) (map[string][4]string, error) {
	rs, ok := s.RootModule().Resources["herd_deployment.web"]
	if !ok {
		return nil, fmt.Errorf("herd_deployment.web not in state")
	}
	a := rs.Primary.Attributes
	n, err := strconv.Atoi(a["replica_status.#"])
	if err != nil {
		return nil, fmt.Errorf("replica_status.#: %w", err)
	}
	out := make(map[string][4]string, n)
	for i := range n {
		p := fmt.Sprintf("replica_status.%d.", i)
		out[a[p+"pod"]] = [4]string{a[p+"uid"], a[p+"node"], a[p+"revision"], a[p+"ready"]}
	}
	return out, nil
}

// checkReplicas records the replica set in dst and checks that it has
// want replicas, every one of revision rev and ready, on the cluster's
// nodes; survivors (when set) must all be in it with the same uid, or,
// when keepOnlyOld, every replica must be one of them.
func checkReplicas(c *acctest.TestCluster, dst *map[string][4]string, want int, rev string, survivors *map[string][4]string, keepOnlyOld bool) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		set, err := replicaSet(s)
		if err != nil {
			return err
		}
		if len(set) != want {
			return fmt.Errorf("%d replicas, want %d: %v", len(set), want, set)
		}
		var names []string
		for _, n := range c.Nodes {
			names = append(names, n.Agent.Name)
		}
		for pod, r := range set {
			if r[2] != rev || r[3] != "true" {
				return fmt.Errorf("replica %s: revision %s ready %s, want revision %s ready", pod, r[2], r[3], rev)
			}
			if !slices.Contains(names, r[1]) {
				return fmt.Errorf("replica %s on %q, not a node of the cluster", pod, r[1])
			}
		}
		if survivors != nil {
			old := *survivors
			if keepOnlyOld {
				for pod, r := range set {
					if o, ok := old[pod]; !ok || o[0] != r[0] {
						return fmt.Errorf("replica %s (uid %s) is not one of the previous replicas %v", pod, r[0], old)
					}
				}
			} else {
				for pod, o := range old {
					if r, ok := set[pod]; !ok || r[0] != o[0] {
						return fmt.Errorf("previous replica %s (uid %s) did not survive: %v", pod, o[0], set)
					}
				}
			}
		}
		*dst = set
		return nil
	}
}

// noneOf checks that no replica of old is left.
func noneOf(old *map[string][4]string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		set, err := replicaSet(s)
		if err != nil {
			return err
		}
		for pod := range set {
			if _, ok := (*old)[pod]; ok {
				return fmt.Errorf("replica %s of the previous revision is still there", pod)
			}
		}
		return nil
	}
}

// noReplicasLeft checks that no node runs a pod of deployment default/web.
func noReplicasLeft(c *acctest.TestCluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		res, err := n.Pods.ListPods(ctx, &herdv1.ListPodsRequest{
			LabelSelector: map[string]string{spec.LabelDeployment: spec.DeploymentLabel("default", "web")},
		})
		if err != nil {
			return fmt.Errorf("list pods on %s: %w", n.Agent.Name, err)
		}
		if len(res.GetPods()) > 0 {
			return fmt.Errorf("%s still runs %d replica(s), e.g. %s", n.Agent.Name, len(res.GetPods()), res.GetPods()[0].GetSpec().GetName())
		}
	}
	return nil
}

// A deployment on a real cluster of three: created with three replicas
// behind a service (the plan's dry run places them: planned_nodes), the
// next plan empty; an env change is planned as an in-place update whose
// warning is the rollout summary, and rolls out revision 2 (no replica of
// revision 1 left); scaled 3 → 5 → 2 in place (survivors keep their pod
// and uid); a max_per_node the cluster cannot meet is refused at plan
// time; imported by NAMESPACE/NAME@NODEID; destroyed with every replica.
func TestAccDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	c := startDeploymentCluster(t, "10.87.0.0/24", "dep-a", "dep-b", "dep-c")
	through := c.Nodes[1] // any member writes; not the first, to show it
	dc := herdv1.NewDeploymentServiceClient(through.Conn)
	rec := &warningRecorder{}
	var rev1, rev2, five, two map[string][4]string
	const res = "herd_deployment.web"

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: rec.factories(),
		CheckDestroy: func(*terraform.State) error {
			_, err := dc.GetDeployment(context.Background(), &herdv1.GetDeploymentRequest{Namespace: "default", Name: "web"})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("GetDeployment after destroy: %v, want NotFound", err)
			}
			return noReplicasLeft(c)
		},
		Steps: []resource.TestStep{
			{
				Config: deploymentAccHCL(c, through, 3, "one", spreadPlacement),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreate),
						expectWarning{rec: rec, parts: []string{"Deployment rollout plan", "default/web"}},
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "id", "default/web"),
					resource.TestCheckResourceAttr(res, "revision", "1"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					resource.TestCheckResourceAttr(res, "ready_replicas", "3"),
					resource.TestCheckResourceAttr(res, "available_replicas", "3"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "3"),
					resource.TestCheckResourceAttr(res, "strategy.type", spec.StrategyRollingUpdate),
					resource.TestCheckResourceAttr(res, "strategy.max_surge", "1"),
					resource.TestCheckResourceAttr(res, "strategy.progress_deadline_seconds", "600"),
					resource.TestCheckResourceAttrSet(res, "uid"),
					checkReplicas(c, &rev1, 3, "1", nil, false),
				),
			},
			{
				Config: deploymentAccHCL(c, through, 3, "two", spreadPlacement),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
						expectWarning{rec: rec, parts: []string{"Deployment rollout plan", "default/web", "2"}},
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					resource.TestCheckResourceAttr(res, "updated_replicas", "3"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "3"),
					checkReplicas(c, &rev2, 3, "2", nil, false),
					noneOf(&rev1),
				),
			},
			{
				Config: deploymentAccHCL(c, through, 5, "two", spreadPlacement),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "ready_replicas", "5"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "2"),
					checkReplicas(c, &five, 5, "2", &rev2, false),
				),
			},
			{
				Config: deploymentAccHCL(c, through, 2, "two", spreadPlacement),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "0"),
					checkReplicas(c, &two, 2, "2", &five, true),
				),
			},
			{
				// Four replicas, at most one per node, on three nodes: the
				// dry run refuses it at plan time.
				Config:      deploymentAccHCL(c, through, 4, "two", `{ strategy = "spread", max_per_node = 1 }`),
				PlanOnly:    true,
				ExpectError: errRe("Deployment does not fit the cluster", "default/web"),
			},
			{
				ResourceName:      res,
				ImportState:       true,
				ImportStateId:     "default/web@" + through.Agent.ID(),
				ImportStateVerify: true,
				// planned_nodes is what a plan said; an import has none.
				ImportStateVerifyIgnore: []string{"timeouts", "planned_nodes"},
			},
		},
	})
}
