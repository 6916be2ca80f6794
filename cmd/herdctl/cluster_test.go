package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestMain(m *testing.M) { os.Exit(acctest.Main(m)) }

// TestNodesAndServices: herdctl nodes and herdctl services against a real
// one-node cluster, over mTLS.
func TestNodesAndServices(t *testing.T) {
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{Names: []string{"ctl-a"}})
	n := c.Nodes[0]
	resp, err := n.Services.ApplyService(context.Background(), &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "web", Type: "NodePort", Selector: map[string]string{"app": "web"},
		Ports: []*herdv1.ServicePort{{Name: "http", Port: 80, TargetPortName: "http"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tls := []string{"--node", n.Agent.ID(), "--ca-cert", env.Certs.CAFile, "--cert", env.Certs.ClientCertFile, "--key", env.Certs.ClientKeyFile}

	var out, errb bytes.Buffer
	if code := run(append([]string{"services"}, tls...), &out, &errb); code != 0 {
		t.Fatalf("services: exit %d: %s", code, errb.String())
	}
	svc := resp.GetService()
	want := []string{"default", "web", "NodePort", svc.GetStatus().GetClusterIp(), "0/0", "true",
		fmt.Sprintf("80:%d/TCP->http", svc.GetSpec().GetPorts()[0].GetNodePort())}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("services output lacks %q:\n%s", w, out.String())
		}
	}

	// The free resources shown are what the node's published capacity
	// leaves: its allocatable less its pods' requests (it runs none).
	node, err := n.Nodes.GetNode(context.Background(), &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	alloc := node.GetAllocatable()
	freeCPU := capacity.FormatCPU(alloc.GetCpuMillis() - node.GetRequested().GetCpuMillis())
	freeMem := capacity.FormatMemory(alloc.GetMemoryBytes() - node.GetRequested().GetMemoryBytes())
	// The capacity entry is published once agentd runs: give it a moment.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out.Reset()
		if code := run(append([]string{"nodes"}, tls...), &out, &errb); code != 0 {
			t.Fatalf("nodes: exit %d: %s", code, errb.String())
		}
		if strings.Contains(out.String(), " "+freeMem+" ") || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range []string{"FREE MEMORY", "ctl-a", "alive", n.Lab.IP.String(), "10.248.", " " + freeCPU + " ", " " + freeMem + " "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("nodes output lacks %q:\n%s", w, out.String())
		}
	}
}
