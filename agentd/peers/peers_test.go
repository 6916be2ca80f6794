package peers

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

func TestAPIAddr(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.5")
	for _, tt := range []struct {
		listen string
		nodeIP netip.Addr
		want   string
		err    bool
	}{
		{"0.0.0.0:7443", ip, "10.0.0.5:7443", false},
		{"[::]:7443", ip, "10.0.0.5:7443", false},
		{":7443", ip, "10.0.0.5:7443", false},
		{"10.0.0.9:7443", ip, "10.0.0.9:7443", false},
		{"[fd00::1]:7443", ip, "[fd00::1]:7443", false},
		{"0.0.0.0:7443", netip.Addr{}, "", true},
		{"7443", ip, "", true},
	} {
		got, err := APIAddr(tt.listen, tt.nodeIP)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("APIAddr(%q, %v) = %q, %v; want %q (error %v)", tt.listen, tt.nodeIP, got, err, tt.want, tt.err)
		}
	}
}

type fakeMembers struct {
	mu    sync.Mutex
	name  string
	addrs map[string]string
}

func (f *fakeMembers) Name() string { return f.name }
func (f *fakeMembers) Entries(kind string) []cluster.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Entry
	for n, a := range f.addrs {
		out = append(out, cluster.Entry{Owner: n, Kind: kind, Key: KeyAPI, Value: []byte(a)})
	}
	return out
}
func (f *fakeMembers) set(node, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr == "" {
		delete(f.addrs, node)
	} else {
		f.addrs[node] = addr
	}
}

// serveNode runs a gRPC server (health only) with name's node certificate.
func serveNode(t *testing.T, ca *pki.CA, name string) string {
	t.Helper()
	cert, key, err := ca.IssueNode(name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ServerTLSConfig(ca.CertPEM, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// TestPool: a member is dialed with this node's certificate and verified
// by its name; the connection is cached, redialed when the address
// changes, refused for a member without an address, closed by Close.
func TestPool(t *testing.T) {
	ca, err := pki.NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueNode("node-a", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b1, b2 := serveNode(t, ca, "node-b"), serveNode(t, ca, "node-b")
	c := serveNode(t, ca, "node-c")
	ms := &fakeMembers{name: "node-a", addrs: map[string]string{"node-b": b1, "node-c": c, "node-a": "127.0.0.1:1"}}
	p, err := NewPool(ms, TLS{CA: ca.CertPEM, Cert: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check := func(node string) error {
		conn, err := p.Conn(ctx, node)
		if err != nil {
			return err
		}
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if got := p.Nodes(); strings.Join(got, ",") != "node-a,node-b,node-c" {
		t.Errorf("Nodes = %v", got)
	}
	if a, ok := p.Addr("node-b"); !ok || a != b1 {
		t.Errorf("Addr(node-b) = %q, %v", a, ok)
	}
	if err := check("node-b"); err != nil {
		t.Fatalf("node-b: %v", err)
	}
	first, _ := p.Conn(ctx, "node-b")
	if again, _ := p.Conn(ctx, "node-b"); again != first {
		t.Error("a second Conn dialed again")
	}
	// node-b moves: a new connection to the new address.
	ms.set("node-b", b2)
	if err := check("node-b"); err != nil {
		t.Fatalf("node-b moved: %v", err)
	}
	if moved, _ := p.Conn(ctx, "node-b"); moved == first {
		t.Error("same connection after the address changed")
	}
	// An address published under another member's name: the certificate
	// there is node-c's, not node-d's.
	ms.set("node-d", c)
	if err := check("node-d"); err == nil {
		t.Fatal("node-d answered with node-c's certificate")
	}
	ms.set("node-d", "")
	if _, err := p.Conn(ctx, "node-d"); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Conn(node-d) without an address: %v, want ErrNoAddress", err)
	}
	p.Close()
	if _, err := p.Conn(ctx, "node-c"); err == nil {
		t.Fatal("Conn after Close succeeded")
	}
}
