package agent_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// A node whose nested cluster's PKI is sealed with a key-encryption key
// that was deleted refuses to start, naming the file, both ways out and
// the nested cluster (its PKI cannot be fetched from another node). With
// --new-kek it starts: the cluster is Failed with a message that says so,
// keeps its CA (no new one is made, not even by an apply), its host
// objects are left as they were, the kubeconfig is refused, and delete
// removes every marked host object.
func TestNestedClusterLostKEK(t *testing.T) {
	kube := acctest.SharedKube(t)
	const nodeName, cluster = "nested-kek", "kek"
	n := startNode(t, nodeName, func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--nested-kubeconfig", kube.Kubeconfig)
	})
	ns := "herd-" + nodeName + "-" + cluster
	// The VM never starts: the cluster fails at vm-ready and keeps what it
	// made (keep_on_failure), PKI and kubeconfig sealed in its record.
	stop := kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{
		LBIPs:  []string{fmt.Sprintf("127.%d.%d.%d", 90+rand.IntN(10), 1+rand.IntN(250), 1+rand.IntN(250))},
		FailVM: map[string]string{cluster + "-cp-0": "ImageBroken"},
	})
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
		Workers:            &herdv1.NestedMachines{Replicas: 0, Image: "quay.io/herd/kubeadm-node:1.34.3"},
		PodCidr:            "10.222.0.0/16",
		ServiceCidr:        "10.223.0.0/16",
		KeepOnFailure:      true,
		StepTimeoutSeconds: 30,
	}
	if _, err := nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: sp}); err != nil {
		t.Fatal(err)
	}
	var before *herdv1.NestedCluster
	waitFor(t, 90*time.Second, "Failed at vm-ready", func() (bool, string) {
		before, err = nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
		if err != nil {
			return false, err.Error()
		}
		return before.GetStatus().GetPhase() == "Failed", before.GetStatus().String()
	})
	if _, err := nc.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: cluster}); err != nil {
		t.Fatalf("kubeconfig before: %v", err)
	}
	stop() // from here on, only agentd could write to the host
	sel := metav1.ListOptions{LabelSelector: "io.herd.cluster=" + cluster}
	hostObjects := func() []string {
		var out []string
		secs, err := kube.Client.CoreV1().Secrets(ns).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range secs.Items {
			out = append(out, "Secret/"+o.Name+"@"+o.ResourceVersion)
		}
		svcs, err := kube.Client.CoreV1().Services(ns).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range svcs.Items {
			out = append(out, "Service/"+o.Name+"@"+o.ResourceVersion)
		}
		vms, err := kube.Dynamic.Resource(acctest.VirtualMachineGVR).Namespace(ns).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range vms.Items {
			out = append(out, "VirtualMachine/"+o.GetName()+"@"+o.GetResourceVersion())
		}
		slices.Sort(out)
		return out
	}
	objects := hostObjects()
	if len(objects) < 3 {
		t.Fatalf("kept host objects: %v", objects)
	}

	kekFile, cur := removeKEK(t, n.agent)
	keyDir := filepath.Dir(kekFile)

	t.Run("without its key-encryption key the node refuses to start", func(t *testing.T) {
		refusesStart(ctx, t, n.agent, "its nested cluster's PKI", kekFile, "is missing", "--new-kek", "restore", "nested cluster(s) "+cluster, "no other node holds a copy")
		// The refusal created nothing in the key directory.
		if got, _ := os.ReadFile(filepath.Join(keyDir, "current")); string(got) != string(cur) {
			t.Errorf("the current key changed to %q", got)
		}
	})

	t.Run("with --new-kek the cluster is Failed and left alone", func(t *testing.T) {
		restartWithNewKEK(ctx, t, n.agent)
		check := func(t *testing.T) {
			t.Helper()
			c, err := nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
			if err != nil {
				t.Fatal(err)
			}
			st := c.GetStatus()
			if st.GetPhase() != "Failed" || !strings.Contains(st.GetMessage(), "sealed with the key-encryption key that was replaced (--new-kek)") ||
				!strings.Contains(st.GetMessage(), "delete and recreate") || c.GetUid() != before.GetUid() {
				t.Fatalf("status %v", st)
			}
			if st.GetCaCertificate() == "" || st.GetCaCertificate() != before.GetStatus().GetCaCertificate() {
				t.Fatal("the cluster's CA changed")
			}
			_, err = nc.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: cluster})
			wantCode(t, err, codes.FailedPrecondition, "--new-kek", "delete and recreate")
			if got := hostObjects(); !slices.Equal(got, objects) {
				t.Fatalf("host objects changed: %v, were %v", got, objects)
			}
		}
		check(t)
		// Applying it again would retry a failed creation with a new CA:
		// not this one.
		resp, err := nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: sp})
		if err != nil || resp.GetCluster().GetStatus().GetPhase() != "Failed" {
			t.Fatalf("apply: %v %v", resp, err)
		}
		check(t)
		// A later start needs no flag and changes nothing.
		if err := n.agent.Restart(ctx); err != nil {
			t.Fatalf("restart after --new-kek: %v", err)
		}
		check(t)

		d, err := nc.DeleteNestedCluster(ctx, &herdv1.DeleteNestedClusterRequest{Name: cluster, Uid: before.GetUid()})
		if err != nil || !d.GetExisted() {
			t.Fatalf("delete: %v", err)
		}
		if got := hostObjects(); len(got) != 0 {
			t.Fatalf("host objects left: %v", got)
		}
		_, err = nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: cluster})
		wantCode(t, err, codes.NotFound)
	})
}
