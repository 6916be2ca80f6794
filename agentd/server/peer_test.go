package server

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

type fakeWaiter struct {
	got   chan string
	until time.Duration // how long the wait could last
}

func (f *fakeWaiter) WaitApplied(ctx context.Context, owner, pod string, seq uint64) bool {
	if dl, ok := ctx.Deadline(); ok {
		f.until = time.Until(dl)
	}
	f.got <- owner + "/" + pod
	return seq == 42
}

// TestPeerServiceNodeCertificatesOnly: WaitEndpointsApplied answers node
// certificates only (admin and other client certificates are refused),
// validates its request and bounds the wait.
func TestPeerServiceNodeCertificatesOnly(t *testing.T) {
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
	w := &fakeWaiter{got: make(chan string, 10)}
	s := &Server{}
	s.SetPeer(w)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	s.registerPeer(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	client := func(cert, key []byte) herdv1.PeerServiceClient {
		t.Helper()
		return peerClient(t, ca.CertPEM, lis.Addr().String(), cert, key)
	}
	issue := func(f func() ([]byte, []byte, error)) herdv1.PeerServiceClient {
		t.Helper()
		c, k, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return client(c, k)
	}
	admin := issue(func() ([]byte, []byte, error) { return ca.IssueClient("alice", true) })
	plain := issue(func() ([]byte, []byte, error) { return ca.IssueClient("terraform", false) })
	node := issue(func() ([]byte, []byte, error) { return ca.IssueNode("node-b", nil, nil) })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := &herdv1.WaitEndpointsAppliedRequest{Owner: "node-b", Pod: "web", Seq: 42, TimeoutMs: 500}
	for name, c := range map[string]herdv1.PeerServiceClient{"admin": admin, "client": plain} {
		if _, err := c.WaitEndpointsApplied(ctx, good); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s certificate: %v, want PermissionDenied", name, err)
		}
	}
	select {
	case got := <-w.got:
		t.Fatalf("a refused caller reached the controller (%s)", got)
	default:
	}

	resp, err := node.WaitEndpointsApplied(ctx, good)
	if err != nil || !resp.GetApplied() {
		t.Fatalf("node certificate: %v, %v; want applied", resp, err)
	}
	if got := <-w.got; got != "node-b/web" {
		t.Errorf("controller asked about %s", got)
	}
	if w.until > 500*time.Millisecond {
		t.Errorf("wait bounded by %v, want at most the request's 500ms", w.until)
	}
	resp, err = node.WaitEndpointsApplied(ctx, &herdv1.WaitEndpointsAppliedRequest{Owner: "node-b", Pod: "web", Seq: 7, TimeoutMs: 3_600_000})
	if err != nil || resp.GetApplied() {
		t.Fatalf("not applied: %v, %v", resp, err)
	}
	<-w.got
	if w.until > MaxWaitEndpoints {
		t.Errorf("an hour's timeout waits %v, want at most %v", w.until, MaxWaitEndpoints)
	}

	for _, tt := range []struct {
		name string
		req  *herdv1.WaitEndpointsAppliedRequest
	}{
		{"no owner", &herdv1.WaitEndpointsAppliedRequest{Pod: "web", Seq: 1}},
		{"bad owner", &herdv1.WaitEndpointsAppliedRequest{Owner: "Node_B", Pod: "web", Seq: 1}},
		{"bad pod", &herdv1.WaitEndpointsAppliedRequest{Owner: "node-b", Pod: "../x", Seq: 1}},
		{"no seq", &herdv1.WaitEndpointsAppliedRequest{Owner: "node-b", Pod: "web"}},
		{"negative timeout", &herdv1.WaitEndpointsAppliedRequest{Owner: "node-b", Pod: "web", Seq: 1, TimeoutMs: -1}},
	} {
		if _, err := node.WaitEndpointsApplied(ctx, tt.req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tt.name, err)
		}
	}
}

// peerClient dials a PeerService at addr with a client certificate,
// verifying the server as node-a.
func peerClient(t *testing.T, caPEM []byte, addr string, cert, key []byte) herdv1.PeerServiceClient {
	t.Helper()
	ctc, err := pki.ClientTLSConfig(caPEM, cert, key, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(ctc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return herdv1.NewPeerServiceClient(conn)
}
