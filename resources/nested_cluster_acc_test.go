package resources_test

// Acceptance tests of herd_cluster through OpenTofu against a real agentd
// started with --nested-kubeconfig on the shared host API server
// (acctest.SharedKube), PlayVirt playing KubeVirt, a guest control plane
// started from the PKI agentd wrote into the cloud-init Secret (standing
// in for kubeadm init in the first control-plane VM) and nested Nodes
// registered by the test (standing in for the kubelets). No VM boots.

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/herd-project/terraform-provider-herd/agentd/nested"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

type nestedEnv struct {
	node *accNode
	kube *acctest.Kube
	nc   herdv1.NestedClusterServiceClient
}

func startNestedNode(t *testing.T, name string) *nestedEnv {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	kube := acctest.SharedKube(t)
	n := startNode(t, name, func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--nested-kubeconfig", kube.Kubeconfig)
	})
	return &nestedEnv{node: n, kube: kube, nc: herdv1.NewNestedClusterServiceClient(n.conn)}
}

// hostNamespace is agentd's namespace for a cluster: herd-NODE-CLUSTER.
func (e *nestedEnv) hostNamespace(cluster string) string {
	return "herd-" + e.node.agent.Name + "-" + cluster
}

func (e *nestedEnv) clusterHCL(name string, workers int, extra string) string {
	return e.node.providerHCL() + e.node.nodeHCL("") + fmt.Sprintf(`
resource "herd_cluster" "c" {
  node               = herd_node.n.id
  name               = %q
  kubernetes_version = "1.34.3"
  pod_cidr           = "10.210.0.0/16"
  service_cidr       = "10.211.0.0/16"
  step_timeout       = "2m"
  control_plane {
    image = "registry.example/kube-node:1.34.3"
  }
  workers {
    replicas = %d
    image    = "registry.example/kube-node:1.34.3"
  }
  timeouts {
    create = "3m"
    update = "3m"
    delete = "2m"
  }
  %s
}
`, name, workers, extra)
}

// playGuest stands in for the guest: kubeadm init on VM cp (a guest
// control plane from the PKI in its cloud-init Secret, on the endpoint's
// address; none when endpointIP is "") and a kubelet registering each VM
// of vms once it exists.
func (e *nestedEnv) playGuest(t *testing.T, cluster, endpointIP string, vms ...string) {
	t.Helper()
	ns := e.hostNamespace(cluster)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if endpointIP != "" {
			if _, err := acctest.StartGuestFromCloudInit(ctx, t, e.kube.Client, ns, cluster+"-cp-0-userdata", cluster+"-cp-0", endpointIP+":6443", "10.211.0.0/16"); err != nil {
				t.Errorf("guest control plane: %v", err)
				return
			}
		}
		var kc []byte
		// On timeout the registration below fails and says why.
		_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			got, err := e.nc.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: cluster})
			kc = got.GetKubeconfig()
			return err == nil && kc != nil, nil
		})
		for _, vm := range vms {
			_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				_, err := e.kube.Dynamic.Resource(acctest.VirtualMachineGVR).Namespace(ns).Get(ctx, vm, metav1.GetOptions{})
				return err == nil, nil
			})
			if err := acctest.RegisterReadyNodes(ctx, kc, vm); err != nil {
				t.Errorf("nested node %s: %v", vm, err)
			}
		}
	}()
}

// markedObjects lists the host objects of a cluster carrying herd's
// marker: VMs, Services and Secrets, in every namespace.
func (e *nestedEnv) markedObjects(t *testing.T, cluster string) ([]string, error) {
	c := ctx(t)
	sel := metav1.ListOptions{LabelSelector: nested.LabelManaged + "=true," + nested.LabelCluster + "=" + cluster +
		"," + nested.LabelNode + "=" + e.node.agent.Name}
	var out []string
	vms, err := e.kube.Dynamic.Resource(acctest.VirtualMachineGVR).Namespace("").List(c, sel)
	if err != nil {
		return nil, err
	}
	for _, v := range vms.Items {
		out = append(out, "VirtualMachine/"+v.GetNamespace()+"/"+v.GetName())
	}
	svcs, err := e.kube.Client.CoreV1().Services("").List(c, sel)
	if err != nil {
		return nil, err
	}
	for _, s := range svcs.Items {
		out = append(out, "Service/"+s.Namespace+"/"+s.Name)
	}
	secs, err := e.kube.Client.CoreV1().Secrets("").List(c, sel)
	if err != nil {
		return nil, err
	}
	for _, s := range secs.Items {
		out = append(out, "Secret/"+s.Namespace+"/"+s.Name)
	}
	sort.Strings(out)
	return out, nil
}

// nothingLeft: no marked object of the cluster and, unless it holds
// foreign objects (agentd keeps it then), no live namespace.
func (e *nestedEnv) nothingLeft(t *testing.T, cluster string, foreignInNamespace bool) error {
	objs, err := e.markedObjects(t, cluster)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		return fmt.Errorf("host objects left: %v", objs)
	}
	if foreignInNamespace {
		return nil
	}
	ns, err := e.kube.Client.CoreV1().Namespaces().Get(ctx(t), e.hostNamespace(cluster), metav1.GetOptions{})
	if err == nil && ns.DeletionTimestamp == nil {
		return fmt.Errorf("namespace %s left", ns.Name)
	}
	return nil
}

func (e *nestedEnv) workerVMs(t *testing.T, cluster string) (int, error) {
	objs, err := e.markedObjects(t, cluster)
	n := 0
	for _, o := range objs {
		if strings.HasPrefix(o, "VirtualMachine/") && strings.Contains(o, "-worker-") {
			n++
		}
	}
	return n, err
}

// Create, scale workers in place, deletion protection (a replacing plan and
// destroy refused), unprotect in place, destroy removing every marked host
// object and leaving foreign ones alone.
func TestAccNestedClusterLifecycle(t *testing.T) {
	t.Parallel()
	e := startNestedNode(t, "nested-life")
	const cluster, lbIP = "dev", "127.0.97.1"
	ns := e.hostNamespace(cluster)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{LBIPs: []string{lbIP}, Delay: 300 * time.Millisecond})
	t.Cleanup(stop)
	e.playGuest(t, cluster, lbIP, cluster+"-cp-0", cluster+"-worker-0", cluster+"-worker-1")

	// Foreign objects: no marker, in the cluster's namespace (once it
	// exists) and elsewhere; both must survive the destroy.
	other := e.kube.NewNamespace(t, "foreign")
	foreignLabels := map[string]string{nested.LabelCluster: cluster, nested.LabelNode: e.node.agent.Name}
	mkForeign := func(namespace string) error {
		_, err := e.kube.Client.CoreV1().Secrets(namespace).Create(ctx(t), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "foreign", Labels: foreignLabels}}, metav1.CreateOptions{})
		return err
	}
	if err := mkForeign(other); err != nil {
		t.Fatal(err)
	}
	foreignIntact := func(namespace string) error {
		_, err := e.kube.Client.CoreV1().Secrets(namespace).Get(ctx(t), "foreign", metav1.GetOptions{})
		return err
	}
	protected := regexp.MustCompile(`(?s)Cluster is protected from deletion.*deletion_protection`)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			// The namespace holds a foreign object: agentd keeps it, and
			// the object.
			if err := e.nothingLeft(t, cluster, true); err != nil {
				return err
			}
			if err := foreignIntact(ns); err != nil {
				return fmt.Errorf("foreign Secret in %s: %w", ns, err)
			}
			return foreignIntact(other)
		},
		Steps: []resource.TestStep{
			{
				Config: e.clusterHCL(cluster, 2, ""),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_cluster.c", "phase", "Ready"),
					resource.TestCheckResourceAttr("herd_cluster.c", "endpoint", "https://"+lbIP+":6443"),
					resource.TestMatchResourceAttr("herd_cluster.c", "ca_certificate", regexp.MustCompile("BEGIN CERTIFICATE")),
					resource.TestCheckResourceAttr("herd_cluster.c", "host_namespace", ns),
					resource.TestCheckResourceAttr("herd_cluster.c", "vms.#", "3"),
					resource.TestCheckResourceAttr("herd_cluster.c", "vms.0.name", cluster+"-cp-0"),
					resource.TestCheckResourceAttr("herd_cluster.c", "vms.0.node_ready", "true"),
					resource.TestMatchResourceAttr("herd_cluster.c", "kubeconfig", regexp.MustCompile("client-certificate-data")),
					resource.TestCheckResourceAttr("herd_cluster.c", "deletion_protection", "true"),
					func(*terraform.State) error { return mkForeign(ns) },
				),
			},
			// Import by NAME@NODEID gives the same state (timeouts aside).
			{
				ResourceName:            "herd_cluster.c",
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateIdFunc:       func(*terraform.State) (string, error) { return cluster + "@" + e.node.agent.ID(), nil },
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			// Scale out in place: same uid, one more worker VM on the host.
			{
				Config: e.clusterHCL(cluster, 3, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("herd_cluster.c", plancheck.ResourceActionUpdate),
				}},
				PreConfig: func() { e.playGuest(t, cluster, "", cluster+"-worker-2") },
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_cluster.c", "vms.#", "4"),
					func(*terraform.State) error {
						if n, err := e.workerVMs(t, cluster); err != nil || n != 3 {
							return fmt.Errorf("worker VMs on the host: %d (%v), want 3", n, err)
						}
						return nil
					},
				),
			},
			// A change that replaces is refused at plan time while protected.
			{
				Config: strings.Replace(e.clusterHCL(cluster, 3, ""), `kubernetes_version = "1.34.3"`,
					`kubernetes_version = "1.34.4"`, 1),
				ExpectError: regexp.MustCompile(`(?s)Cluster is protected from deletion.*replaces it.*kubernetes_version changed`),
				PlanOnly:    true,
			},
			// destroy is refused while protected.
			{
				Config:      e.clusterHCL(cluster, 3, ""),
				Destroy:     true,
				ExpectError: protected,
			},
			// Unprotect in place, then the test's destroy removes it all.
			{
				Config: e.clusterHCL(cluster, 3, "deletion_protection = false"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("herd_cluster.c", plancheck.ResourceActionUpdate),
				}},
				Check: resource.TestCheckResourceAttr("herd_cluster.c", "deletion_protection", "false"),
			},
		},
	})
}

// A VM that never runs fails the creation in the middle: the apply names
// the step and agentd's account, and nothing remains on the host.
func TestAccNestedClusterFailureCompensates(t *testing.T) {
	t.Parallel()
	e := startNestedNode(t, "nested-fail")
	const cluster = "broken"
	ns := e.hostNamespace(cluster)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{LBIPs: []string{"127.0.97.2"},
		FailVM: map[string]string{cluster + "-cp-0": "FailedScheduling"}})
	t.Cleanup(stop)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config:      e.clusterHCL(cluster, 1, "deletion_protection = false"),
			ExpectError: regexp.MustCompile(`(?s)Cluster creation failed.*failed at step.*FailedScheduling.*removed every host object`),
		}},
	})
	if err := e.nothingLeft(t, cluster, false); err != nil {
		t.Fatal(err)
	}
}
