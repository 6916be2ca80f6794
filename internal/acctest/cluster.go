package acctest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// ClusterOptions describe a multi-node test cluster.
type ClusterOptions struct {
	// Names of the nodes; each gets a lab node and an agentd (unique per
	// test: the names also name the containerd namespaces).
	Names []string
	// Subnet of the lab (node addresses), ClusterCIDR (pod CIDRs) and
	// ServiceCIDR; defaults 10.80.0.0/24, 10.248.0.0/16, 10.96.0.0/16.
	// Labs live in namespaces of their own, so tests may reuse them.
	Subnet, ClusterCIDR, ServiceCIDR netip.Prefix
	// Mutate adjusts each node's agent options.
	Mutate func(*AgentOptions)
}

// ClusterNode is one node of a test cluster.
type ClusterNode struct {
	Lab   *LabNode
	Agent *Agent
	Conn  *grpc.ClientConn // mTLS, through the lab forwarder

	Pods     herdv1.PodServiceClient
	Services herdv1.ServiceServiceClient
	Cluster  herdv1.ClusterServiceClient
	Nodes    herdv1.NodeServiceClient
	// Deployments is the node's DeploymentService.
	Deployments herdv1.DeploymentServiceClient
}

// TestCluster is a lab of nodes whose agentds form one cluster.
type TestCluster struct {
	Env   *Env
	Lab   *Lab
	Opts  ClusterOptions
	Nodes []*ClusterNode
	key   string
}

// NewCluster starts the nodes (the first founds the cluster, the others
// join it) and waits until every node sees every other alive with a pod
// CIDR and every node can take a deployment's replica. Everything is removed when the test ends; pods are deleted first.
func (e *Env) NewCluster(tb testing.TB, o ClusterOptions) *TestCluster {
	tb.Helper()
	if !o.Subnet.IsValid() {
		o.Subnet = netip.MustParsePrefix("10.80.0.0/24")
	}
	if !o.ClusterCIDR.IsValid() {
		o.ClusterCIDR = netip.MustParsePrefix("10.248.0.0/16")
	}
	if !o.ServiceCIDR.IsValid() {
		o.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	}
	c := &TestCluster{Env: e, Lab: LabForTest(tb, o.Subnet), Opts: o}
	c.key = filepath.Join(tb.TempDir(), "gossip.key")
	if err := WriteGossipKey(c.key); err != nil {
		tb.Fatal(err)
	}
	for _, name := range o.Names {
		c.AddNode(tb, name, true)
	}
	c.WaitMembers(tb, len(o.Names))
	c.WaitSchedulable(tb)
	return c
}

// AddNode starts one more node; join makes it join the first node (else it
// founds a cluster of its own, to be joined later through JoinCluster).
func (c *TestCluster) AddNode(tb testing.TB, name string, join bool) *ClusterNode {
	tb.Helper()
	ln, err := c.Lab.AddNode(name)
	if err != nil {
		tb.Fatal(err)
	}
	relay, err := ln.Relay(c.Env.Registry.Host(), c.Env.Registry.Host())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { relay.Close() })
	var joinAddr string
	if join && len(c.Nodes) > 0 {
		joinAddr = c.Nodes[0].Lab.IP.String() + ":7946"
	}
	args := ClusterArgs(ln, c.Opts.ClusterCIDR, c.Opts.ServiceCIDR, c.key, joinAddr)
	a := c.Env.Agent(tb, name, func(o *AgentOptions) {
		o.Node = ln
		o.ExtraArgs = append(o.ExtraArgs, args...)
		if c.Opts.Mutate != nil {
			c.Opts.Mutate(o)
		}
	})
	conn, err := a.Conn()
	if err != nil {
		tb.Fatalf("%s: mTLS client: %v", name, err)
	}
	n := &ClusterNode{
		Lab: ln, Agent: a, Conn: conn,
		Pods:     herdv1.NewPodServiceClient(conn),
		Services: herdv1.NewServiceServiceClient(conn),
		Cluster:  herdv1.NewClusterServiceClient(conn),
		Nodes:    herdv1.NewNodeServiceClient(conn),

		Deployments: herdv1.NewDeploymentServiceClient(conn),
	}
	// Registered after the agent's own cleanup: runs before it stops.
	tb.Cleanup(func() {
		n.deleteAll()
		conn.Close()
	})
	c.Nodes = append(c.Nodes, n)
	return n
}

// WriteGossipKey writes a new random gossip key (base64, 0600).
func WriteGossipKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)), 0o600)
}

// ClusterArgs are the agentd flags of a clustered node in a lab: gossip on
// the node's address, port 7946; join ("" = found a cluster) is a member's
// gossip address.
func ClusterArgs(ln *LabNode, clusterCIDR, serviceCIDR netip.Prefix, keyFile, join string) []string {
	args := []string{
		"--cluster-cidr", clusterCIDR.String(),
		"--service-cidr", serviceCIDR.String(),
		"--gossip-listen", ln.IP.String() + ":7946",
		"--gossip-key", keyFile,
		// no resolver is reachable from a lab: forwarding fails fast
		"--dns-upstream", "127.0.0.1:53",
	}
	if join != "" {
		args = append(args, "--join", join)
	}
	return args
}

// deleteAll deletes every pod and service the node still has (best effort:
// the test may have killed the node).
func (n *ClusterNode) deleteAll() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Deployments first: their driver would replace the pods deleted below.
	if list, err := n.Deployments.ListDeployments(ctx, &herdv1.ListDeploymentsRequest{}); err == nil {
		for _, d := range list.GetDeployments() {
			_, _ = n.Deployments.DeleteDeployment(ctx, &herdv1.DeleteDeploymentRequest{Namespace: d.GetSpec().GetNamespace(), Name: d.GetSpec().GetName()})
		}
	}
	if list, err := n.Services.ListServices(ctx, &herdv1.ListServicesRequest{}); err == nil {
		for _, s := range list.GetServices() {
			_, _ = n.Services.DeleteService(ctx, &herdv1.DeleteServiceRequest{Namespace: s.GetSpec().GetNamespace(), Name: s.GetSpec().GetName()})
		}
	}
	list, err := n.Pods.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil {
		return
	}
	zero := int64(0)
	for _, p := range list.GetPods() {
		_, _ = n.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: p.GetSpec().GetName(), GracePeriodSeconds: &zero})
	}
}

// WaitMembers waits until every node sees want members alive, each with a
// pod CIDR.
func (c *TestCluster) WaitMembers(tb testing.TB, want int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		var (
			alive int
			last  error
		)
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			resp, err := n.Cluster.ListMembers(ctx, &herdv1.ListMembersRequest{})
			alive, last = 0, err
			for _, m := range resp.GetMembers() {
				if m.GetState() == "alive" && m.GetPodCidr() != "" {
					alive++
				}
			}
			return alive >= want, nil
		})
		if err != nil {
			tb.Fatalf("%s: %d of %d members alive (err %v)", n.Agent.Name, alive, want, last)
		}
	}
}

// WaitSchedulable waits until every node of the cluster can take a
// deployment's replica: a dry run of one replica per node, planned through
// the first node, places one on each (a member is a candidate once its
// API address has reached the others).
func (c *TestCluster) WaitSchedulable(tb testing.TB) {
	tb.Helper()
	probe := &herdv1.DeploymentSpec{
		Name: "schedulable-probe", Replicas: int32(len(c.Nodes)),
		Selector:  map[string]string{"app": "schedulable-probe"},
		Placement: &herdv1.Placement{MaxPerNode: 1},
		Template: &herdv1.PodSpec{
			Labels:     map[string]string{"app": "schedulable-probe"},
			Containers: []*herdv1.ContainerSpec{{Name: "main", Image: c.Env.Image}},
		},
	}
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = c.Nodes[0].Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: probe, DryRun: true})
		return last == nil, nil
	})
	if err != nil {
		tb.Fatalf("not every node takes replicas: %v", last)
	}
}

// PodNetns is the network namespace file of a pod on this node.
func (n *ClusterNode) PodNetns(uid string) string {
	return filepath.Join(n.Agent.StateDir, "net", "netns", "herd-"+uid)
}

// InNetns runs f on an OS thread switched into the network namespace at
// path: sockets f opens belong to that namespace (a pod's, say).
func InNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// the thread stays locked and dies with the goroutine
			errc <- fmt.Errorf("leave netns %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// HTTPGetIn asks http://addr/ from inside the network namespace at
// netnsPath, on a new connection, and returns the trimmed body of a 200
// answer. The socket is made on the namespace's locked thread: net/http
// would dial on another goroutine, in the caller's own namespace (and
// could send test traffic to the real network).
func HTTPGetIn(netnsPath, addr string) (string, error) {
	return HTTPGetPathIn(netnsPath, addr, "/")
}

// HTTPGetPathIn is HTTPGetIn for another path than "/".
func HTTPGetPathIn(netnsPath, addr, path string) (string, error) {
	var conn net.Conn
	err := InNetns(netnsPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return "", fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}
