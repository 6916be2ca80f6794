package resources_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// The acceptance tests run the real thing: a real agentd process per test
// (distinct names, so tests run in parallel), on the package's one private
// containerd (acctest.SharedEnv), pulling the busybox image from the
// in-process registry, driven by the real CLI (OpenTofu or Terraform, see
// main_test.go) through the in-process provider.

// Labels agentd puts on every containerd object it creates (agentd/runtime).
const (
	labelPod    = "io.herd.pod"
	labelPodUID = "io.herd.pod-uid"
)

// accNode is a real agentd for one test, with clients to look at it.
type accNode struct {
	env   *acctest.Env
	agent *acctest.Agent
	conn  *grpc.ClientConn
	pods  herdv1.PodServiceClient
	nodes herdv1.NodeServiceClient
}

// startNode starts agentd `name` on the shared environment. It skips when
// there is no CLI or no containerd; resource.Test itself skips without
// TF_ACC.
func startNode(t *testing.T, name string, mutate ...func(*acctest.AgentOptions)) *accNode {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	return startAgent(t, name, mutate...)
}

// startAgent is startNode for tests that do not run a CLI.
func startAgent(t *testing.T, name string, mutate ...func(*acctest.AgentOptions)) *accNode {
	t.Helper()
	env := acctest.SharedEnv(t)
	a := env.Agent(t, name, mutate...)
	conn, err := a.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &accNode{
		env:   env,
		agent: a,
		conn:  conn,
		pods:  herdv1.NewPodServiceClient(conn),
		nodes: herdv1.NewNodeServiceClient(conn),
	}
}

// providerHCL configures the provider with the admin client certificate,
// as files (not through the environment: t.Setenv forbids t.Parallel).
func (n *accNode) providerHCL() string {
	c := n.env.Certs
	return fmt.Sprintf(`
provider "herd" {
  ca_cert     = %q
  client_cert = %q
  client_key  = %q
}
`, c.CAFile, c.ClientCertFile, c.ClientKeyFile)
}

// nodeHCL declares herd_node.n for this agent; extra goes in its body.
func (n *accNode) nodeHCL(extra string) string {
	return fmt.Sprintf(`
resource "herd_node" "n" {
  name    = %q
  address = %q
  %s
}
`, n.agent.Name, n.agent.Addr, extra)
}

// podID is the herd_pod id of pod name on this node.
func (n *accNode) podID(name string) string { return n.agent.ID() + "/" + name }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// ctdContext is a context in the agent's containerd namespace.
func (n *accNode) ctdContext(t *testing.T) context.Context {
	return namespaces.WithNamespace(ctx(t), n.agent.Opts.Namespace)
}

// ctdContainer is what containerd itself holds for a container.
type ctdContainer struct {
	ID     string
	Labels map[string]string
	PID    uint32 // 0 without a task
	Status string // task status, "" without a task
}

// containers lists containerd's containers in the agent's namespace whose
// labels include every entry of match (all of them when match is empty).
func (n *accNode) containers(t *testing.T, match map[string]string) ([]ctdContainer, error) {
	c := n.ctdContext(t)
	var filters []string
	keys := make([]string, 0, len(match))
	for k := range match {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		filters = append(filters, fmt.Sprintf("labels.%q==%q", k, match[k]))
	}
	cl := n.env.Containerd.Client()
	list, err := cl.Containers(c, strings.Join(filters, ","))
	if err != nil {
		return nil, fmt.Errorf("list containerd containers: %w", err)
	}
	var out []ctdContainer
	for _, ct := range list {
		labels, err := ct.Labels(c)
		if err != nil {
			return nil, err
		}
		cc := ctdContainer{ID: ct.ID(), Labels: labels}
		if task, err := ct.Task(c, nil); err == nil {
			cc.PID = task.Pid()
			if st, err := task.Status(c); err == nil {
				cc.Status = string(st.Status)
			}
		}
		out = append(out, cc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// nothingLeft checks that the node has no pod and containerd no container
// (nor snapshot) in the agent's namespace.
func (n *accNode) nothingLeft(t *testing.T) error {
	list, err := n.pods.ListPods(ctx(t), &herdv1.ListPodsRequest{})
	if err != nil {
		return fmt.Errorf("ListPods: %w", err)
	}
	if len(list.GetPods()) > 0 {
		var names []string
		for _, p := range list.GetPods() {
			names = append(names, p.GetSpec().GetName())
		}
		return fmt.Errorf("pods left on node %s: %v", n.agent.Name, names)
	}
	cs, err := n.containers(t, nil)
	if err != nil {
		return err
	}
	if len(cs) > 0 {
		return fmt.Errorf("containerd containers left in namespace %s: %+v", n.agent.Opts.Namespace, cs)
	}
	var snaps []string
	c := n.ctdContext(t)
	err = n.env.Containerd.Client().SnapshotService("overlayfs").Walk(c, func(_ context.Context, info snapshots.Info) error {
		if _, ok := info.Labels[labelPod]; ok {
			snaps = append(snaps, info.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk snapshots: %w", err)
	}
	if len(snaps) > 0 {
		return fmt.Errorf("herd snapshots left in namespace %s: %v", n.agent.Opts.Namespace, snaps)
	}
	return nil
}

// checkNothingLeft is nothingLeft as a CheckDestroy.
func (n *accNode) checkNothingLeft(t *testing.T) func(*terraform.State) error {
	return func(*terraform.State) error { return n.nothingLeft(t) }
}

// logs returns everything a container of a pod logged so far.
func (n *accNode) logs(t *testing.T, pod, container string) (string, error) {
	stream, err := n.pods.PodLogs(ctx(t), &herdv1.PodLogsRequest{Pod: pod, Container: container})
	if err != nil {
		return "", err
	}
	var b []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return string(b), nil
		}
		if err != nil {
			return string(b), err
		}
		b = append(b, chunk.GetData()...)
	}
}

// waitLogs waits until a container's log contains want.
func (n *accNode) waitLogs(t *testing.T, pod, container, want string) error {
	var got string
	var err error
	if wait.PollUntilContextTimeout(ctx(t), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		got, err = n.logs(t, pod, container)
		return err == nil && strings.Contains(got, want), nil
	}) == nil {
		return nil
	}
	return fmt.Errorf("log of %s/%s does not contain %q (err %v):\n%s", pod, container, want, err, got)
}

// waitPodGone polls GetPod until the node no longer has the pod.
func (n *accNode) waitPodGone(t *testing.T, name string, timeout time.Duration) error {
	var err error
	if wait.PollUntilContextTimeout(ctx(t), 100*time.Millisecond, timeout, true, func(c context.Context) (bool, error) {
		_, err = n.pods.GetPod(c, &herdv1.GetPodRequest{Name: name})
		return status.Code(err) == codes.NotFound, nil
	}) == nil {
		return nil
	}
	return fmt.Errorf("pod %s still on the node after %s (last error %v)", name, timeout, err)
}

// processExists reports whether a host PID is alive (not a zombie).
func processExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces, the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// stateAttr reads an attribute of a resource from a state.
func stateAttr(s *terraform.State, res, key string) (string, error) {
	rs, ok := s.RootModule().Resources[res]
	if !ok {
		return "", fmt.Errorf("%s not in state", res)
	}
	v, ok := rs.Primary.Attributes[key]
	if !ok {
		return "", fmt.Errorf("%s: no attribute %s", res, key)
	}
	return v, nil
}

// stateInt reads an integer attribute.
func stateInt(s *terraform.State, res, key string) (int, error) {
	v, err := stateAttr(s, res, key)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// atLeast checks an integer attribute value.
func atLeast(lo int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		if n < lo {
			return fmt.Errorf("got %d, want at least %d", n, lo)
		}
		return nil
	}
}

// record stores an attribute value for a later step.
func record(dst *string) func(string) error {
	return func(v string) error { *dst = v; return nil }
}

// differs checks that an attribute changed from a recorded value.
func differs(old *string) func(string) error {
	return func(v string) error {
		if v == "" || v == *old {
			return fmt.Errorf("got %q, want a value other than %q", v, *old)
		}
		return nil
	}
}

// equals checks an attribute against a recorded value.
func equals(want *string) func(string) error {
	return func(v string) error {
		if v != *want {
			return fmt.Errorf("got %q, want %q", v, *want)
		}
		return nil
	}
}

// onlyContainers checks that containerd holds exactly the pod's
// containers ids, all of incarnation uid, running with a live process.
func (n *accNode) onlyContainers(t *testing.T, pod string, uid *string, ids ...string) error {
	cs, err := n.containers(t, map[string]string{labelPod: pod})
	if err != nil {
		return err
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.ID)
		if c.Labels[labelPodUID] != *uid {
			return fmt.Errorf("container %s belongs to pod uid %s, want %s", c.ID, c.Labels[labelPodUID], *uid)
		}
		if c.Status != "running" || !processExists(int(c.PID)) {
			return fmt.Errorf("container %s: task %q pid %d, want a running process", c.ID, c.Status, c.PID)
		}
	}
	if !slices.Equal(got, ids) {
		return fmt.Errorf("containerd holds containers %v for pod %s, want %v", got, pod, ids)
	}
	return nil
}
