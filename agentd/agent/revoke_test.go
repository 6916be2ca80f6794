package agent_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// On a node without a cluster the deny list is the node's own, and it
// outlives a restart: a revoked certificate is refused before and after;
// bad serials are refused and change nothing.
func TestRevocationOnNodeOfItsOwn(t *testing.T) {
	t.Parallel()
	n := startNode(t, "revoke1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cert, key, err := n.env.Certs.CA.IssueClientAccess("mallory", pki.Access{Role: pki.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseCertificatePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := n.agent.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	cs := herdv1.NewClusterServiceClient(admin)
	for _, bad := range []string{"", "xyz", "0", strings.Repeat("f", 41)} {
		_, err := cs.RevokeCertificate(ctx, &herdv1.RevokeCertificateRequest{Serial: bad})
		wantCode(t, err, codes.InvalidArgument, "serial")
	}
	if l, err := cs.ListRevokedCertificates(ctx, &herdv1.ListRevokedCertificatesRequest{}); err != nil || len(l.GetRevoked()) != 0 {
		t.Fatalf("deny list after refused requests = %v, %v", l.GetRevoked(), err)
	}
	// Another certificate of the same name is not revoked with it.
	mallory := herdv1.NewNodeServiceClient(accessConn(t, n, "mallory", pki.Access{Role: pki.RoleViewer}))
	tc, err := n.agent.ClientTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	revoked := func() error {
		conn := dial(t, n.agent.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		defer conn.Close()
		_, err := herdv1.NewNodeServiceClient(conn).GetNode(ctx, &herdv1.GetNodeRequest{})
		return err
	}
	if err := revoked(); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	resp, err := cs.RevokeCertificate(ctx, &herdv1.RevokeCertificateRequest{Serial: "00" + leaf.SerialNumber.Text(16), Name: "mallory"})
	if err != nil || !resp.GetCreated() || resp.GetRevoked().GetSerial() != leaf.SerialNumber.Text(16) {
		t.Fatalf("RevokeCertificate = %v, %v", resp, err)
	}
	if err := n.agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := cs.ListRevokedCertificates(ctx, &herdv1.ListRevokedCertificatesRequest{})
	if err != nil || len(l.GetRevoked()) != 1 || l.GetRevoked()[0].GetSerial() != leaf.SerialNumber.Text(16) {
		t.Fatalf("deny list after a restart = %v, %v", l.GetRevoked(), err)
	}
	if err := revoked(); err == nil {
		t.Errorf("the revoked certificate after a restart was let through")
	}
	if err := handshakeRefusal(n.agent.Addr, tc); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("the revoked certificate after a restart: %v, want refused at the handshake", err)
	}
	if _, err := mallory.GetNode(ctx, &herdv1.GetNodeRequest{}); err != nil {
		t.Errorf("a certificate of the same name, not revoked: %v", err)
	}
}

// handshakeRefusal completes a TLS handshake with tc and reads. In TLS 1.3
// the client finishes its side before the server has checked the client
// certificate, so the server's refusal comes as an alert on the first read.
// A gRPC client has written its preface by then, and the server closing
// on unread bytes may reach it as a reset instead of the alert.
func handshakeRefusal(addr string, tc *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, tc)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}
