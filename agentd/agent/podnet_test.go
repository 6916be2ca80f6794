package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// TestPodNetwork runs agentd inside a lab node's network namespace with a
// pod CIDR: each pod gets its own IP from the range, the containers of one
// pod share it, pods reach each other directly, and deleting a pod tears
// its network down.
func TestPodNetwork(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	lab := acctest.LabForTest(t, netip.MustParsePrefix("10.78.0.0/24"))
	n1, err := lab.AddNode("n1")
	if err != nil {
		t.Fatal(err)
	}
	// The node pulls from the test's loopback registry at the same address.
	relay, err := n1.Relay(env.Registry.Host(), env.Registry.Host())
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	podCIDR := netip.MustParsePrefix("10.245.1.0/24")
	n := startNode(t, "podnet", func(o *acctest.AgentOptions) {
		o.Node = n1
		o.ExtraArgs = append(o.ExtraArgs, "--pod-cidr", podCIDR.String())
	})

	// Pod "web": httpd answers with its hostname; a second container in
	// the same pod reaches it on 127.0.0.1 (one network namespace per pod).
	web := n.pod("web", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www")
	web.Containers = append(web.Containers, &herdv1.ContainerSpec{
		Name:    "sidecar",
		Image:   env.Image,
		Command: []string{"sh", "-c", "sleep 1; timeout 5 wget -q -O - http://127.0.0.1:8080/; sleep 3600"},
	})
	web.Containers[0].Ports = []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	n.apply(t, web)
	wp := n.waitRunning(t, "web")
	webIP, err := netip.ParseAddr(wp.GetStatus().GetPodIp())
	if err != nil || !podCIDR.Contains(webIP) {
		t.Fatalf("pod web IP %q is not in %s", wp.GetStatus().GetPodIp(), podCIDR)
	}
	n.waitLogs(t, "web", "sidecar", "web")

	// Pod "client" on the same node reaches web at its pod IP.
	n.apply(t, n.pod("client", fmt.Sprintf("sleep 1; timeout 5 wget -q -O - http://%s:8080/; sleep 3600", webIP)))
	cp := n.waitRunning(t, "client")
	if cp.GetStatus().GetPodIp() == wp.GetStatus().GetPodIp() || cp.GetStatus().GetPodIp() == "" {
		t.Fatalf("pods share or lack an IP: web %s, client %s", wp.GetStatus().GetPodIp(), cp.GetStatus().GetPodIp())
	}
	n.waitLogs(t, "client", "main", "web")

	// The node itself reaches the pod through its bridge.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := n1.Dial(ctx, "tcp", netip.AddrPortFrom(webIP, 8080).String())
	if err != nil {
		t.Fatalf("node -> pod web: %v", err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: web\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("node -> pod web: %v", err)
	}
	defer resp.Body.Close()
	body := make([]byte, 64)
	k, _ := resp.Body.Read(body)
	conn.Close()
	if got := strings.TrimSpace(string(body[:k])); got != "web" {
		t.Fatalf("node -> pod web answered %q", got)
	}

	// Deleting the pod removes its network namespace.
	netnsFile := filepath.Join(n.agent.StateDir, "net", "netns", "herd-"+wp.GetUid())
	if _, err := os.Stat(netnsFile); err != nil {
		t.Fatalf("pod network namespace file: %v", err)
	}
	if !n.delete(t, "web", 0) {
		t.Fatal("delete web: pod did not exist")
	}
	if _, err := os.Stat(netnsFile); !os.IsNotExist(err) {
		t.Fatalf("pod network namespace still there after delete: %v", err)
	}
}
