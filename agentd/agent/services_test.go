package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// webPod serves its own name on 8080 (container port "http") and, in the
// background, resolves the web service through the pod's resolv.conf.
func webPod(image, name string) *herdv1.PodSpec {
	return &herdv1.PodSpec{
		Name:   name,
		Labels: map[string]string{"app": "web"},
		Containers: []*herdv1.ContainerSpec{{
			Name:  "main",
			Image: image,
			Command: []string{"sh", "-c", "mkdir -p /www; hostname > /www/index.html; " +
				"(for i in $(seq 1 300); do nslookup web.default.svc.cluster.local > /tmp/ns 2>&1 && cat /tmp/ns && break; sleep 1; done) & " +
				"exec httpd -f -p 8080 -h /www"},
			Ports: []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}},
	}
}

// get asks http://addr/ from inside the network namespace at netnsPath.
var get = acctest.HTTPGetIn

// dialRefused dials addr from the namespace and reports how long the
// refusal took; an error if it was not refused. A missing reject rule shows
// as a timeout: the dial waits long enough that a slow machine never
// looks like one.
func dialRefused(netnsPath, addr string) (time.Duration, error) {
	var took time.Duration
	err := acctest.InNetns(netnsPath, func() error {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		took = time.Since(start)
		if err == nil {
			c.Close()
			return errors.New("connected")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		return nil
	})
	return took, err
}

// clusterIPs lists the addresses in @clusterips of herd's table on a lab
// node: the VIPs whose traffic that node rejects unless it was DNATed.
func clusterIPs(t *testing.T, n *acctest.LabNode) map[string]bool {
	t.Helper()
	out, err := n.Command("nft", "list", "set", "ip", "herd", "clusterips").CombinedOutput()
	if err != nil {
		t.Fatalf("list herd's clusterips: %v: %s", err, out)
	}
	ips := map[string]bool{}
	for _, f := range strings.FieldsFunc(string(out), func(r rune) bool { return strings.ContainsRune(" \t\n{},", r) }) {
		if a, err := netip.ParseAddr(f); err == nil {
			ips[a.String()] = true
		}
	}
	return ips
}

// seen asks url n times and counts the answers by body.
func seen(netnsPath, url string, n int) map[string]int {
	out := map[string]int{}
	for range n {
		b, err := get(netnsPath, url)
		if err != nil {
			out["error: "+err.Error()]++
			continue
		}
		out[b]++
	}
	return out
}

// waitFor polls cond until it holds, failing the test with what and cond's
// last report if timeout passes first.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		var ok bool
		ok, last = cond()
		return ok, nil // not yet: keep polling
	})
	if err != nil {
		t.Fatalf("%s: not after %s (last: %s)", what, timeout, strings.TrimSpace(last))
	}
}

func waitPodRunning(t *testing.T, n *acctest.ClusterNode, name string) *herdv1.Pod {
	t.Helper()
	var pod *herdv1.Pod
	waitFor(t, 90*time.Second, n.Agent.Name+": pod "+name+" running", func() (bool, string) {
		p, err := n.Pods.GetPod(context.Background(), &herdv1.GetPodRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return p.GetStatus().GetPhase() == "Running" && p.GetStatus().GetPodIp() != "", p.GetStatus().String()
	})
	return pod
}

// TestServicesAcrossNodes: three agentds in lab nodes form a cluster; a
// service written through one node is programmed on all; its VIP, asked
// from a pod on every node, spreads over the pods of all nodes; its name
// resolves in pods; empty services and unused ports refuse at once; a pod
// reaches itself through the VIP (hairpin); NodePort answers on every
// node's address; a node that joins later serves the service without an
// apply; a dead node's endpoints leave the rules of the others.
func TestServicesAcrossNodes(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	svcCIDR := netip.MustParsePrefix("10.97.0.0/16")
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       []string{"sv-a", "sv-b", "sv-c"},
		Subnet:      netip.MustParsePrefix("10.81.0.0/24"),
		ServiceCIDR: svcCIDR,
		// short full-resync period: the repair of rules changed behind
		// herd's back is checked below
		Mutate: func(o *acctest.AgentOptions) { o.ExtraArgs = append(o.ExtraArgs, "--service-resync", "2s") },
	})
	ctx := context.Background()

	netnsOf := map[string]string{} // pod name -> its netns file
	for _, n := range c.Nodes {
		name := "web-" + n.Agent.Name
		if _, err := n.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: webPod(env.Image, name)}); err != nil {
			t.Fatalf("%s: apply %s: %v", n.Agent.Name, name, err)
		}
	}
	for _, n := range c.Nodes {
		name := "web-" + n.Agent.Name
		p := waitPodRunning(t, n, name)
		netnsOf[name] = n.PodNetns(p.GetUid())
	}

	// Written through sv-b only.
	resp, err := c.Nodes[1].Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name:     "web",
		Selector: map[string]string{"app": "web"},
		Ports:    []*herdv1.ServicePort{{Name: "http", Port: 80, TargetPortName: "http"}},
	}})
	if err != nil {
		t.Fatalf("apply service: %v", err)
	}
	svc := resp.GetService()
	vip := netip.MustParseAddr(svc.GetStatus().GetClusterIp())
	if !svcCIDR.Contains(vip) {
		t.Fatalf("cluster IP %s outside %s", vip, svcCIDR)
	}
	if got := svc.GetStatus().GetDnsName(); got != "web.default.svc.cluster.local" {
		t.Fatalf("dns_name %q", got)
	}
	url := vip.String() + ":80"

	// From a pod on every node, the VIP reaches the pods of all nodes.
	for _, n := range c.Nodes {
		from := netnsOf["web-"+n.Agent.Name]
		all := map[string]int{}
		waitFor(t, 30*time.Second, "VIP from a pod on "+n.Agent.Name+" reaches every pod", func() (bool, string) {
			for k, v := range seen(from, url, 15) {
				all[k] += v
			}
			for _, m := range c.Nodes {
				if all["web-"+m.Agent.Name] == 0 {
					return false, fmt.Sprint(all)
				}
			}
			return true, ""
		})
		t.Logf("from %s: %v", n.Agent.Name, all)
	}

	// Every node holds the current version: Read would show no drift.
	for _, n := range c.Nodes {
		waitFor(t, 15*time.Second, n.Agent.Name+" reports the service synced", func() (bool, string) {
			s, err := n.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: "web"})
			if err != nil {
				return false, err.Error()
			}
			return s.GetStatus().GetSynced() && len(s.GetStatus().GetMembers()) == 3 &&
				s.GetStatus().GetClusterIp() == vip.String() && len(s.GetStatus().GetEndpoints()) == 3, s.GetStatus().String()
		})
	}

	// The name resolves inside the pods, through their resolv.conf.
	for _, n := range c.Nodes {
		name := "web-" + n.Agent.Name
		waitFor(t, 60*time.Second, name+" resolves the service", func() (bool, string) {
			logs := podLogs(t, n, name)
			return strings.Contains(logs, vip.String()), logs
		})
	}

	// A headless service resolves, from inside a pod, to one A record per
	// ready pod; a named port gets an SRV record.
	if _, err := c.Nodes[2].Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "web-h", Type: "Headless", Selector: map[string]string{"app": "web"},
		Ports: []*herdv1.ServicePort{{Name: "http", Port: 8080}},
	}}); err != nil {
		t.Fatal(err)
	}
	podIPs := map[string]bool{}
	for _, n := range c.Nodes {
		p, err := n.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "web-" + n.Agent.Name})
		if err != nil {
			t.Fatal(err)
		}
		podIPs[p.GetStatus().GetPodIp()] = true
	}
	resolver := gatewayOf(t, c.Nodes[0]) + ":53"
	waitFor(t, 20*time.Second, "headless A records from a pod", func() (bool, string) {
		got, err := lookup(netnsOf["web-sv-a"], resolver, "web-h.default.svc.cluster.local.", mdns.TypeA)
		if err != nil {
			return false, err.Error()
		}
		ips := map[string]bool{}
		for _, rr := range got {
			if a, ok := rr.(*mdns.A); ok {
				ips[a.A.String()] = true
			}
		}
		return fmt.Sprint(sortedSet(ips)) == fmt.Sprint(sortedSet(podIPs)), fmt.Sprint(got)
	})
	srv, err := lookup(netnsOf["web-sv-b"], gatewayOf(t, c.Nodes[1])+":53", "_http._tcp.web.default.svc.cluster.local.", mdns.TypeSRV)
	if err != nil || len(srv) != 1 || srv[0].(*mdns.SRV).Port != 80 {
		t.Fatalf("SRV _http._tcp.web: %v %v", srv, err)
	}

	// Hairpin: web-sv-a reaches itself through the VIP.
	waitFor(t, 30*time.Second, "hairpin", func() (bool, string) {
		got := seen(netnsOf["web-sv-a"], url, 10)
		return got["web-sv-a"] > 0, fmt.Sprint(got)
	})

	// An unused port on the VIP, and a service without endpoints, refuse
	// with a TCP reset at once (never a timeout).
	empty, err := c.Nodes[0].Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "empty", Selector: map[string]string{"app": "none"},
		Ports: []*herdv1.ServicePort{{Port: 80}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	emptyVIP := empty.GetService().GetStatus().GetClusterIp()
	// The client is web-sv-c, whose traffic sv-c's rules filter. Once both
	// VIPs are in sv-c's @clusterips (the empty service has just been
	// written elsewhere), nothing DNATs these ports: the first dial must be
	// refused, without a retry.
	waitFor(t, 20*time.Second, "both VIPs in sv-c's @clusterips", func() (bool, string) {
		ips := clusterIPs(t, c.Nodes[2].Lab)
		return ips[vip.String()] && ips[emptyVIP], fmt.Sprint(sortedSet(ips))
	})
	for _, addr := range []string{vip.String() + ":81", emptyVIP + ":80"} {
		took, err := dialRefused(netnsOf["web-sv-c"], addr)
		if err != nil {
			t.Fatalf("%s from web-sv-c: %v, want a refusal (TCP reset) once sv-c's rules hold the VIP", addr, err)
		}
		t.Logf("%s refused in %s", addr, took)
	}

	// NodePort: every node's address answers, asked from sv-a's host.
	np, err := c.Nodes[0].Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "web-np", Type: "NodePort", Selector: map[string]string{"app": "web"},
		Ports: []*herdv1.ServicePort{{Port: 80, TargetPort: 8080}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := np.GetService().GetSpec().GetPorts()[0].GetNodePort()
	if nodePort < 30000 || nodePort > 32767 {
		t.Fatalf("node port %d outside 30000-32767", nodePort)
	}
	for _, n := range c.Nodes {
		u := fmt.Sprintf("%s:%d", n.Lab.IP, nodePort)
		waitFor(t, 30*time.Second, "NodePort on "+n.Agent.Name, func() (bool, string) {
			b, err := get(c.Nodes[0].Lab.Path(), u)
			if err != nil {
				return false, err.Error()
			}
			return strings.HasPrefix(b, "web-"), b
		})
	}

	// Session affinity by client IP: one client always reaches one pod.
	if _, err := c.Nodes[0].Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "sticky", SessionAffinity: "ClientIP", Selector: map[string]string{"app": "web"},
		Ports: []*herdv1.ServicePort{{Port: 80, TargetPort: 8080}},
	}}); err != nil {
		t.Fatal(err)
	}
	sticky, err := c.Nodes[0].Services.GetService(ctx, &herdv1.GetServiceRequest{Name: "sticky"})
	if err != nil {
		t.Fatal(err)
	}
	stickyURL := sticky.GetStatus().GetClusterIp() + ":80"
	waitFor(t, 30*time.Second, "affinity: 20 requests of one client reach one pod", func() (bool, string) {
		got := seen(netnsOf["web-sv-b"], stickyURL, 20)
		for k, v := range got {
			return v == 20 && strings.HasPrefix(k, "web-"), fmt.Sprint(got)
		}
		return false, "no answer"
	})

	testReadinessRotation(t, c, netnsOf["web-sv-b"])

	// Rules changed behind herd's back are repaired by the periodic full
	// resync (--service-resync 2s here).
	rules := func() string {
		out, err := c.Nodes[1].Lab.Command("nft", "list", "chain", "ip", "herd", "services").CombinedOutput()
		if err != nil {
			t.Fatalf("list herd's services chain: %v: %s", err, out)
		}
		return string(out)
	}
	if out, err := c.Nodes[1].Lab.Command("nft", "flush", "chain", "ip", "herd", "services").CombinedOutput(); err != nil {
		t.Fatalf("flush herd's chain: %v: %s", err, out)
	}
	flushed := time.Now()
	if r := rules(); strings.Contains(r, "@classes") && time.Since(flushed) < time.Second {
		t.Fatalf("the flush did not remove the rules:\n%s", r)
	}
	waitFor(t, 20*time.Second, "sv-b's rules repaired", func() (bool, string) {
		if r := rules(); !strings.Contains(r, "@classes") {
			return false, r
		}
		b, err := get(netnsOf["web-sv-b"], url)
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(b, "web-"), b
	})
	t.Logf("rules repaired %s after the flush", time.Since(flushed).Round(time.Millisecond))

	// A node that joins now serves the existing service without an apply.
	late := c.AddNode(t, "sv-d", true)
	c.WaitMembers(t, 4)
	waitFor(t, 30*time.Second, "sv-d holds the service", func() (bool, string) {
		s, err := late.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: "web"})
		if err != nil {
			return false, err.Error()
		}
		return s.GetStatus().GetClusterIp() == vip.String(), s.String()
	})
	waitFor(t, 30*time.Second, "the VIP answers on sv-d", func() (bool, string) {
		b, err := get(late.Lab.Path(), url)
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(b, "web-"), b
	})

	// sv-c dies (agentd and its namespace): its endpoint leaves the other
	// nodes' rules, and the VIP keeps answering.
	dead := c.Nodes[2]
	dead.Agent.Kill()
	if err := c.Lab.RemoveNode(dead.Lab); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, 20*time.Second, "sv-c's endpoint leaves sv-a's view", func() (bool, string) {
		s, err := c.Nodes[0].Services.GetService(ctx, &herdv1.GetServiceRequest{Name: "web"})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range s.GetStatus().GetEndpoints() {
			if e.GetNode() == "sv-c" {
				return false, s.GetStatus().String()
			}
		}
		return true, ""
	})
	t.Logf("sv-c's endpoints left after %s", time.Since(killed).Round(time.Millisecond))
	// The view (the cluster store) and the rules (nftables, programmed from
	// it) change one after the other: wait until sv-a's rules follow too.
	waitFor(t, 10*time.Second, "sv-a's rules drop sv-c's endpoint", func() (bool, string) {
		got := seen(netnsOf["web-sv-a"], url, 5)
		return got["web-sv-a"]+got["web-sv-b"] == 5, fmt.Sprint(got)
	})
	got := seen(netnsOf["web-sv-a"], url, 20)
	if got["web-sv-c"] > 0 || got["web-sv-a"]+got["web-sv-b"] != 20 {
		t.Fatalf("after sv-c died, 20 requests got %v; want all answered by web-sv-a and web-sv-b", got)
	}
}

// testReadinessRotation: a pod whose readiness probe fails leaves the
// service's rotation and comes back when it passes. The pod's readiness is
// a file the test switches over a control port (nc), so nothing depends on
// timing.
func testReadinessRotation(t *testing.T, c *acctest.TestCluster, client string) {
	ctx := context.Background()
	n := c.Nodes[0]
	one := int32(1)
	pod := webPod(c.Env.Image, "flip")
	pod.Labels = map[string]string{"app": "flip"}
	ctr := pod.Containers[0]
	ctr.Command = []string{"sh", "-c", "mkdir -p /www; hostname > /www/index.html; touch /tmp/ready; " +
		"(while true; do case $(nc -l -p 9000) in down*) rm -f /tmp/ready;; up*) touch /tmp/ready;; esac; done) & " +
		"exec httpd -f -p 8080 -h /www"}
	ctr.ReadinessProbe = &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}, PeriodSeconds: &one, FailureThreshold: &one}
	if _, err := n.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: pod}); err != nil {
		t.Fatal(err)
	}
	steady := webPod(c.Env.Image, "steady")
	steady.Labels = map[string]string{"app": "flip"}
	if _, err := c.Nodes[1].Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: steady}); err != nil {
		t.Fatal(err)
	}
	flipIP := waitPodRunning(t, n, "flip").GetStatus().GetPodIp()
	waitPodRunning(t, c.Nodes[1], "steady")
	resp, err := n.Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "flip", Selector: map[string]string{"app": "flip"}, Ports: []*herdv1.ServicePort{{Port: 80, TargetPort: 8080}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	url := resp.GetService().GetStatus().GetClusterIp() + ":80"
	control := func(cmd string) {
		t.Helper()
		err := n.Lab.Do(func() error {
			conn, err := net.DialTimeout("tcp", flipIP+":9000", 2*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.Write([]byte(cmd + "\n"))
			return err
		})
		if err != nil {
			t.Fatalf("tell flip %q: %v", cmd, err)
		}
	}
	flipReady := func(want bool) func() (bool, string) {
		return func() (bool, string) {
			s, err := c.Nodes[2].Services.GetService(ctx, &herdv1.GetServiceRequest{Name: "flip"})
			if err != nil {
				return false, err.Error()
			}
			for _, e := range s.GetStatus().GetEndpoints() {
				if e.GetPod() == "flip" {
					return e.GetReady() == want, s.GetStatus().String()
				}
			}
			return false, s.GetStatus().String()
		}
	}
	waitFor(t, 30*time.Second, "flip in the rotation", func() (bool, string) {
		got := seen(client, url, 10)
		return got["flip"] > 0, fmt.Sprint(got)
	})
	control("down")
	waitFor(t, 30*time.Second, "flip reported not ready", flipReady(false))
	waitFor(t, 10*time.Second, "flip out of the rotation", func() (bool, string) {
		got := seen(client, url, 20)
		return got["flip"] == 0 && got["steady"] == 20, fmt.Sprint(got)
	})
	control("up")
	waitFor(t, 30*time.Second, "flip reported ready", flipReady(true))
	waitFor(t, 30*time.Second, "flip back in the rotation", func() (bool, string) {
		got := seen(client, url, 10)
		return got["flip"] > 0, fmt.Sprint(got)
	})
}

func podLogs(t *testing.T, n *acctest.ClusterNode, pod string) string {
	t.Helper()
	stream, err := n.Pods.PodLogs(context.Background(), &herdv1.PodLogsRequest{Pod: pod})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for {
		chunk, err := stream.Recv()
		if err != nil {
			break
		}
		b.Write(chunk.GetData())
	}
	return b.String()
}

// TestServicesNeedACluster: a node without a cluster refuses the service
// API with FailedPrecondition and a hint.
func TestServicesNeedACluster(t *testing.T) {
	t.Parallel()
	n := startNode(t, "svc-alone")
	conn, err := n.agent.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = herdv1.NewServiceServiceClient(conn).ApplyService(context.Background(), &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "web", Selector: map[string]string{"app": "web"}, Ports: []*herdv1.ServicePort{{Port: 80}},
	}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--cluster-cidr") {
		t.Fatalf("got %v, want FailedPrecondition naming --cluster-cidr", err)
	}
}

// TestJoinThroughAPISurvivesRestart: a node that founded its own cluster
// joins another through JoinCluster (herd_node's join); restarted without
// --join, it finds that cluster again from the peers it remembered, takes
// its own nftables table back and serves the cluster's services again.
func TestJoinThroughAPISurvivesRestart(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:  []string{"rj-a"},
		Subnet: netip.MustParsePrefix("10.83.0.0/24"),
	})
	b := c.AddNode(t, "rj-b", false)
	ctx := context.Background()
	resp, err := b.Cluster.JoinCluster(ctx, &herdv1.JoinClusterRequest{Addresses: []string{c.Nodes[0].Lab.IP.String() + ":7946"}})
	if err != nil || resp.GetContacted() < 1 {
		t.Fatalf("JoinCluster: %v %v", resp, err)
	}
	c.WaitMembers(t, 2)
	// A service over a pod on rj-a answers on rj-b.
	a := c.Nodes[0]
	if _, err := a.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: webPod(env.Image, "web-rj")}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, a, "web-rj")
	svc, err := a.Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "web", Selector: map[string]string{"app": "web"}, Ports: []*herdv1.ServicePort{{Port: 80, TargetPortName: "http"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.GetService().GetStatus().GetClusterIp() + ":80"
	answers := func(what string) {
		t.Helper()
		waitFor(t, 30*time.Second, what, func() (bool, string) {
			body, err := get(b.Lab.Path(), vip)
			if err != nil {
				return false, err.Error()
			}
			return body == "web-rj", body
		})
	}
	answers("the VIP answers on rj-b")
	// the peers are remembered on the member event
	time.Sleep(time.Second)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := b.Agent.Restart(rctx); err != nil {
		t.Fatalf("restart rj-b: %v", err)
	}
	c.WaitMembers(t, 2)
	// agentd took its own nft table back and programs it again.
	answers("the VIP answers on rj-b after its agentd restarted")
	// Bad input is refused by agentd itself.
	_, err = b.Cluster.JoinCluster(ctx, &herdv1.JoinClusterRequest{Addresses: []string{"no-port"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "addresses[0]") {
		t.Fatalf("JoinCluster(no-port) = %v, want InvalidArgument naming addresses[0]", err)
	}
}

// gatewayOf is the pod gateway of a node, where agentd serves DNS: the
// first address of its pod CIDR.
func gatewayOf(t *testing.T, n *acctest.ClusterNode) string {
	t.Helper()
	node, err := n.Nodes.GetNode(context.Background(), &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParsePrefix(node.GetPodCidr()).Addr().Next().String()
}

// lookup asks the DNS server at addr from inside a network namespace (the
// socket is made on the namespace's thread).
func lookup(netnsPath, addr, name string, qtype uint16) ([]mdns.RR, error) {
	var conn net.Conn
	if err := acctest.InNetns(netnsPath, func() error {
		var err error
		conn, err = net.DialTimeout("udp", addr, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	dc := &mdns.Conn{Conn: conn}
	if err := dc.WriteMsg(m); err != nil {
		return nil, err
	}
	r, err := dc.ReadMsg()
	if err != nil {
		return nil, err
	}
	if r.Rcode != mdns.RcodeSuccess {
		return nil, fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	return r.Answer, nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
