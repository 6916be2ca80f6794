package agent_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// A real agentd serves a renewed node certificate without a restart, and
// keeps serving the one it has when the files are replaced by something it
// cannot use.
func TestNodeCertificateReload(t *testing.T) {
	t.Parallel()
	n := startNode(t, "certreload")
	caPEM, err := os.ReadFile(n.env.Certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client, err := tls.LoadX509KeyPair(n.env.Certs.ClientCertFile, n.env.Certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// served is the serial of the certificate a new connection sees.
	served := func(t *testing.T) string {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.agent.Addr, &tls.Config{
			MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "certreload", Certificates: []tls.Certificate{client},
		})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	}
	waitServed := func(t *testing.T, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := served(t); got != want; got = served(t) {
			if time.Now().After(deadline) {
				t.Fatalf("agentd serves certificate %s, want %s", got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	certFile := filepath.Join(n.env.Certs.Dir, "certreload.pem")
	keyFile := filepath.Join(n.env.Certs.Dir, "certreload-key.pem")
	first := served(t)

	// Renewed: a new key and certificate, written as herdctl does (the
	// key first, each file replaced whole).
	certPEM, keyPEM, err := n.env.Certs.CA.IssueNode("certreload", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, keyFile, keyPEM)
	replace(t, certFile, certPEM)
	renewed, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	want := renewed.SerialNumber.Text(16)
	if want == first {
		t.Fatal("the renewed certificate has the old serial")
	}
	waitServed(t, want)

	// A certificate of another node name is refused; the renewed one stays.
	otherPEM, otherKey, err := n.env.Certs.CA.IssueNode("someone-else", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, keyFile, otherKey)
	replace(t, certFile, otherPEM)
	deadline := time.Now().Add(30 * time.Second)
	for !containsLog(n, "cannot be used; keeping the one in use") {
		if time.Now().After(deadline) {
			t.Fatalf("agentd never reported the unusable certificate:\n%s", n.agent.LogTail(30))
		}
		_ = served(t) // handshakes make agentd look at the files
		time.Sleep(200 * time.Millisecond)
	}
	if got := served(t); got != want {
		t.Errorf("after an unusable certificate agentd serves %s, want %s (the renewed one)", got, want)
	}
	// Put the renewed pair back so the agent's cleanup can connect.
	replace(t, keyFile, keyPEM)
	replace(t, certFile, certPEM)
}

func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func containsLog(n *node, s string) bool {
	return strings.Contains(n.agent.LogTail(200), s)
}
