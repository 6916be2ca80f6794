package acctest

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// echoName serves one line, the node's name, on every connection, and
// reports the peer address it saw.
func echoName(t *testing.T, n *LabNode) (addr string, peers <-chan string) {
	t.Helper()
	l, err := n.Listen("tcp", n.IP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case ch <- c.RemoteAddr().String():
			default:
			}
			_, _ = c.Write([]byte(n.Name + "\n"))
			c.Close()
		}
	}()
	return l.Addr().String(), ch
}

func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestLab(t *testing.T) {
	lab := LabForTest(t, netip.MustParsePrefix("10.77.0.0/24"))
	var nodes []*LabNode
	for _, name := range []string{"n1", "n2", "n3"} {
		n, err := lab.AddNode(name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	if got := nodes[0].IP.String(); got != "10.77.0.2" {
		t.Fatalf("first node IP = %s, want 10.77.0.2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Node to node across the bridge, no NAT: the server sees n2's address.
	addr, peers := echoName(t, nodes[0])
	c, err := nodes[1].Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("n2 -> n1: %v", err)
	}
	if got := readLine(t, c); got != "n1" {
		t.Fatalf("n2 -> n1 answered %q", got)
	}
	c.Close()
	if peer := <-peers; !strings.HasPrefix(peer, nodes[1].IP.String()+":") {
		t.Fatalf("n1 saw peer %s, want n2's address %s", peer, nodes[1].IP)
	}

	// The test process reaches n1 through a forwarder on 127.0.0.1 (never
	// by dialing lab addresses from the root namespace, whose routes lead
	// off this machine).
	fwd, err := nodes[0].Forward(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	c, err = net.Dial("tcp", fwd.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, c); got != "n1" {
		t.Fatalf("forwarder answered %q", got)
	}
	c.Close()

	// A removed node is gone from the network, as a dead machine is.
	if err := lab.RemoveNode(nodes[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nodes[2].Path()); !os.IsNotExist(err) {
		t.Fatalf("removed node's namespace still exists: %v", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	if c, err := nodes[1].Dial(dctx, "tcp", nodes[2].IP.String()+":1"); err == nil {
		c.Close()
		t.Fatal("a removed node still answers")
	}

	lab.Close()
	if _, err := os.Stat(nodes[0].Path()); !os.IsNotExist(err) {
		t.Fatalf("lab namespaces left behind after Close: %v", err)
	}
}
