package provider

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestPoolCachesConnectionsPerNameAndAddress(t *testing.T) {
	p := NewPool(PoolConfig{})
	t.Cleanup(func() { _ = p.Close() })
	a1, err := p.Conn("node-a@unix:///run/herd/agentd.sock")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := p.Conn("node-a@unix:///run/herd/agentd.sock")
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 {
		t.Error("same node id: want the cached connection")
	}
	b, err := p.Conn("node-b@unix:///run/herd/agentd.sock")
	if err != nil {
		t.Fatal(err)
	}
	if b == a1 {
		t.Error("another node name at the same address: want another connection")
	}
	if p.DialTimeout() != DefaultDialTimeout {
		t.Errorf("DialTimeout = %s, want %s", p.DialTimeout(), DefaultDialTimeout)
	}
}

func TestPoolRefusesTCPWithoutTLS(t *testing.T) {
	p := NewPool(PoolConfig{TLS: TLSFiles{CACert: []byte("x")}})
	_, err := p.NodeClient("node-a@10.0.0.5:7443")
	if err == nil {
		t.Fatal("want an error without client_cert and client_key")
	}
	for _, want := range []string{`node "node-a" at 10.0.0.5:7443`, "mutual TLS", "client_cert (HERD_CLIENT_CERT)", "client_key (HERD_CLIENT_KEY)", "unix:///"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "ca_cert") {
		t.Errorf("error %q names ca_cert, which is set", err)
	}
}

func TestPoolRefusesBadNodeID(t *testing.T) {
	p := NewPool(PoolConfig{})
	if _, err := p.PodClient("node-a"); err == nil || !strings.Contains(err.Error(), "NAME@ADDRESS") {
		t.Fatalf("err = %v", err)
	}
}

func TestNodeIDHelpers(t *testing.T) {
	name, addr, err := ParseNodeID(FormatNodeID("node-a", "unix:///run/a.sock"))
	if err != nil || name != "node-a" || addr != "unix:///run/a.sock" {
		t.Fatalf("got %q %q %v", name, addr, err)
	}
	node, pod, err := ParsePodID(FormatPodID("node-a@unix:///run/a.sock", "web"))
	if err != nil || node != "node-a@unix:///run/a.sock" || pod != "web" {
		t.Fatalf("got %q %q %v", node, pod, err)
	}
}

// Every typed client shares the pool's connection and makes no network
// call: the socket below does not exist.
func TestPoolTypedClients(t *testing.T) {
	p := NewPool(PoolConfig{})
	t.Cleanup(func() { _ = p.Close() })
	const id = "node-a@unix:///nonexistent/agentd.sock"
	clients := []struct {
		name string
		get  func(string) (any, error)
	}{
		{"node", func(id string) (any, error) { return p.NodeClient(id) }},
		{"pod", func(id string) (any, error) { return p.PodClient(id) }},
		{"service", func(id string) (any, error) { return p.ServiceClient(id) }},
		{"cluster", func(id string) (any, error) { return p.ClusterClient(id) }},
		{"volume", func(id string) (any, error) { return p.VolumeClient(id) }},
		{"health", func(id string) (any, error) { return p.HealthClient(id) }},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if cl, err := c.get(id); err != nil || cl == nil {
				t.Fatalf("got %v, %v", cl, err)
			}
			if _, err := c.get("node-a"); err == nil || !strings.Contains(err.Error(), "NAME@ADDRESS") {
				t.Fatalf("bad id: err = %v", err)
			}
		})
	}
	if len(p.conns) != 1 {
		t.Fatalf("pool holds %d connections, want 1", len(p.conns))
	}
}

// The pool's health client speaks the standard grpc.health.v1 protocol
// agentd serves: per-service statuses, NotFound for an unknown service.
func TestPoolHealthClientSpeaksStandardHealth(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("containerd", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	p := NewPool(PoolConfig{})
	t.Cleanup(func() { _ = p.Close() })
	hc, err := p.HealthClient("node-a@unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
	}{
		{"", healthpb.HealthCheckResponse_SERVING},
		{"containerd", healthpb.HealthCheckResponse_NOT_SERVING},
	} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: tc.service})
		if err != nil || resp.GetStatus() != tc.want {
			t.Errorf("Check(%q) = %v, %v; want %s", tc.service, resp.GetStatus(), err, tc.want)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nonesuch"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(nonesuch) error = %v, want NotFound", err)
	}
}
