package resources_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
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
)

// accServiceCIDR is not agentd's default, so that a cluster IP in it shows
// the flag was honoured.
var accServiceCIDR = netip.MustParsePrefix("10.97.0.0/16")

// startServiceNode starts a one-node cluster (a node that joins nobody
// founds its own) inside a lab node, with a service CIDR.
func startServiceNode(t *testing.T, name string, subnet string) (*accNode, herdv1.ServiceServiceClient) {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       []string{name},
		Subnet:      netip.MustParsePrefix(subnet),
		ServiceCIDR: accServiceCIDR,
	})
	cn := c.Nodes[0]
	needServiceService(t, cn.Services)
	n := &accNode{env: env, agent: cn.Agent, conn: cn.Conn, pods: cn.Pods, nodes: cn.Nodes}
	return n, cn.Services
}

// needServiceService skips the test ONLY when the agentd under test does
// not implement ServiceService at all (codes.Unimplemented): the gate for
// the time the provider's resource existed before agentd's side. Any other
// answer goes on, and any other error fails the test.
func needServiceService(t *testing.T, sc herdv1.ServiceServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := sc.GetService(ctx, &herdv1.GetServiceRequest{Namespace: "default", Name: "gate-probe"})
	switch status.Code(err) {
	case codes.Unimplemented:
		t.Skipf("agentd does not implement ServiceService yet: %v", err)
	case codes.NotFound:
	default:
		t.Fatalf("GetService of a missing service: %v, want NotFound", err)
	}
}

// serviceHCL is a pod labelled app=web, tier=front with a container port
// "http", and herd_service.s with the given body.
func serviceHCL(n *accNode, body string) string {
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_pod" "web" {
  node   = herd_node.n.id
  name   = "web"
  labels = { app = "web", tier = "front" }
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "3600"]
    port {
      name           = "http"
      container_port = 8080
    }
  }
}

resource "herd_service" "s" {
  node = herd_node.n.id
  name = "web"
%s
}
`, n.env.Image, body)
}

const (
	svcClusterIP = `
  selector = { app = "web" }
  port {
    port             = 80
    target_port_name = "http"
  }`
	svcUpdated = `
  selector = { app = "web", tier = "front" }
  port {
    name             = "http"
    port             = 80
    target_port_name = "http"
  }
  port {
    name        = "metrics"
    port        = 9090
    target_port = 9091
  }`
	svcNodePort = `
  type     = "NodePort"
  selector = { app = "web", tier = "front" }
  port {
    name = "http"
    port = 80
  }
  port {
    name     = "dns"
    port     = 53
    protocol = "UDP"
  }`
)

// The life of a service on a real (one-node) cluster: created over a pod,
// its endpoint seen; selector and ports changed in place (same cluster IP
// and uid); imported by NAMESPACE/NAME@NODEID; replaced by a type change;
// node ports kept by an in-place change; deleted behind Terraform's back
// and recreated; destroyed.
func TestAccServiceLifecycle(t *testing.T) {
	t.Parallel()
	n, sc := startServiceNode(t, "svc-life", "10.81.0.0/24")
	var ip1, uid1, version1, uid2, np0, np1, uid3 string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			_, err := sc.GetService(context.Background(), &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("GetService after destroy: %v, want NotFound", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			// 1. A ClusterIP service over the pod.
			{
				Config: serviceHCL(n, svcClusterIP),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_service.s", "id", "default/web"),
					resource.TestCheckResourceAttr("herd_service.s", "namespace", "default"),
					resource.TestCheckResourceAttr("herd_service.s", "type", "ClusterIP"),
					resource.TestCheckResourceAttr("herd_service.s", "session_affinity", "None"),
					resource.TestCheckResourceAttr("herd_service.s", "dns_name", "web.default.svc.cluster.local"),
					resource.TestCheckResourceAttr("herd_service.s", "synced", "true"),
					resource.TestCheckResourceAttr("herd_service.s", "port.#", "1"),
					resource.TestCheckNoResourceAttr("herd_service.s", "port.0.name"),
					resource.TestCheckResourceAttr("herd_service.s", "port.0.protocol", "TCP"),
					resource.TestCheckNoResourceAttr("herd_service.s", "port.0.target_port"),
					resource.TestCheckResourceAttr("herd_service.s", "port.0.target_port_name", "http"),
					resource.TestCheckResourceAttr("herd_service.s", "port.0.node_port", "0"),
					resource.TestCheckResourceAttrWith("herd_service.s", "version", atLeast(1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "version", record(&version1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", record(&uid1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "cluster_ip", record(&ip1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "cluster_ip", inPrefix(accServiceCIDR)),
					// agentd publishes the pod as an endpoint on its own.
					func(*terraform.State) error { return waitEndpoint(t, sc, "web") },
				),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			// 2. A refresh sees the endpoint: the pod, at its pod IP.
			{
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_service.s", "endpoints.#", "1"),
					resource.TestCheckResourceAttr("herd_service.s", "endpoints.0.pod", "web"),
					resource.TestCheckResourceAttr("herd_service.s", "endpoints.0.node", n.agent.Name),
					resource.TestCheckResourceAttr("herd_service.s", "endpoints.0.ready", "true"),
					resource.TestCheckResourceAttrPair("herd_service.s", "endpoints.0.ip", "herd_pod.web", "pod_ip"),
				),
			},
			// 3. Selector and ports change in place: same cluster IP and uid,
			// a new version.
			{
				Config: serviceHCL(n, svcUpdated),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_service.s", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_service.s", "cluster_ip", equals(&ip1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", equals(&uid1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "version", differs(&version1)),
					resource.TestCheckResourceAttr("herd_service.s", "selector.tier", "front"),
					resource.TestCheckResourceAttr("herd_service.s", "port.#", "2"),
					resource.TestCheckResourceAttr("herd_service.s", "port.1.name", "metrics"),
					resource.TestCheckResourceAttr("herd_service.s", "port.1.target_port", "9091"),
					resource.TestCheckResourceAttr("herd_service.s", "synced", "true"),
					func(*terraform.State) error {
						svc, err := sc.GetService(context.Background(), &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
						if err != nil {
							return err
						}
						if got := svc.GetSpec().GetSelector(); len(got) != 2 || got["tier"] != "front" {
							return fmt.Errorf("agentd has selector %v", got)
						}
						if got := svc.GetSpec().GetPorts(); len(got) != 2 || got[1].GetTargetPort() != 9091 {
							return fmt.Errorf("agentd has ports %v", got)
						}
						return nil
					},
				),
			},
			// 4. Import by NAMESPACE/NAME@NODEID reproduces the state.
			{
				ResourceName:            "herd_service.s",
				ImportState:             true,
				ImportStateId:           "default/web@" + n.agent.ID(),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			// 5. A type change replaces the service: a new uid, node ports
			// allocated in agentd's range.
			{
				Config: serviceHCL(n, svcNodePort),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_service.s", plancheck.ResourceActionDestroyBeforeCreate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_service.s", "type", "NodePort"),
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", differs(&uid1)),
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", record(&uid2)),
					resource.TestCheckResourceAttrWith("herd_service.s", "cluster_ip", inPrefix(accServiceCIDR)),
					resource.TestCheckResourceAttr("herd_service.s", "port.0.target_port", "80"),
					resource.TestCheckResourceAttrWith("herd_service.s", "port.0.node_port", between(30000, 32767)),
					resource.TestCheckResourceAttrWith("herd_service.s", "port.1.node_port", between(30000, 32767)),
					resource.TestCheckResourceAttrWith("herd_service.s", "port.0.node_port", record(&np0)),
					resource.TestCheckResourceAttrWith("herd_service.s", "port.1.node_port", record(&np1)),
				),
			},
			// 6. An in-place change of a NodePort service keeps its node
			// ports, known in the plan already.
			{
				Config: serviceHCL(n, svcNodePort+`
  session_affinity = "ClientIP"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_service.s", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_service.s", "session_affinity", "ClientIP"),
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", equals(&uid2)),
					resource.TestCheckResourceAttrWith("herd_service.s", "port.0.node_port", equals(&np0)),
					resource.TestCheckResourceAttrWith("herd_service.s", "port.1.node_port", equals(&np1)),
				),
			},
			// 7. Deleted behind Terraform's back (DeleteService over gRPC):
			// the next plan creates it again.
			{
				PreConfig: func() {
					resp, err := sc.DeleteService(context.Background(), &herdv1.DeleteServiceRequest{Namespace: "default", Name: "web"})
					if err != nil || !resp.GetExisted() {
						t.Fatalf("DeleteService: %v, existed=%v", err, resp.GetExisted())
					}
				},
				Config: serviceHCL(n, svcNodePort+`
  session_affinity = "ClientIP"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_service.s", plancheck.ResourceActionCreate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", differs(&uid2)),
					resource.TestCheckResourceAttrWith("herd_service.s", "uid", record(&uid3)),
					resource.TestCheckResourceAttr("herd_service.s", "synced", "true"),
				),
			},
		},
	})
}

// waitEndpoint waits until the node reports pod as a ready endpoint of
// default/web.
func waitEndpoint(t *testing.T, sc herdv1.ServiceServiceClient, pod string) error {
	var last *herdv1.Service
	var err error
	if wait.PollUntilContextTimeout(ctx(t), 200*time.Millisecond, 30*time.Second, true, func(c context.Context) (bool, error) {
		last, err = sc.GetService(c, &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
		for _, e := range last.GetStatus().GetEndpoints() {
			if e.GetPod() == pod && e.GetReady() {
				return true, nil
			}
		}
		return false, nil
	}) == nil {
		return nil
	}
	return fmt.Errorf("pod %s is not a ready endpoint of default/web after 30s (last error %v): %v", pod, err, last)
}

// inPrefix checks that an attribute is an address in p.
func inPrefix(p netip.Prefix) func(string) error {
	return func(v string) error {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return err
		}
		if !p.Contains(a) {
			return fmt.Errorf("%s is not in %s", a, p)
		}
		return nil
	}
}

// between checks an integer attribute's range.
func between(lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		if n < lo || n > hi {
			return fmt.Errorf("got %d, want %d to %d", n, lo, hi)
		}
		return nil
	}
}
