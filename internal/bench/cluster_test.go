package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// svcBench is a two-node cluster for the service benchmarks: servers run
// on Nodes[0], the client is a pod on Nodes[1], so every request crosses
// nodes the way pod-to-service traffic does.
type svcBench struct {
	c      *acctest.TestCluster
	image  string // busybox + /benchserver
	client string // netns file of the client pod
}

// newSvcBench starts the cluster (nodes prefix-a and prefix-b on a lab of
// their own) and the client pod.
func newSvcBench(b *testing.B, prefix, subnet string) *svcBench {
	b.Helper()
	env := acctest.SharedEnv(b)
	sb := &svcBench{image: serverImage(b, env)}
	sb.c = env.NewCluster(b, acctest.ClusterOptions{
		Names:  []string{prefix + "-a", prefix + "-b"},
		Subnet: netip.MustParsePrefix(subnet),
	})
	n := sb.c.Nodes[1]
	p := sb.applyPod(b, n, &herdv1.PodSpec{
		Name:       "client",
		Containers: []*herdv1.ContainerSpec{{Name: "main", Image: sb.image, Command: sleepCmd}},
	})
	sb.client = n.PodNetns(p.GetUid())
	return sb
}

// serverPod runs benchserver, serving its name on the container port
// "http" (8080). With probe, its readiness is benchserver's /healthz,
// asked every second, and it starts not ready.
func serverPod(image, name string, labels map[string]string, probe bool) *herdv1.PodSpec {
	one := int32(1)
	ctr := &herdv1.ContainerSpec{
		Name: "main", Image: image, Command: []string{"/benchserver"},
		Ports: []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}},
	}
	if probe {
		ctr.Command = append(ctr.Command, "-ready=false")
		ctr.ReadinessProbe = &herdv1.Probe{
			HttpGet:       &herdv1.HTTPGetAction{Path: "/healthz", PortName: "http"},
			PeriodSeconds: &one, FailureThreshold: &one, SuccessThreshold: &one,
		}
	}
	return &herdv1.PodSpec{Name: name, Labels: labels, Containers: []*herdv1.ContainerSpec{ctr}}
}

// applyPod applies spec on n and waits until it runs with a pod IP.
func (sb *svcBench) applyPod(b *testing.B, n *acctest.ClusterNode, spec *herdv1.PodSpec) *herdv1.Pod {
	b.Helper()
	ctx := context.Background()
	if _, err := n.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: spec}); err != nil {
		b.Fatalf("%s: apply pod %s: %v", n.Agent.Name, spec.GetName(), err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		p, err := n.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: spec.GetName()})
		if err != nil {
			b.Fatalf("%s: get pod %s: %v", n.Agent.Name, spec.GetName(), err)
		}
		if p.GetStatus().GetPhase() == "Running" && p.GetStatus().GetPodIp() != "" {
			return p
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: pod %s not running with an IP after 90 s: %v", n.Agent.Name, spec.GetName(), p.GetStatus())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// applyService creates a service over the pods with label bench=name,
// port 80 to the pods' port "http", and waits until every node holds it.
// It returns the VIP's address "IP:80".
func (sb *svcBench) applyService(b *testing.B, name string) string {
	b.Helper()
	ctx := context.Background()
	resp, err := sb.c.Nodes[0].Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name:     name,
		Selector: map[string]string{"bench": name},
		Ports:    []*herdv1.ServicePort{{Name: "http", Port: 80, TargetPortName: "http"}},
	}})
	if err != nil {
		b.Fatalf("apply service %s: %v", name, err)
	}
	vip := resp.GetService().GetStatus().GetClusterIp()
	for _, n := range sb.c.Nodes {
		waitUntil(b, 30*time.Second, n.Agent.Name+" holds service "+name, func() (bool, error) {
			s, err := n.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: name})
			if err != nil {
				return false, err
			}
			return s.GetStatus().GetSynced() && s.GetStatus().GetClusterIp() == vip, nil
		})
	}
	return net.JoinHostPort(vip, "80")
}

// inLab refuses any address outside the cluster's pod and service ranges:
// benchmark traffic must never leave the namespaces the test made.
func (sb *svcBench) inLab(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	o := sb.c.Opts
	if !o.ClusterCIDR.Contains(ap.Addr()) && !o.ServiceCIDR.Contains(ap.Addr()) {
		return fmt.Errorf("address %s is outside the lab's %s and %s", addr, o.ClusterCIDR, o.ServiceCIDR)
	}
	return nil
}

// dialIn opens a TCP connection to addr from inside the namespace at
// netnsPath; the socket is created on that namespace's locked thread.
func (sb *svcBench) dialIn(netnsPath, addr string, timeout time.Duration) (net.Conn, error) {
	if err := sb.inLab(addr); err != nil {
		return nil, err
	}
	var conn net.Conn
	err := acctest.InNetns(netnsPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return conn, err
}

// get asks http://addr/path from the namespace at netnsPath on a new
// connection and returns the body of a 200.
func (sb *svcBench) get(netnsPath, addr, path string) (string, error) {
	conn, err := sb.dialIn(netnsPath, addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	return roundTrip(conn, bufio.NewReader(conn), path, true)
}

// roundTrip sends one GET on conn and reads its answer; with closeConn the
// server closes the connection after it (one connection per request).
func roundTrip(conn net.Conn, br *bufio.Reader, path string, closeConn bool) (string, error) {
	req := "GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n"
	if closeConn {
		req = "GET " + path + " HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return "", fmt.Errorf("send GET %s: %w", path, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", fmt.Errorf("read answer to GET %s: %w", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("read body of GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

// waitUntil polls cond every 20 ms; an error from cond is kept as the
// reason given if the wait times out.
func waitUntil(b *testing.B, timeout time.Duration, what string, cond func() (bool, error)) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not after %s (last: %v)", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
