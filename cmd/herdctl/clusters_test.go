package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// TestClustersListAndKubeconfig: herdctl clusters lists a nested cluster
// that a real agentd is building on a real host API server (PlayVirt stands
// in for KubeVirt: no VM boots here), and prints its admin kubeconfig.
func TestClustersListAndKubeconfig(t *testing.T) {
	env := acctest.SharedEnv(t)
	kube := acctest.SharedKube(t)
	const nodeName, cluster = "ctl-nested", "dev"
	a := env.Agent(t, nodeName, func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--nested-kubeconfig", kube.Kubeconfig)
	})
	lbIP := fmt.Sprintf("127.%d.%d.%d", 80+rand.IntN(10), 1+rand.IntN(250), 1+rand.IntN(250))
	stop := kube.PlayVirt(context.Background(), "herd-"+nodeName+"-"+cluster, acctest.VirtOptions{LBIPs: []string{lbIP}})
	defer stop()
	conn, err := a.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nc := herdv1.NewNestedClusterServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	image := "quay.io/herd/kubeadm-node:1.34.3"
	if _, err := nc.ApplyNestedCluster(ctx, &herdv1.ApplyNestedClusterRequest{Spec: &herdv1.NestedClusterSpec{
		Name: cluster, KubernetesVersion: "1.34.3",
		ControlPlane: &herdv1.NestedMachines{Replicas: 1, Image: image},
		Workers:      &herdv1.NestedMachines{Replicas: 1, Image: image},
		PodCidr:      "10.230.0.0/16", ServiceCidr: "10.231.0.0/16",
		StepTimeoutSeconds: 60,
	}}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		_, _ = nc.DeleteNestedCluster(dctx, &herdv1.DeleteNestedClusterRequest{Name: cluster})
	}()
	// The kubeconfig exists once the endpoint has an address.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := nc.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: cluster}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no kubeconfig after 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	tls := []string{"--node", a.ID(), "--ca-cert", env.Certs.CAFile, "--cert", env.Certs.ClientCertFile, "--key", env.Certs.ClientKeyFile}

	var out, errb bytes.Buffer
	if code := run(append([]string{"clusters"}, tls...), &out, &errb); code != 0 {
		t.Fatalf("clusters: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{"dev", "1.34.3", "Creating", "https://" + lbIP + ":6443", "herd-" + nodeName + "-" + cluster} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("clusters output lacks %q:\n%s", w, out.String())
		}
	}

	out.Reset()
	if code := run(append([]string{"clusters", "kubeconfig", cluster}, tls...), &out, &errb); code != 0 {
		t.Fatalf("clusters kubeconfig: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{"apiVersion: v1", "server: https://" + lbIP + ":6443", "certificate-authority-data:", "client-key-data:"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("kubeconfig lacks %q", w)
		}
	}

	errb.Reset()
	if code := run(append([]string{"clusters", "kubeconfig"}, tls...), &out, &errb); code == 0 || !strings.Contains(errb.String(), "exactly one cluster name") {
		t.Fatalf("kubeconfig without a name: exit %d, stderr %s", code, errb.String())
	}
}
