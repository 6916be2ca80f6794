package agent_test

// End-to-end tests of agentd as a process: every test starts its own real
// agentd (acctest.Env.Agent) on the shared private containerd and talks to
// it over real mTLS or its unix socket. They assert only what a client, the
// host or containerd can observe.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestMain(m *testing.M) { os.Exit(acctest.Main(m)) }

// waitTimeout bounds every wait for a pod to reach a state. Pulls come from
// a loopback registry, so this is generous even on a loaded 2-core box.
const waitTimeout = 90 * time.Second

// node is a started agentd with clients on both listeners.
type node struct {
	env   *acctest.Env
	agent *acctest.Agent
	// Over mTLS with the admin certificate.
	pods   herdv1.PodServiceClient
	nodes  herdv1.NodeServiceClient
	health healthpb.HealthClient
	// Over the local unix socket.
	local herdv1.PodServiceClient
	// skipCleanup: the test leaves nothing to delete (or cannot).
	skipCleanup bool
}

// startNode starts an agentd called name (unique per test: it also names
// the containerd namespace) and, at the end of the test, deletes what is
// left of its pods through the API before the agent stops, so that no
// container outlives its test.
func startNode(t *testing.T, name string, mutate ...func(*acctest.AgentOptions)) *node {
	t.Helper()
	env := acctest.SharedEnv(t)
	a := env.Agent(t, name, mutate...)
	conn, err := a.Conn()
	if err != nil {
		t.Fatalf("mTLS client: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	lconn, err := a.LocalConn()
	if err != nil {
		t.Fatalf("local client: %v", err)
	}
	t.Cleanup(func() { lconn.Close() })
	n := &node{
		env:    env,
		agent:  a,
		pods:   herdv1.NewPodServiceClient(conn),
		nodes:  herdv1.NewNodeServiceClient(conn),
		health: healthpb.NewHealthClient(conn),
		local:  herdv1.NewPodServiceClient(lconn),
	}
	// Registered after env.Agent: runs before the agent is stopped.
	t.Cleanup(func() {
		if !n.skipCleanup {
			n.deleteAllPods(t)
		}
	})
	return n
}

// deleteAllPods deletes every pod with a zero grace period (best effort:
// the agent may have been stopped by the test).
func (n *node) deleteAllPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := n.local.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil {
		return
	}
	zero := int64(0)
	for _, p := range list.GetPods() {
		if _, err := n.local.DeletePod(ctx, &herdv1.DeletePodRequest{Name: p.GetSpec().GetName(), GracePeriodSeconds: &zero}); err != nil {
			t.Logf("cleanup: delete pod %s: %v", p.GetSpec().GetName(), err)
		}
	}
}

// nsCtx is a context in the agent's containerd namespace, for direct
// inspection through the containerd client.
func (n *node) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, n.agent.Opts.Namespace)
}

func (n *node) containerd() *client.Client { return n.env.Containerd.Client() }

// containerIDs lists every containerd container in the agent's namespace.
func (n *node) containerIDs(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := n.containerd().ContainerService().List(n.nsCtx(ctx))
	if err != nil {
		t.Fatalf("list containers in %s: %v", n.agent.Opts.Namespace, err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}

// containerExists reports whether containerd has container id in the
// agent's namespace.
func (n *node) containerExists(t *testing.T, id string) bool {
	t.Helper()
	return n.exists(t, "get container "+id, func(ctx context.Context) error {
		_, err := n.containerd().ContainerService().Get(ctx, id)
		return err
	})
}

// snapshotExists reports whether the overlayfs snapshotter has key in the
// agent's namespace.
func (n *node) snapshotExists(t *testing.T, key string) bool {
	t.Helper()
	return n.exists(t, "stat snapshot "+key, func(ctx context.Context) error {
		_, err := n.containerd().SnapshotService(acctest.Snapshotter).Stat(ctx, key)
		return err
	})
}

// exists runs get in the agent's containerd namespace and reports whether
// it found what it looked for; any error but not-found fails the test.
func (n *node) exists(t *testing.T, what string, get func(ctx context.Context) error) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := get(n.nsCtx(ctx))
	switch {
	case err == nil:
		return true
	case errdefs.IsNotFound(err):
		return false
	}
	t.Fatalf("%s: %v", what, err)
	return false
}

// pod returns a one-container busybox pod spec running sh -c script.
func (n *node) pod(name, script string) *herdv1.PodSpec {
	return &herdv1.PodSpec{
		Name: name,
		Containers: []*herdv1.ContainerSpec{{
			Name:    "main",
			Image:   n.env.Image,
			Command: []string{"sh", "-c", script},
		}},
	}
}

func (n *node) apply(t *testing.T, s *herdv1.PodSpec) *herdv1.ApplyPodResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s})
	if err != nil {
		t.Fatalf("ApplyPod %s: %v", s.GetName(), err)
	}
	return resp
}

func (n *node) get(t *testing.T, name string) *herdv1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: name}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("GetPod %s: %v", name, err)
	}
	return p
}

func (n *node) delete(t *testing.T, name string, grace int64) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: name, GracePeriodSeconds: &grace})
	if err != nil {
		t.Fatalf("DeletePod %s: %v", name, err)
	}
	return resp.GetExisted()
}

// waitPod polls GetPod until cond holds, failing the test after
// waitTimeout with the last state seen.
func (n *node) waitPod(t *testing.T, name, what string, cond func(*herdv1.Pod) bool) *herdv1.Pod {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last *herdv1.Pod
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: name})
		cancel()
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod %s did not become %s within %s; last: %v (err %v)", name, what, waitTimeout, last, lastErr)
	return nil
}

func running(p *herdv1.Pod) bool {
	if p.GetStatus().GetPhase() != "Running" {
		return false
	}
	for _, c := range p.GetStatus().GetContainers() {
		if c.GetState() != "running" || c.GetPid() == 0 {
			return false
		}
	}
	return true
}

func (n *node) waitRunning(t *testing.T, name string) *herdv1.Pod {
	t.Helper()
	return n.waitPod(t, name, "Running", running)
}

// logs reads a container's log (no follow).
func (n *node) logs(t *testing.T, pod, container string) string {
	t.Helper()
	return n.readLogs(t, &herdv1.PodLogsRequest{Pod: pod, Container: container})
}

// readLogs reads the log req asks for to its end.
func (n *node) readLogs(t *testing.T, req *herdv1.PodLogsRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := n.pods.PodLogs(ctx, req)
	if err != nil {
		t.Fatalf("PodLogs %s: %v", req.GetPod(), err)
	}
	var b strings.Builder
	for {
		c, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatalf("PodLogs %s: %v", req.GetPod(), err)
		}
		b.Write(c.GetData())
	}
}

// waitLogs polls the log until it contains want.
func (n *node) waitLogs(t *testing.T, pod, container, want string) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var got string
	for time.Now().Before(deadline) {
		if got = n.logs(t, pod, container); strings.Contains(got, want) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("log of %s/%s never contained %q; got %q", pod, container, want, got)
	return ""
}

// wantCode fails unless err is a gRPC status with code (and, if given,
// a message containing every one of contains).
func wantCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error is not a gRPC status: %v", err)
	}
	if st.Code() != code {
		t.Fatalf("code = %s, want %s (message %q)", st.Code(), code, st.Message())
	}
	for _, c := range contains {
		if !strings.Contains(st.Message(), c) {
			t.Errorf("message %q does not contain %q", st.Message(), c)
		}
	}
}

// mustEmpty fails unless the agent reports no pods and its containerd
// namespace holds no container.
func (n *node) mustEmpty(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := n.local.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil {
		t.Fatalf("ListPods: %v", err)
	}
	if len(list.GetPods()) != 0 {
		t.Errorf("ListPods = %d pods, want none: %v", len(list.GetPods()), list.GetPods())
	}
	if ids := n.containerIDs(t); len(ids) != 0 {
		t.Errorf("containerd namespace %s holds containers %v, want none", n.agent.Opts.Namespace, ids)
	}
}

// nonAdminConn dials a over mTLS with a fresh certificate from env's CA
// for client name, without the admin role; it closes at the end.
func nonAdminConn(t *testing.T, env *acctest.Env, a *acctest.Agent, name string) *grpc.ClientConn {
	t.Helper()
	cert, key, err := env.Certs.CA.IssueClient(name, false)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := a.ClientTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return dial(t, a.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
}

// agentDir returns a fresh short directory for an agentd's state, removed
// at the end.
func agentDir(t *testing.T) string {
	t.Helper()
	dir, err := acctest.ShortTempDir("herd-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dial is grpc.NewClient that fails the test on error and closes at the end.
func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatalf("grpc client %s: %v", target, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func logFile(t *testing.T, a *acctest.Agent) string {
	t.Helper()
	b, err := os.ReadFile(a.LogFile)
	if err != nil {
		t.Fatalf("read agentd log: %v", err)
	}
	return string(b)
}

func fmtPod(p *herdv1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s phase=%s msg=%q", p.GetSpec().GetName(), p.GetStatus().GetPhase(), p.GetStatus().GetMessage())
	for _, c := range p.GetStatus().GetContainers() {
		fmt.Fprintf(&b, " [%s %s %s %q pid=%d restarts=%d]", c.GetName(), c.GetState(), c.GetReason(), c.GetMessage(), c.GetPid(), c.GetRestartCount())
	}
	return b.String()
}
