package agent_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

// healthOf asks the standard health service for service ("" is agentd as a
// whole).
func healthOf(ctx context.Context, t *testing.T, hc healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("Check(%q): %v", service, err)
	}
	return resp.GetStatus()
}

// The standard grpc.health.v1 service reports agentd, containerd and the
// store, over both listeners and to any client certificate of the herd CA,
// admin or not.
func TestHealth(t *testing.T) {
	t.Parallel()
	n := startNode(t, "health")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lconn := dial(t, "unix://"+n.agent.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	vconn := nonAdminConn(t, n.env, n.agent, "prober")
	clients := map[string]healthpb.HealthClient{
		"mTLS admin":     n.health,
		"mTLS non-admin": healthpb.NewHealthClient(vconn),
		"socket":         healthpb.NewHealthClient(lconn),
	}
	for name, hc := range clients {
		for _, service := range []string{"", "containerd", "store"} {
			if got := healthOf(ctx, t, hc, service); got != serving {
				t.Errorf("%s: Check(%q) = %s, want SERVING", name, service, got)
			}
		}
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nonesuch"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("%s: Check(nonesuch) error = %v, want NotFound", name, err)
		}
		list, err := hc.List(ctx, &healthpb.HealthListRequest{})
		if err != nil {
			t.Fatalf("%s: List: %v", name, err)
		}
		if got := slices.Sorted(maps.Keys(list.GetStatuses())); !slices.Equal(got, []string{"", "containerd", "store"}) {
			t.Errorf("%s: List = %q, want agentd, containerd and store", name, got)
		}
	}
}

// With its containerd gone, agentd stays up, and its health service says
// containerd is NOT_SERVING (and with it agentd as a whole) while the store
// still works; the node says why.
func TestHealthContainerdDown(t *testing.T) {
	t.Parallel()
	ctd := acctest.ContainerdForTest(t) // a private one this test may stop
	n := startNode(t, "health-down", func(o *acctest.AgentOptions) { o.Containerd = ctd })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A pod first, to see what becomes of it.
	n.apply(t, n.pod("before", "sleep 3600"))
	n.waitRunning(t, "before")
	for _, service := range []string{"", "containerd", "store"} {
		if got := healthOf(ctx, t, n.health, service); got != serving {
			t.Fatalf("Check(%q) before = %s, want SERVING", service, got)
		}
	}
	// Watch streams every change of containerd's status: the first message
	// is the current one, a later one the change the watcher notices.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch, err := n.health.Watch(wctx, &healthpb.HealthCheckRequest{Service: "containerd"})
	if err != nil {
		t.Fatalf("Watch(containerd): %v", err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != serving {
		t.Fatalf("Watch(containerd) first = %v, %v; want SERVING", first, err)
	}

	if err := ctd.Stop(); err != nil {
		t.Fatalf("stop private containerd: %v", err)
	}
	began := time.Now()
	next, err := watch.Recv()
	if err != nil {
		t.Fatalf("Watch(containerd) after containerd stopped: %v", err)
	}
	t.Logf("containerd reported %s %s after it stopped", next.GetStatus(), time.Since(began).Round(time.Millisecond))
	if next.GetStatus() != notServing {
		t.Errorf("Watch(containerd) after containerd stopped = %s, want NOT_SERVING", next.GetStatus())
	}
	if got := healthOf(ctx, t, n.health, "containerd"); got != notServing {
		t.Errorf("Check(containerd) = %s, want NOT_SERVING", got)
	}
	if got := healthOf(ctx, t, n.health, ""); got != notServing {
		t.Errorf("Check(\"\") = %s, want NOT_SERVING: agentd cannot run pods", got)
	}
	if got := healthOf(ctx, t, n.health, "store"); got != serving {
		t.Errorf("Check(store) = %s, want SERVING", got)
	}
	node, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatalf("GetNode with containerd down: %v", err)
	}
	if node.GetReady() || !strings.Contains(node.GetNotReadyReason(), "containerd") {
		t.Errorf("node ready=%v reason=%q, want not ready because of containerd", node.GetReady(), node.GetNotReadyReason())
	}
	// The reason the health protocol cannot carry is in agentd's log.
	if log := logFile(t, n.agent); !strings.Contains(log, "dependency unhealthy") || !strings.Contains(log, "dependency=containerd") {
		t.Errorf("agentd log does not say containerd is unhealthy:\n%s", n.agent.LogTail(20))
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
