package resources_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
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

// clusterNodes are the Terraform names of the test cluster's nodes, in the
// order of TestCluster.Nodes.
var clusterNodes = []string{"a", "b", "c"}

// startClusterOf3 starts clu-a and clu-b as one cluster and clu-c as a
// cluster of its own (started without --join), all in one lab. A founding
// node claims a pod CIDR block picked by its name, so clu-c's claim does not
// collide with clu-a's or clu-b's when it joins; podCIDRIsMembers fails if
// the claims move (agentd builds a node's pod network on its first claim).
func startClusterOf3(t *testing.T) *acctest.TestCluster {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	c := acctest.SharedEnv(t).NewCluster(t, acctest.ClusterOptions{
		Names:       []string{"clu-a", "clu-b"},
		Subnet:      netip.MustParsePrefix("10.82.0.0/24"),
		ServiceCIDR: accServiceCIDR,
	})
	c.AddNode(t, "clu-c", false)
	needServiceService(t, c.Nodes[0].Services)
	return c
}

// clusterHCL adopts the three nodes, the ones at the indexes joining the
// cluster of clu-a, puts a web pod on each, and a ClusterIP service over
// them written through clu-a.
func clusterHCL(c *acctest.TestCluster, joining ...int) string {
	certs := c.Env.Certs
	var b strings.Builder
	fmt.Fprintf(&b, `
provider "herd" {
  ca_cert     = %q
  client_cert = %q
  client_key  = %q
}
`, certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)
	join := fmt.Sprintf(`join = [%q]`, c.Nodes[0].Lab.IP.String()+":7946")
	for i, n := range c.Nodes {
		extra := ""
		if slices.Contains(joining, i) {
			extra = join
		}
		fmt.Fprintf(&b, `
resource "herd_node" %[1]q {
  name    = %[2]q
  address = %[3]q
  %[4]s
}

resource "herd_pod" "web_%[1]s" {
  node   = herd_node.%[1]s.id
  name   = "web-%[2]s"
  labels = { app = "web" }
  termination_grace_period_seconds = 0
  container {
    name    = "main"
    image   = %[5]q
    command = ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"]
    port {
      name           = "http"
      container_port = 8080
    }
  }
}
`, clusterNodes[i], n.Agent.Name, n.Agent.Addr, extra, c.Env.Image)
	}
	b.WriteString(`
resource "herd_service" "web" {
  node     = herd_node.a.id
  name     = "web"
  selector = { app = "web" }
  port {
    port             = 80
    target_port_name = "http"
  }
  # written once clu-c has joined: every member holds it from the start
  depends_on = [herd_node.c]
}
`)
	return b.String()
}

// Three nodes adopted by Terraform, the third joining the others' cluster
// through herd_node's join: every herd_node shows the three members alive
// with distinct pod CIDRs; a service written through one node is answered,
// from a pod on every node, by the pods of all three; the second plan is
// empty; a service deleted behind Terraform's back through another node
// is planned for creation again.
func TestAccClusterJoinAndServiceAcrossNodes(t *testing.T) {
	t.Parallel()
	c := startClusterOf3(t)
	config := clusterHCL(c, 2)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			// The deletion reaches the other members by gossip: give it
			// a moment on each.
			for _, n := range c.Nodes {
				var err error
				_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 15*time.Second, true, func(c context.Context) (bool, error) {
					_, err = n.Services.GetService(c, &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
					return status.Code(err) == codes.NotFound, nil
				})
				if status.Code(err) != codes.NotFound {
					return fmt.Errorf("%s: GetService after destroy: %v, want NotFound", n.Agent.Name, err)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			// 1. Join, pods and service; clu-c saw the whole cluster when
			// its join returned.
			{
				Config: config,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.c", "join.#", "1"),
					membersChecks("herd_node.c", c),
					resource.TestCheckResourceAttr("herd_service.web", "synced", "true"),
					resource.TestCheckResourceAttrWith("herd_service.web", "cluster_ip", inPrefix(accServiceCIDR)),
				),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			// 2. Once the cluster settled, a refresh shows every node in
			// every herd_node, and the VIP spreads over all pods.
			{
				PreConfig:    func() { waitClusterSettled(t, c) },
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					membersChecks("herd_node.a", c),
					membersChecks("herd_node.b", c),
					membersChecks("herd_node.c", c),
					podCIDRIsMembers(c),
					func(s *terraform.State) error { return vipReachesEveryPod(c, s) },
				),
			},
			// 3. The second plan is empty.
			{
				Config:   config,
				PlanOnly: true,
			},
			// 4. Deleted behind Terraform's back through clu-c: the plan
			// creates it again, and the apply does.
			{
				PreConfig: func() {
					resp, err := c.Nodes[2].Services.DeleteService(context.Background(), &herdv1.DeleteServiceRequest{Namespace: "default", Name: "web"})
					if err != nil || !resp.GetExisted() {
						t.Fatalf("DeleteService through clu-c: %v, existed=%v", err, resp.GetExisted())
					}
					waitServiceGone(t, c.Nodes[0])
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_service.web", plancheck.ResourceActionCreate),
						plancheck.ExpectResourceAction("herd_node.c", plancheck.ResourceActionNoop),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.TestCheckResourceAttr("herd_service.web", "synced", "true"),
			},
			// 5. join set on clu-b, already a member: an in-place update
			// that changes nothing. join removed from clu-c: an in-place
			// update that does nothing to the node (no leave).
			{
				Config: clusterHCL(c, 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_node.b", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_node.c", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.web_c", plancheck.ResourceActionNoop),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.b", "join.#", "1"),
					resource.TestCheckNoResourceAttr("herd_node.c", "join.#"),
					membersChecks("herd_node.b", c),
					membersChecks("herd_node.c", c),
					func(*terraform.State) error { return distinctClaims(c.Nodes[2], 3) },
				),
			},
		},
	})
}

// membersChecks: res shows the cluster's three nodes, alive, each with its
// lab address and gossip address, and pod CIDRs in the cluster CIDR that
// do not overlap.
func membersChecks(res string, c *acctest.TestCluster) resource.TestCheckFunc {
	checks := []resource.TestCheckFunc{
		resource.TestCheckResourceAttr(res, "cluster_members.#", "3"),
	}
	for i, n := range c.Nodes {
		p := fmt.Sprintf("cluster_members.%d.", i) // sorted by name: clu-a, clu-b, clu-c
		checks = append(checks,
			resource.TestCheckResourceAttr(res, p+"name", n.Agent.Name),
			resource.TestCheckResourceAttr(res, p+"state", "alive"),
			resource.TestCheckResourceAttr(res, p+"node_ip", n.Lab.IP.String()),
			resource.TestCheckResourceAttr(res, p+"gossip_address", n.Lab.IP.String()+":7946"),
		)
	}
	checks = append(checks, func(s *terraform.State) error {
		var seen []netip.Prefix
		for i := range c.Nodes {
			v, err := stateAttr(s, res, fmt.Sprintf("cluster_members.%d.pod_cidr", i))
			if err != nil {
				return err
			}
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return fmt.Errorf("%s: member %d: pod_cidr %q: %v", res, i, v, err)
			}
			if !netip.MustParsePrefix("10.248.0.0/16").Contains(p.Addr()) {
				return fmt.Errorf("%s: member %d: pod_cidr %s outside the cluster CIDR", res, i, p)
			}
			for _, q := range seen {
				if p.Overlaps(q) {
					return fmt.Errorf("%s: pod CIDRs %s and %s overlap", res, p, q)
				}
			}
			seen = append(seen, p)
		}
		return nil
	})
	return resource.ComposeAggregateTestCheckFunc(checks...)
}

// podCIDRIsMembers: each herd_node's pod_cidr (the range its pod network
// was built on) is the one the cluster records for it, and holds its pod's
// IP.
func podCIDRIsMembers(c *acctest.TestCluster) resource.TestCheckFunc {
	var checks []resource.TestCheckFunc
	for i, tf := range clusterNodes {
		res := "herd_node." + tf
		checks = append(checks,
			resource.TestCheckResourceAttrPair(res, "pod_cidr", "herd_node.a", fmt.Sprintf("cluster_members.%d.pod_cidr", i)),
			func(s *terraform.State) error {
				cidr, err := stateAttr(s, res, "pod_cidr")
				if err != nil {
					return err
				}
				ip, err := stateAttr(s, "herd_pod.web_"+tf, "pod_ip")
				if err != nil {
					return err
				}
				return inPrefix(netip.MustParsePrefix(cidr))(ip)
			})
	}
	return resource.ComposeAggregateTestCheckFunc(checks...)
}

// waitClusterSettled waits until every node sees the three members alive
// with pod CIDRs that do not overlap (the cluster resolves the collision of
// clu-c's first claim with the others' after the join).
func waitClusterSettled(t *testing.T, c *acctest.TestCluster) {
	t.Helper()
	c.WaitMembers(t, 3)
	// One 30s budget for all the nodes.
	settle, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		var err error
		if wait.PollUntilContextCancel(settle, 200*time.Millisecond, true, func(context.Context) (bool, error) {
			err = distinctClaims(n, 3)
			return err == nil, nil
		}) != nil {
			t.Fatalf("%s: %v", n.Agent.Name, err)
		}
	}
}

// distinctClaims asks a node for its members: want of them, all alive,
// with distinct pod CIDR claims.
func distinctClaims(n *acctest.ClusterNode, want int) error {
	resp, err := n.Cluster.ListMembers(context.Background(), &herdv1.ListMembersRequest{})
	if err != nil {
		return err
	}
	if len(resp.GetMembers()) != want {
		return fmt.Errorf("%d members, want %d: %v", len(resp.GetMembers()), want, resp.GetMembers())
	}
	owner := map[string]string{}
	for _, m := range resp.GetMembers() {
		if m.GetState() != "alive" {
			return fmt.Errorf("member %s is %s", m.GetName(), m.GetState())
		}
		if other, dup := owner[m.GetPodCidr()]; dup {
			return fmt.Errorf("members %s and %s both claim %s", other, m.GetName(), m.GetPodCidr())
		}
		owner[m.GetPodCidr()] = m.GetName()
	}
	return nil
}

// waitServiceGone waits until a node no longer has default/web (the delete
// was replicated to it).
func waitServiceGone(t *testing.T, n *acctest.ClusterNode) {
	t.Helper()
	var err error
	if wait.PollUntilContextTimeout(ctx(t), 200*time.Millisecond, 30*time.Second, true, func(c context.Context) (bool, error) {
		_, err = n.Services.GetService(c, &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
		return status.Code(err) == codes.NotFound, nil
	}) == nil {
		return
	}
	t.Fatalf("%s still has default/web 30s after the delete (last error %v)", n.Agent.Name, err)
}

// vipReachesEveryPod asks the service's VIP from inside the pod on each
// node until the pods of all three nodes have answered.
func vipReachesEveryPod(c *acctest.TestCluster, s *terraform.State) error {
	vip, err := stateAttr(s, "herd_service.web", "cluster_ip")
	if err != nil {
		return err
	}
	for i, n := range c.Nodes {
		uid, err := stateAttr(s, "herd_pod.web_"+clusterNodes[i], "uid")
		if err != nil {
			return err
		}
		if err := answeredByAll(n.PodNetns(uid), vip+":80", c); err != nil {
			return fmt.Errorf("from the pod on %s: %w", n.Agent.Name, err)
		}
	}
	return nil
}

// answeredByAll asks addr from a netns until every node's pod has
// answered (each answers with its hostname, the pod's name).
func answeredByAll(netnsPath, addr string, c *acctest.TestCluster) error {
	seen := map[string]int{}
	// Each answer may come from any pod: ask often (a shared machine: not
	// in a busy loop) until all have answered.
	if wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		body, err := acctest.HTTPGetIn(netnsPath, addr)
		if err != nil {
			seen["error: "+err.Error()]++
			return false, nil //nolint:nilerr // counted; ask again
		}
		seen[body]++
		all := true
		for _, n := range c.Nodes {
			all = all && seen["web-"+n.Agent.Name] > 0
		}
		return all, nil
	}) == nil {
		return nil
	}
	return fmt.Errorf("%s not answered by every pod within 30s: %v", addr, seen)
}
