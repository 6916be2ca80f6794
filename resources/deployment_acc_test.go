package resources_test

import (
	"context"
	"fmt"
	"maps"
	"net"
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

// startDeploymentCluster starts a cluster of three nodes and pushes the
// webapp image to the Env's registry. Nothing here probes whether agentd
// drives deployments: an agentd that does not fails the test.
func startDeploymentCluster(t *testing.T, subnet string, names ...string) (*acctest.TestCluster, string) {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       names,
		Subnet:      netip.MustParsePrefix(subnet),
		ServiceCIDR: accServiceCIDR,
	})
	image, err := env.WebappImage(context.Background())
	if err != nil {
		t.Fatalf("push the webapp image: %v", err)
	}
	return c, image
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

// webConf is what deploymentAccHCL declares.
type webConf struct {
	replicas  int
	revision  string // the webapp's REVISION: what it answers, and a template change
	ready     string // the webapp's READY: "fail" makes /ready answer 503
	placement string // HCL of placement
	strategy  string // HCL of strategy; "" leaves it out (the defaults)
}

// deploymentAccHCL is herd_deployment.web (the webapp answering its
// revision, with a readiness probe on /ready) through node, and
// herd_service.web over it.
func deploymentAccHCL(c *acctest.TestCluster, node *acctest.ClusterNode, image string, w webConf) string {
	certs := c.Env.Certs
	strategy := ""
	if w.strategy != "" {
		strategy = "strategy = " + w.strategy
	}
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
    termination_grace_period_seconds = 5
    container {
      name           = "web"
      image          = %q
      env            = { REVISION = %q, READY = %q }
      cpu            = "100m"
      memory         = "64Mi"
      memory_request = "16Mi"
      port {
        name           = "http"
        container_port = 8080
      }
      readiness_probe {
        http_get {
          path      = "/ready"
          port_name = "http"
        }
        period_seconds = 1
      }
    }
  }
  placement = %s
  %s
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
`, certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile, node.Agent.ID(), w.replicas, image, w.revision, w.ready,
		w.placement, strategy, node.Agent.ID())
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

// plannedNodes checks that planned_nodes holds exactly want, in any order.
func plannedNodes(want ...string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources["herd_deployment.web"]
		if !ok {
			return fmt.Errorf("herd_deployment.web not in state")
		}
		a := rs.Primary.Attributes
		n, err := strconv.Atoi(a["planned_nodes.#"])
		if err != nil {
			return fmt.Errorf("planned_nodes.#: %w", err)
		}
		got := make([]string, n)
		for i := range n {
			got[i] = a[fmt.Sprintf("planned_nodes.%d", i)]
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			return fmt.Errorf("planned_nodes %v, want %v", got, w)
		}
		return nil
	}
}

// serviceAnswers checks that herd_service.web's cluster IP, asked from
// inside node's namespace, answers only revision rev, each time from one
// of the replicas in the state (the webapp answers "REVISION HOSTNAME" and
// a replica's hostname is its pod name). It waits for the first answer:
// the service's rules reach the node shortly after apply.
func serviceAnswers(node *acctest.ClusterNode, rev string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		svc, ok := s.RootModule().Resources["herd_service.web"]
		if !ok {
			return fmt.Errorf("herd_service.web not in state")
		}
		set, err := replicaSet(s)
		if err != nil {
			return err
		}
		addr := net.JoinHostPort(svc.Primary.Attributes["cluster_ip"], "80")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var last error
		err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(context.Context) (bool, error) {
			_, last = acctest.HTTPGetIn(node.Lab.Path(), addr)
			return last == nil, nil
		})
		if err != nil {
			return fmt.Errorf("service %s never answered from %s: %v", addr, node.Agent.Name, last)
		}
		for range 3 * len(set) {
			body, err := acctest.HTTPGetIn(node.Lab.Path(), addr)
			if err != nil {
				return fmt.Errorf("service %s from %s: %w", addr, node.Agent.Name, err)
			}
			got, host, _ := strings.Cut(body, " ")
			if _, ok := set[host]; got != rev || !ok {
				return fmt.Errorf("service %s answered %q: want revision %s from one of %v", addr, body, rev, slices.Collect(maps.Keys(set)))
			}
		}
		return nil
	}
}

// deleteReplica deletes one replica of default/web on its node, behind
// the driver's back, and waits until the deployment has want ready
// replicas again without it. It returns the deleted pod and the replicas
// left untouched (as replicaSet has them).
func deleteReplica(t *testing.T, c *acctest.TestCluster, dc herdv1.DeploymentServiceClient, want int) (string, map[string][4]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := &herdv1.GetDeploymentRequest{Namespace: "default", Name: "web"}
	d, err := dc.GetDeployment(ctx, req)
	if err != nil {
		t.Fatalf("get deployment default/web: %v", err)
	}
	rs := d.GetStatus().GetReplicaStatus()
	if len(rs) != want {
		t.Fatalf("deployment default/web has %d replicas before the delete, want %d: %v", len(rs), want, rs)
	}
	victim := rs[0]
	kept := map[string][4]string{}
	for _, r := range rs[1:] {
		kept[r.GetPod()] = [4]string{r.GetUid(), r.GetNode(), strconv.FormatInt(r.GetRevision(), 10), strconv.FormatBool(r.GetReady())}
	}
	var on *acctest.ClusterNode
	for _, n := range c.Nodes {
		if n.Agent.Name == victim.GetNode() {
			on = n
		}
	}
	if on == nil {
		t.Fatalf("replica %s on %q, not a node of the cluster", victim.GetPod(), victim.GetNode())
	}
	if _, err := on.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: victim.GetPod()}); err != nil {
		t.Fatalf("delete replica %s on %s: %v", victim.GetPod(), on.Agent.Name, err)
	}
	var last *herdv1.Deployment
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := dc.GetDeployment(ctx, req)
		if err != nil {
			return false, nil //nolint:nilerr // a member busy with the replacement: ask again
		}
		last = d
		st := d.GetStatus()
		if st.GetPhase() != spec.PhaseComplete || st.GetReadyReplicas() != int32(want) || len(st.GetReplicaStatus()) != want {
			return false, nil
		}
		for _, r := range st.GetReplicaStatus() {
			if r.GetPod() == victim.GetPod() || !r.GetReady() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("deployment default/web after deleting replica %s out of band: %v; last status %v", victim.GetPod(), err, last.GetStatus())
	}
	return victim.GetPod(), kept
}

// A deployment of the webapp on a real cluster of three: created with
// three replicas behind a service (the plan's dry run places them, one
// per node: the rollout warning and planned_nodes), the next plan empty;
// an env change is planned as an in-place update whose warning is the
// rollout summary and rolls out revision 2 (no replica of revision 1 left,
// the service answers revision 2 only); a replica deleted on its node out
// of band is replaced by agentd and the next plan is empty; scaled 3 → 5
// → 2 in place (survivors keep their pod and uid); a revision whose
// readiness fails makes apply fail with the probe's message, and the
// state shows it rolled back to revision 2 on the same replicas; a fixed
// template rolls out again; a max_per_node the cluster cannot meet is
// refused at plan time; imported by NAMESPACE/NAME@NODEID; destroyed with
// every replica.
func TestAccDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	c, image := startDeploymentCluster(t, "10.87.0.0/24", "dep-a", "dep-b", "dep-c")
	through := c.Nodes[1] // any member writes; not the first, to show it
	dc := herdv1.NewDeploymentServiceClient(through.Conn)
	rec := &warningRecorder{}
	var rev1, rev2, healed, survivors, five, two, rolledBack, fixed map[string][4]string
	var deleted string
	const res = "herd_deployment.web"
	web := func(replicas int, revision string) webConf {
		return webConf{replicas: replicas, revision: revision, placement: spreadPlacement}
	}
	hcl := func(w webConf) string { return deploymentAccHCL(c, through, image, w) }

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
				Config: hcl(web(3, "1")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreate),
						expectWarning{rec: rec, parts: []string{"Deployment rollout plan",
							"default/web: create revision 1, 3 replicas", "dep-a +1", "dep-b +1", "dep-c +1"}},
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "id", "default/web"),
					resource.TestCheckResourceAttr(res, "revision", "1"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					resource.TestCheckResourceAttr(res, "ready_replicas", "3"),
					resource.TestCheckResourceAttr(res, "available_replicas", "3"),
					plannedNodes("dep-a", "dep-b", "dep-c"),
					resource.TestCheckResourceAttr(res, "strategy.type", spec.StrategyRollingUpdate),
					resource.TestCheckResourceAttr(res, "strategy.max_surge", "1"),
					resource.TestCheckResourceAttr(res, "strategy.progress_deadline_seconds", "600"),
					resource.TestCheckResourceAttrSet(res, "uid"),
					checkReplicas(c, &rev1, 3, "1", nil, false),
					serviceAnswers(c.Nodes[0], "1"),
				),
			},
			{
				Config: hcl(web(3, "2")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
						expectWarning{rec: rec, parts: []string{"Deployment rollout plan", "default/web: revision 1 → 2, 3 replicas"}},
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
					serviceAnswers(c.Nodes[2], "2"),
				),
			},
			{
				// A replica deleted on its node behind the driver's back is
				// replaced; the state's replicas follow on refresh and the
				// plan stays empty.
				PreConfig: func() { deleted, survivors = deleteReplica(t, c, dc, 3) },
				Config:    hcl(web(3, "2")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					resource.TestCheckResourceAttr(res, "ready_replicas", "3"),
					checkReplicas(c, &healed, 3, "2", &survivors, false),
					func(*terraform.State) error {
						if _, ok := healed[deleted]; ok {
							return fmt.Errorf("replica %s, deleted out of band, is still in the state", deleted)
						}
						return nil
					},
				),
			},
			{
				Config: hcl(web(5, "2")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
						expectWarning{rec: rec, parts: []string{"Deployment rollout plan", "default/web: scale 3 → 5 (revision 2 unchanged)"}},
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "ready_replicas", "5"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "2"),
					checkReplicas(c, &five, 5, "2", &healed, false),
				),
			},
			{
				Config: hcl(web(2, "2")),
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
				// Revision 3 never gets ready (/ready answers 503): past its
				// progress deadline the driver rolls back to revision 2 and
				// the apply fails with the probe's message.
				Config: hcl(webConf{replicas: 2, revision: "3", ready: "fail", placement: spreadPlacement,
					strategy: `{ progress_deadline_seconds = 20 }`}),
				ExpectError: errRe("Deployment rollout failed", "revision 3 of deployment default/web failed",
					"revision 3 failed and was rolled back to revision 2", "503", "rolled back to revision 2"),
			},
			{
				// The state records the rollback: phase, the revision the
				// replicas run, the untouched replicas of revision 2.
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseRolledBack),
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "ready_replicas", "2"),
					resource.TestCheckResourceAttrWith(res, "message", func(v string) error {
						if !strings.Contains(v, "rolled back to revision 2") || !strings.Contains(v, "503") {
							return fmt.Errorf("message %q: want the rollback and the probe's 503", v)
						}
						return nil
					}),
					checkReplicas(c, &rolledBack, 2, "2", &two, true),
				),
			},
			{
				// The template fixed: the next revision rolls out.
				Config: hcl(web(2, "2")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "4"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					checkReplicas(c, &fixed, 2, "4", nil, false),
					noneOf(&rolledBack),
					serviceAnswers(c.Nodes[0], "2"),
				),
			},
			{
				// Four replicas, at most one per node, on three nodes: the
				// dry run refuses it at plan time.
				Config:      hcl(webConf{replicas: 4, revision: "2", placement: `{ strategy = "spread", max_per_node = 1 }`}),
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
