package nft

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2")
	}
}

func run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNS creates a fresh named network namespace (herdtest-<random>) with lo
// up and deletes it at the end of the test. It returns the name.
func newNS(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "herdtest-" + hex.EncodeToString(b)
	run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(tb, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func nsPath(name string) string { return "/run/netns/" + name }

// inNS runs f on a thread switched into the named namespace.
func inNS(name string, f func() error) error { return acctest.InNetns(nsPath(name), f) }

// topo is a node namespace (holding the table) with routed pods on /32 veths
// and an "ext" namespace on the node's uplink (the node IP).
type topo struct {
	node, ext string
	pods      []string // namespace names
	podIPs    []string
}

const (
	nodeIP = "192.168.100.1"
	extIP  = "192.168.100.2"
	podGW  = "10.244.0.1"
)

func newTopo(tb testing.TB, npods int) *topo {
	tb.Helper()
	t := &topo{node: newNS(tb), ext: newNS(tb)}
	run(tb, "ip", "netns", "exec", t.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Hairpinned packets leave by the interface they came in on; the ICMP
	// redirects that would trigger share the per-peer ICMP rate limit with
	// the port-unreachable answers of UDP rejects.
	run(tb, "ip", "netns", "exec", t.node, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0")
	run(tb, "ip", "link", "add", "up0", "netns", t.node, "type", "veth", "peer", "name", "eth0", "netns", t.ext)
	run(tb, "ip", "-n", t.node, "addr", "add", nodeIP+"/24", "dev", "up0")
	run(tb, "ip", "-n", t.node, "link", "set", "up0", "up")
	run(tb, "ip", "-n", t.ext, "addr", "add", extIP+"/24", "dev", "eth0")
	run(tb, "ip", "-n", t.ext, "link", "set", "eth0", "up")
	// the node's default route covers the service range
	run(tb, "ip", "-n", t.node, "route", "add", "default", "via", extIP)
	for i := 0; i < npods; i++ {
		p := newNS(tb)
		ip := fmt.Sprintf("10.244.0.%d", 10+i)
		dev := fmt.Sprintf("vp%d", i)
		run(tb, "ip", "link", "add", dev, "netns", t.node, "type", "veth", "peer", "name", "eth0", "netns", p)
		run(tb, "ip", "-n", t.node, "addr", "add", podGW+"/32", "dev", dev)
		run(tb, "ip", "-n", t.node, "link", "set", dev, "up")
		run(tb, "ip", "-n", t.node, "route", "add", ip+"/32", "dev", dev)
		run(tb, "ip", "-n", p, "addr", "add", ip+"/32", "dev", "eth0")
		run(tb, "ip", "-n", p, "link", "set", "eth0", "up")
		run(tb, "ip", "-n", p, "route", "add", podGW, "dev", "eth0")
		run(tb, "ip", "-n", p, "route", "add", "default", "via", podGW)
		t.pods = append(t.pods, p)
		t.podIPs = append(t.podIPs, ip)
		serve(tb, p, fmt.Sprintf("pod%d", i))
	}
	return t
}

// serve answers its name on TCP 8080 and 8081 and UDP 5353 inside ns.
func serve(tb testing.TB, ns, name string) {
	tb.Helper()
	var lns []net.Listener
	var pc net.PacketConn
	err := inNS(ns, func() error {
		for _, port := range []string{":8080", ":8081"} {
			ln, err := net.Listen("tcp4", port)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		var err error
		pc, err = net.ListenPacket("udp4", ":5353")
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, ln := range lns {
		tb.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(name + "\n"))
				c.Close()
			}
		}()
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), addr)
		}
	}()
}

// askTCP connects from ns to addr and returns the answer.
func askTCP(ns, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// askUDP sends one datagram from ns to addr and returns the answer.
func askUDP(ns, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		var err error
		c, err = net.Dial("udp4", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}
