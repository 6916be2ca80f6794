package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// TestClusterPodRouting: three agentds, each in a lab node, form a cluster
// over encrypted gossip; each claims its own pod CIDR from the cluster
// range; a pod on one node reaches a pod on another at its pod IP through
// the host-gw routes agentd installs.
func TestClusterPodRouting(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	lab := acctest.LabForTest(t, netip.MustParsePrefix("10.79.0.0/24"))
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	clusterCIDR := netip.MustParsePrefix("10.246.0.0/16")

	var nodes []*node
	var labNodes []*acctest.LabNode
	for i, name := range []string{"cl-a", "cl-b", "cl-c"} {
		ln, err := lab.AddNode(name)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := ln.Relay(env.Registry.Host(), env.Registry.Host())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { relay.Close() })
		args := []string{
			"--cluster-cidr", clusterCIDR.String(),
			"--gossip-listen", ln.IP.String() + ":7946",
			"--gossip-key", keyFile,
		}
		if i > 0 {
			args = append(args, "--join", labNodes[0].IP.String()+":7946")
		}
		nodes = append(nodes, startNode(t, name, func(o *acctest.AgentOptions) {
			o.Node = ln
			o.ExtraArgs = append(o.ExtraArgs, args...)
		}))
		labNodes = append(labNodes, ln)
	}

	// Every node sees all three alive, with distinct pod CIDRs in range.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range nodes {
		conn, err := n.agent.LocalConn()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cl := herdv1.NewClusterServiceClient(conn)
		var members []*herdv1.Member
		for {
			resp, err := cl.ListMembers(ctx, &herdv1.ListMembersRequest{})
			if err != nil {
				t.Fatalf("%s: ListMembers: %v", n.agent.Name, err)
			}
			members = resp.GetMembers()
			// Alive, and with its pod CIDR claim gossiped.
			ready := 0
			for _, m := range members {
				if m.GetState() == "alive" && m.GetPodCidr() != "" {
					ready++
				}
			}
			if ready == 3 && len(members) == 3 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s sees %v, want 3 alive members with pod CIDRs", n.agent.Name, members)
			}
			time.Sleep(200 * time.Millisecond)
		}
		cidrs := map[string]string{}
		for _, m := range members {
			p, err := netip.ParsePrefix(m.GetPodCidr())
			if err != nil || !clusterCIDR.Contains(p.Addr()) || p.Bits() != 24 {
				t.Fatalf("%s: member %s has pod CIDR %q, want a /24 in %s", n.agent.Name, m.GetName(), m.GetPodCidr(), clusterCIDR)
			}
			if other, dup := cidrs[m.GetPodCidr()]; dup {
				t.Fatalf("%s: members %s and %s share pod CIDR %s", n.agent.Name, other, m.GetName(), m.GetPodCidr())
			}
			cidrs[m.GetPodCidr()] = m.GetName()
		}
	}
	// A node refuses the cluster's gossip without the key: covered by the
	// cluster package's tests; here the node's own view must agree.
	info, err := nodes[0].nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetPodCidr() == "" {
		t.Fatal("GetNode reports no pod CIDR in a cluster")
	}

	// web on cl-a, client on cl-c: across nodes, at the pod IP.
	nodes[0].apply(t, nodes[0].pod("web", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"))
	wp := nodes[0].waitRunning(t, "web")
	webIP := netip.MustParseAddr(wp.GetStatus().GetPodIp())
	if p := netip.MustParsePrefix(info.GetPodCidr()); !p.Contains(webIP) {
		t.Fatalf("web's IP %s is outside its node's pod CIDR %s", webIP, p)
	}
	nodes[2].apply(t, nodes[2].pod("client", fmt.Sprintf(
		"for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -q -O - http://%s:8080/ && break; sleep 1; done; sleep 3600", webIP)))
	nodes[2].waitRunning(t, "client")
	nodes[2].waitLogs(t, "client", "main", "web")
}
