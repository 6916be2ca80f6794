package agent_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// A real agentd started with --nested-kubeconfig builds a nested cluster on
// the shared host API server through NestedClusterService: PlayVirt plays
// KubeVirt, acctest.PlayKubeadm starts a real guest API server from the
// cloud-init agentd wrote (no VM can boot here), acctest.PlayKubelet
// registers the nodes. Then: the kubeconfig works, the key material is
// sealed in the state dir, a non-admin is refused, deletion protection
// holds, delete removes every host object.
func TestNestedClusterE2E(t *testing.T) {
	kube := acctest.SharedKube(t)
	const nodeName, cluster = "nested-e2e", "e2e"
	lbIP := fmt.Sprintf("127.%d.%d.%d", 90+rand.IntN(10), 1+rand.IntN(250), 1+rand.IntN(250))
	n := startNode(t, nodeName, func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--nested-kubeconfig", kube.Kubeconfig, "--nested-host-cidrs", "10.240.0.0/16,10.241.0.0/16")
	})
	ns := "herd-" + nodeName + "-" + cluster
	stop := kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{LBIPs: []string{lbIP}})
	defer stop()
	conn, err := n.agent.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nc := herdv1.NewNestedClusterServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	sp := &herdv1.NestedClusterSpec{
		Name: cluster, KubernetesVersion: "1.34.3",
		ControlPlane:       &herdv1.NestedMachines{Replicas: 1, Image: "quay.io/herd/kubeadm-node:1.34.3"},
		Workers:            &herdv1.NestedMachines{Replicas: 1, Memory: "2Gi", Image: "quay.io/herd/kubeadm-node:1.34.3"},
		PodCidr:            "10.220.0.0/16",
		ServiceCidr:        "10.221.0.0/16",
		DeletionProtection: true,
		StepTimeoutSeconds: 60,
	}
	// The host's ranges from --nested-host-cidrs are refused.
	bad := &herdv1.NestedClusterSpec{}
	*bad = herdv1.NestedClusterSpec{Name: sp.Name, KubernetesVersion: sp.KubernetesVersion, ControlPlane: sp.ControlPlane, PodCidr: "10.240.0.0/16", ServiceCidr: sp.ServiceCidr}
	_, err = nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: bad})
	wantCode(t, err, codes.InvalidArgument, "spec.pod_cidr", "overlaps the host cluster's range 10.240.0.0/16")

	resp, err := nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: sp})
	if err != nil || !resp.GetChanged() {
		t.Fatalf("apply: %v", err)
	}
	acctest.PlayKubeadm(t, kube.Client, ns, cluster+"-cp-0-userdata", cluster+"-cp-0", lbIP+":6443", "10.221.0.0/16")
	var kc []byte
	waitFor(t, 90*time.Second, "a kubeconfig and step nodes-ready", func() (bool, string) {
		c, err := nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
		if err != nil {
			return false, err.Error()
		}
		if c.GetStatus().GetPhase() == "Failed" {
			t.Fatalf("failed: %s", c.GetStatus().GetMessage())
		}
		return c.GetStatus().GetStep() == "nodes-ready", c.GetStatus().String()
	})
	r, err := nc.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: cluster})
	if err != nil {
		t.Fatal(err)
	}
	kc = r.GetKubeconfig()
	acctest.PlayKubelet(t, kc, cluster+"-cp-0", cluster+"-worker-0")
	var c *herdv1.NestedCluster
	waitFor(t, 60*time.Second, "Ready", func() (bool, string) {
		c, err = nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
		if err != nil {
			return false, err.Error()
		}
		return c.GetStatus().GetPhase() == "Ready", c.GetStatus().String()
	})
	if c.GetStatus().GetEndpoint() != "https://"+lbIP+":6443" || len(c.GetStatus().GetVms()) != 2 || !c.GetStatus().GetVms()[1].GetNodeReady() {
		t.Fatalf("status %v", c.GetStatus())
	}
	if nss, err := acctest.GuestClient(t, kc).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil || len(nss.Items) == 0 {
		t.Fatalf("the kubeconfig against the guest: %v", err)
	}
	l, err := nc.ListNestedClusters(ctx, &herdv1.ListNestedClustersRequest{})
	if err != nil || len(l.GetClusters()) != 1 {
		t.Fatalf("list: %v %v", l, err)
	}

	// Sealed at rest: the CA key (from the host's cloud-init Secret, which
	// the guest needs) is nowhere in agentd's state dir.
	sec, err := kube.Client.CoreV1().Secrets(ns).Get(ctx, cluster+"-cp-0-userdata", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caKey := acctest.CloudInitFiles(t, sec.Data["userdata"])["/etc/kubernetes/pki/ca.key"]
	blk, _ := pem.Decode(caKey)
	if blk == nil {
		t.Fatal("no CA key in the cloud-init")
	}
	for _, needle := range [][]byte{blk.Bytes, []byte("EC PRIVATE KEY"), []byte("RSA PRIVATE KEY")} {
		if hits := acctest.GrepFiles(t, n.agent.StateDir, needle); len(hits) > 0 {
			t.Fatalf("key material in the clear in %v", hits)
		}
	}
	if bytes.Contains(kc, blk.Bytes) {
		t.Fatal("the kubeconfig carries the CA key")
	}

	// A client without an admin certificate is refused everything.
	vc := herdv1.NewNestedClusterServiceClient(nonAdminConn(t, n.env, n.agent, "viewer"))
	_, err = vc.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: cluster})
	wantCode(t, err, codes.PermissionDenied, "admin")
	_, err = vc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
	wantCode(t, err, codes.PermissionDenied, "admin")
	_, err = vc.DeleteNestedCluster(ctx, &herdv1.DeleteNestedClusterRequest{Name: cluster})
	wantCode(t, err, codes.PermissionDenied, "admin")

	// Deletion protection, then an in-place change lifts it.
	_, err = nc.DeleteNestedCluster(ctx, &herdv1.DeleteNestedClusterRequest{Name: cluster})
	wantCode(t, err, codes.FailedPrecondition, "deletion_protection")
	sp.ControlPlane.Cpu = "4"
	_, err = nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: sp})
	wantCode(t, err, codes.FailedPrecondition, "control_plane.cpu")
	sp.ControlPlane.Cpu, sp.DeletionProtection = "", false
	if _, err := nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: sp}); err != nil {
		t.Fatal(err)
	}
	d, err := nc.DeleteNestedCluster(ctx, &herdv1.DeleteNestedClusterRequest{Name: cluster})
	if err != nil || !d.GetExisted() {
		t.Fatalf("delete: %v", err)
	}
	sel := metav1.ListOptions{LabelSelector: "io.herd.cluster=" + cluster}
	if s, _ := kube.Client.CoreV1().Secrets(ns).List(ctx, sel); len(s.Items) != 0 {
		t.Fatalf("Secrets left: %d", len(s.Items))
	}
	if s, _ := kube.Client.CoreV1().Services(ns).List(ctx, sel); len(s.Items) != 0 {
		t.Fatalf("Services left: %d", len(s.Items))
	}
	if vms, _ := kube.Dynamic.Resource(acctest.VirtualMachineGVR).Namespace(ns).List(ctx, sel); len(vms.Items) != 0 {
		t.Fatalf("VMs left: %d", len(vms.Items))
	}
	nso, err := kube.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err == nil && nso.DeletionTimestamp == nil {
		t.Fatal("the namespace was not deleted")
	}
	_, err = nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
	wantCode(t, err, codes.NotFound)
}

// Without --nested-kubeconfig agentd starts and says why it cannot.
func TestNestedClusterDisabled(t *testing.T) {
	n := startNode(t, "nested-off")
	conn, err := n.agent.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = herdv1.NewNestedClusterServiceClient(conn).ListNestedClusters(context.Background(), &herdv1.ListNestedClustersRequest{})
	wantCode(t, err, codes.FailedPrecondition, "--nested-kubeconfig")
}
