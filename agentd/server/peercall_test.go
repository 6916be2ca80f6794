package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// peerMembers is the membership a peers.Caller and Pool read: this node's
// name and the published API addresses.
type peerMembers struct {
	name  string
	addrs map[string]string
}

func (m peerMembers) Name() string                     { return m.name }
func (m peerMembers) Members() []cluster.Member        { return nil }
func (m peerMembers) Subscribe() <-chan cluster.Event  { return nil }
func (m peerMembers) Unsubscribe(<-chan cluster.Event) {}
func (m peerMembers) Entries(kind string) []cluster.Entry {
	var out []cluster.Entry
	for n, a := range m.addrs {
		out = append(out, cluster.Entry{Owner: n, Kind: kind, Key: peers.KeyAPI, Value: []byte(a)})
	}
	return out
}

// TestPeerCall: PeerService.Call behind the authorization interceptor
// over mTLS: the handler's from is the caller's node certificate name
// whatever the payload claims; client certificates (admin too) and the
// local socket are refused; an unknown method is Unimplemented; a
// handler's error text and a large answer arrive.
func TestPeerCall(t *testing.T) {
	ca, err := pki.NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca.IssueNode("node-a", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ServerTLSConfig(ca.CertPEM, srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		froms []string
	)
	big := bytes.Repeat([]byte("x"), 5<<20) // over gRPC's default 4 MiB
	handlers := peers.NewHandlers()
	handlers.Handle("echo", func(_ context.Context, from string, req []byte) ([]byte, error) {
		mu.Lock()
		froms = append(froms, from)
		mu.Unlock()
		return append([]byte("from "+from+": "), req...), nil
	})
	handlers.Handle("fail", func(context.Context, string, []byte) ([]byte, error) {
		return nil, errors.New("the vault is sealed")
	})
	handlers.Handle("big", func(context.Context, string, []byte) ([]byte, error) { return big, nil })

	s := &Server{}
	s.SetPeerCalls(handlers)
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(UnaryAuthz())}
	g := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(tc)))...)
	s.registerPeer(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	u := grpc.NewServer(opts...)
	s.registerPeer(u)
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	ulis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = u.Serve(ulis) }()
	defer u.Stop()

	raw := func(cert, key []byte) herdv1.PeerServiceClient {
		t.Helper()
		return peerClient(t, ca.CertPEM, lis.Addr().String(), cert, key)
	}
	issue := func(f func() ([]byte, []byte, error)) ([]byte, []byte) {
		t.Helper()
		c, k, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	nodeCert, nodeKey := issue(func() ([]byte, []byte, error) { return ca.IssueNode("node-b", nil, nil) })
	ms := peerMembers{name: "node-b", addrs: map[string]string{"node-a": lis.Addr().String()}}
	pool, err := peers.NewPool(ms, peers.TLS{CA: ca.CertPEM, Cert: nodeCert, Key: nodeKey})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	caller := peers.NewCaller(ms, peers.NewHandlers(), pool)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("from is the certificate's name", func(t *testing.T) {
		out, err := caller.Call(ctx, "node-a", "echo", []byte(`{"from":"node-c"}`))
		if err != nil {
			t.Fatal(err)
		}
		if want := `from node-b: {"from":"node-c"}`; string(out) != want {
			t.Errorf("answer %q, want %q", out, want)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(froms) != 1 || froms[0] != "node-b" {
			t.Errorf("handler saw callers %q, want [node-b]", froms)
		}
	})
	t.Run("handler error text arrives", func(t *testing.T) {
		_, err := caller.Call(ctx, "node-a", "fail", []byte("s3cr3t"))
		if err == nil || !strings.Contains(err.Error(), "the vault is sealed") {
			t.Fatalf("error %v, want the handler's text", err)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error %q quotes the payload", err)
		}
	})
	t.Run("unknown method", func(t *testing.T) {
		if _, err := caller.Call(ctx, "node-a", "nope", nil); !errors.Is(err, peers.ErrNoHandler) {
			t.Errorf("caller: %v, want ErrNoHandler", err)
		}
		_, err := raw(nodeCert, nodeKey).Call(ctx, &herdv1.PeerCallRequest{Method: "nope"})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("raw: %v, want Unimplemented", err)
		}
	})
	t.Run("large answer", func(t *testing.T) {
		out, err := caller.Call(ctx, "node-a", "big", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, big) {
			t.Errorf("answer of %d bytes, want %d", len(out), len(big))
		}
	})
	t.Run("member without an address is unreachable", func(t *testing.T) {
		if _, err := caller.Call(ctx, "node-z", "echo", nil); !errors.Is(err, peers.ErrUnreachable) {
			t.Errorf("%v, want ErrUnreachable", err)
		}
	})
	for _, tc := range []struct {
		name string
		f    func() ([]byte, []byte, error)
	}{
		{"admin client certificate", func() ([]byte, []byte, error) { return ca.IssueClient("alice", true) }},
		{"operator client certificate", func() ([]byte, []byte, error) {
			return ca.IssueClientAccess("bob", pki.Access{Role: pki.RoleOperator})
		}},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			c, k := issue(tc.f)
			_, err := raw(c, k).Call(ctx, &herdv1.PeerCallRequest{Method: "echo", Payload: []byte("x")})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("%v, want PermissionDenied", err)
			}
		})
	}
	t.Run("local socket is refused", func(t *testing.T) {
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = herdv1.NewPeerServiceClient(conn).Call(ctx, &herdv1.PeerCallRequest{Method: "echo"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%v, want PermissionDenied", err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(froms) != 1 {
		t.Errorf("the echo handler ran for %q; only node-b's call should have reached it", froms)
	}
}

// TestPeerCallSelf: a call to this node's own name runs the local handler
// with this node as the caller, on a copy of the request.
func TestPeerCallSelf(t *testing.T) {
	handlers := peers.NewHandlers()
	handlers.Handle("echo", func(_ context.Context, from string, req []byte) ([]byte, error) {
		req[0] = 'X' // must not reach the caller's slice
		return []byte(from), nil
	})
	c := peers.NewCaller(peerMembers{name: "node-a"}, handlers, nil)
	req := []byte("abc")
	out, err := c.Call(context.Background(), "node-a", "echo", req)
	if err != nil || string(out) != "node-a" {
		t.Fatalf("Call = %q, %v; want node-a", out, err)
	}
	if string(req) != "abc" {
		t.Errorf("the handler changed the caller's request: %q", req)
	}
	if _, err := c.Call(context.Background(), "node-a", "nope", nil); !errors.Is(err, peers.ErrNoHandler) {
		t.Errorf("unknown method: %v, want ErrNoHandler", err)
	}
	if _, err := c.Call(context.Background(), "node-b", "echo", nil); !errors.Is(err, peers.ErrUnreachable) {
		t.Errorf("no pool: %v, want ErrUnreachable", err)
	}
}
