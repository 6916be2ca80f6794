package acctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Lab is a small network of test hosts: one network namespace per node,
// joined by a bridge that lives in a "switch" namespace of its own. Nothing
// is added to the host's root namespace; the test process reaches a node
// through Forward, a 127.0.0.1 listener whose upstream sockets are created
// inside the node's namespace.
type Lab struct {
	ID     string
	Subnet netip.Prefix // node addresses: .1 is unused, nodes from .2
	sw     string       // switch namespace name
	mu     sync.Mutex
	nodes  []*LabNode
	closed bool
}

// LabNode is one host of a Lab.
type LabNode struct {
	Name  string
	Netns string // name under /run/netns
	IP    netip.Addr
}

// Path is the node namespace's file, for setns and for OCI specs.
func (n *LabNode) Path() string { return "/run/netns/" + n.Netns }

// NewLab creates the switch namespace and its bridge. Subnet is private to
// the lab's namespaces (e.g. 10.77.0.0/24).
func NewLab(subnet netip.Prefix) (*Lab, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	l := &Lab{ID: hex.EncodeToString(b), Subnet: subnet.Masked()}
	l.sw = "herdlab-" + l.ID + "-sw"
	if err := ip("netns", "add", l.sw); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "br0", "up"},
	} {
		if err := ipIn(l.sw, args...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// LabForTest creates a Lab and removes it when the test ends. Like
// ContainerdForTest, it needs root: skipped locally, fatal under CI.
func LabForTest(tb testing.TB, subnet netip.Prefix) *Lab {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			tb.Fatal("network lab needs root")
		}
		tb.Skip("network lab needs root")
	}
	l, err := NewLab(subnet)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// AddNode creates a node namespace with eth0 on the lab bridge.
func (l *Lab) AddNode(name string) (*LabNode, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab closed")
	}
	idx := len(l.nodes) + 2 // .1 stays free, as a gateway would
	addr := l.Subnet.Addr()
	for range idx {
		addr = addr.Next()
	}
	if !l.Subnet.Contains(addr) || !l.Subnet.Contains(addr.Next()) {
		return nil, fmt.Errorf("lab subnet %s is full", l.Subnet)
	}
	n := &LabNode{Name: name, Netns: fmt.Sprintf("herdlab-%s-%d", l.ID, idx), IP: addr}
	host := fmt.Sprintf("hl%s%d", l.ID, idx) // ≤ 15 characters
	if err := ip("netns", "add", n.Netns); err != nil {
		return nil, err
	}
	if err := ip("link", "add", host, "netns", l.sw, "type", "veth", "peer", "name", "eth0", "netns", n.Netns); err != nil {
		_ = ip("netns", "del", n.Netns)
		return nil, err
	}
	l.nodes = append(l.nodes, n) // from here on Close removes it
	for _, s := range [][]string{{"link", "set", host, "master", "br0"}, {"link", "set", host, "up"}} {
		if err := ipIn(l.sw, s...); err != nil {
			return nil, err
		}
	}
	for _, s := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", fmt.Sprintf("%s/%d", addr, l.Subnet.Bits()), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
	} {
		if err := ipIn(n.Netns, s...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Nodes returns the nodes added so far.
func (l *Lab) Nodes() []*LabNode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*LabNode(nil), l.nodes...)
}

// RemoveNode deletes a node's namespace (and with it its veth): the node
// drops off the network at once, as a dead machine would.
func (l *Lab) RemoveNode(n *LabNode) error {
	return ip("netns", "del", n.Netns)
}

// Close deletes every namespace of the lab.
func (l *Lab) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for _, n := range l.nodes {
		_ = ip("netns", "del", n.Netns)
	}
	_ = ip("netns", "del", l.sw)
}

// Command returns a command that runs inside the node's namespace.
func (n *LabNode) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Netns, name}, args...)...)
}

// Dial opens a TCP connection from inside the node's namespace.
func (n *LabNode) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Listen opens a listener inside the node's namespace.
func (n *LabNode) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Do runs f on an OS thread switched into the node's namespace. Sockets
// created by f stay in that namespace after the thread switches back.
func (n *LabNode) Do(f func() error) error { return InNetns(n.Path(), f) }

// Forward listens on 127.0.0.1 in the test's own namespace and relays each
// connection to addr as seen from inside the node's namespace. It lets the
// in-process provider reach a node's agentd without any route or address
// in the host's root namespace. Close the returned listener to stop it.
func (n *LabNode) Forward(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go serveRelay(l, func() (net.Conn, error) { return n.Dial(context.Background(), "tcp", addr) })
	return l, nil
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipIn(ns string, args ...string) error {
	return ip(append([]string{"-n", ns}, args...)...)
}

// Relay listens on addr inside the node's namespace and relays each
// connection to target in the test's own namespace: a node reaches a
// loopback registry of the test at the same address it has outside.
func (n *LabNode) Relay(addr, target string) (net.Listener, error) {
	l, err := n.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go serveRelay(l, func() (net.Conn, error) { return net.Dial("tcp", target) })
	return l, nil
}

// serveRelay accepts until l is closed and pipes each connection to a new
// upstream connection from dial.
func serveRelay(l net.Listener, dial func() (net.Conn, error)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := dial()
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}
