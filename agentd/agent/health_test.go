package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func checks(resp *herdv1.HealthCheckResponse) map[string]*herdv1.HealthCheck {
	out := map[string]*herdv1.HealthCheck{}
	for _, c := range resp.GetChecks() {
		out[c.GetName()] = c
	}
	return out
}

// The health service reports containerd and the store, over both
// listeners.
func TestHealth(t *testing.T) {
	t.Parallel()
	n := startNode(t, "health")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lconn := dial(t, "unix://"+n.agent.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	for name, hc := range map[string]herdv1.HealthServiceClient{"mTLS": n.health, "socket": herdv1.NewHealthServiceClient(lconn)} {
		resp, err := hc.Check(ctx, &herdv1.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("%s: Check: %v", name, err)
		}
		c := checks(resp)
		if !resp.GetOk() || !c["containerd"].GetOk() || !c["store"].GetOk() || len(c) != 2 {
			t.Errorf("%s: Check = %v, want ok with containerd and store ok", name, resp)
		}
	}
}

// With its containerd gone, agentd stays up and says what is wrong.
func TestHealthContainerdDown(t *testing.T) {
	t.Parallel()
	ctd := acctest.ContainerdForTest(t) // a private one this test may stop
	n := startNode(t, "health-down", func(o *acctest.AgentOptions) { o.Containerd = ctd })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A pod first, to see what becomes of it.
	n.apply(t, n.pod("before", "sleep 3600"))
	n.waitRunning(t, "before")
	resp, err := n.health.Check(ctx, &herdv1.HealthCheckRequest{})
	if err != nil || !resp.GetOk() {
		t.Fatalf("Check before = %v, %v", resp, err)
	}

	if err := ctd.Stop(); err != nil {
		t.Fatalf("stop private containerd: %v", err)
	}
	began := time.Now()
	resp, err = n.health.Check(ctx, &herdv1.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check with containerd down: %v", err)
	}
	t.Logf("Check with containerd down took %s: %v", time.Since(began).Round(time.Millisecond), resp)
	c := checks(resp)
	if resp.GetOk() || c["containerd"].GetOk() || c["containerd"].GetMessage() == "" {
		t.Errorf("Check = %v, want not ok with a containerd failure and its reason", resp)
	}
	if !c["store"].GetOk() {
		t.Errorf("store check = %v, want ok", c["store"])
	}
	node, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatalf("GetNode with containerd down: %v", err)
	}
	if node.GetReady() || !strings.Contains(node.GetNotReadyReason(), "containerd") {
		t.Errorf("node ready=%v reason=%q, want not ready because of containerd", node.GetReady(), node.GetNotReadyReason())
	}
	// Reads from agentd's own state still work.
	if _, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "before"}); err != nil {
		t.Errorf("GetPod with containerd down: %v", err)
	}
	// What a new pod gets: reported, not prescribed.
	began = time.Now()
	_, err = n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: n.pod("during", "sleep 3600")})
	st, _ := status.FromError(err)
	t.Logf("ApplyPod with containerd down (%s): code %s: %s", time.Since(began).Round(time.Millisecond), st.Code(), st.Message())
	// The pods' containers died with containerd: nothing to delete.
	n.skipCleanup = true
}
