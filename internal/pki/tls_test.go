package pki

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

const ioTimeout = 5 * time.Second

// serverResult is what the test server observed on its single connection.
type serverResult struct {
	err   error
	state tls.ConnectionState
}

// startEchoServer listens on 127.0.0.1 with cfg, accepts exactly one
// connection, completes the handshake and echoes everything it reads.
func startEchoServer(t *testing.T, cfg *tls.Config) (addr string, result <-chan serverResult) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan serverResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- serverResult{err: err}
			return
		}
		defer c.Close()
		conn := c.(*tls.Conn)
		_ = conn.SetDeadline(time.Now().Add(ioTimeout))
		if err := conn.Handshake(); err != nil {
			ch <- serverResult{err: err}
			return
		}
		_, err = io.Copy(conn, conn)
		ch <- serverResult{err: err, state: conn.ConnectionState()}
	}()
	return ln.Addr().String(), ch
}

// dialAndEcho connects with cfg, sends a line and expects it echoed back.
// With TLS 1.3 a client certificate rejected by the server only surfaces
// on the client's first Read, hence the round trip.
func dialAndEcho(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	msg := fmt.Sprintf("ping %d\n", time.Now().UnixNano())
	if _, err := io.WriteString(conn, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if got != msg {
		return fmt.Errorf("echo mismatch: got %q, want %q", got, msg)
	}
	_ = conn.CloseWrite()
	return nil
}

// issueRaw signs an arbitrary leaf template with ca, for certificates that
// the public API deliberately cannot produce (server-only, no EKU).
func issueRaw(t *testing.T, ca *CA, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = EncodePrivateKeyPEM(key, PKCS8)
	if err != nil {
		t.Fatal(err)
	}
	return encodeCertPEM(der), keyPEM
}

type pemPair struct{ cert, key []byte }

func mustPair(t *testing.T) func(c, k []byte, err error) pemPair {
	return func(c, k []byte, err error) pemPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return pemPair{c, k}
	}
}

func TestMutualTLSHandshake(t *testing.T) {
	must := mustPair(t)
	ca, err := NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}

	node := must(ca.IssueNode("node-1", loopback, []string{"node-1.herd.internal"}))
	node2 := must(ca.IssueNode("node-2", loopback, nil))
	adminClient := must(ca.IssueClient("alice", true))
	plainClient := must(ca.IssueClient("bob", false))
	foreignClient := must(otherCA.IssueClient("mallory", true))
	foreignNode := must(otherCA.IssueNode("node-1", loopback, nil))
	expiredClient := must(ca.IssueClient("old", true,
		WithNotBefore(time.Now().Add(-48*time.Hour)), WithNotAfter(time.Now().Add(-24*time.Hour))))
	futureClient := must(ca.IssueClient("future", true,
		WithNotBefore(time.Now().Add(24*time.Hour)), WithValidity(24*time.Hour)))
	sc, sk := issueRaw(t, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "server-only"},
		DNSNames:    []string{"server-only"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	serverOnly := pemPair{sc, sk}
	nc, nk := issueRaw(t, ca, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "no-eku"},
		DNSNames: []string{"node-1"},
	})
	noEKU := pemPair{nc, nk}
	cc, ck := issueRaw(t, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "client-only"},
		DNSNames:    []string{"node-1"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	clientOnly := pemPair{cc, ck}

	client := func(p pemPair, serverName string) func(t *testing.T) *tls.Config {
		return func(t *testing.T) *tls.Config {
			cfg, err := ClientTLSConfig(ca.CertPEM, p.cert, p.key, serverName)
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}
	}
	server := func(p pemPair) func(t *testing.T) *tls.Config {
		return func(t *testing.T) *tls.Config {
			cfg, err := ServerTLSConfig(ca.CertPEM, p.cert, p.key)
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}
	}

	tests := []struct {
		name      string
		server    func(t *testing.T) *tls.Config
		client    func(t *testing.T) *tls.Config
		wantOK    bool
		wantAdmin bool   // checked on the server side when wantOK
		clientErr string // substring of the client-side error when !wantOK
		serverErr string // substring of the server-side error when !wantOK
	}{
		{
			name: "admin client accepted", server: server(node), client: client(adminClient, "node-1"),
			wantOK: true, wantAdmin: true,
		},
		{
			name: "non-admin client accepted", server: server(node), client: client(plainClient, "node-1"),
			wantOK: true, wantAdmin: false,
		},
		{
			name: "node certificate accepted as client", server: server(node), client: client(node2, "node-1"),
			wantOK: true,
		},
		{
			name: "server name may be an extra DNS SAN", server: server(node), client: client(plainClient, "node-1.herd.internal"),
			wantOK: true,
		},
		{
			name: "server name may be the node IP", server: server(node), client: client(plainClient, "127.0.0.1"),
			wantOK: true,
		},
		{
			name: "client without certificate refused", server: server(node),
			client: func(t *testing.T) *tls.Config {
				cfg := client(plainClient, "node-1")(t)
				cfg.Certificates = nil
				return cfg
			},
			clientErr: "certificate required", serverErr: "didn't provide a certificate",
		},
		{
			// The Go client only sends a certificate matching the CAs the
			// server asks for, so the foreign certificate is not even sent.
			name: "client with certificate from another CA refused", server: server(node), client: client(foreignClient, "node-1"),
			clientErr: "certificate required", serverErr: "didn't provide a certificate",
		},
		{
			name: "certificate from another CA sent anyway refused", server: server(node),
			client: func(t *testing.T) *tls.Config {
				cfg := client(foreignClient, "node-1")(t)
				cert := cfg.Certificates[0]
				cfg.Certificates = nil
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
				return cfg
			},
			clientErr: "unknown certificate authority", serverErr: "certificate signed by unknown authority",
		},
		{
			name: "expired client certificate refused", server: server(node), client: client(expiredClient, "node-1"),
			clientErr: "expired certificate", serverErr: "expired",
		},
		{
			name: "not yet valid client certificate refused", server: server(node), client: client(futureClient, "node-1"),
			clientErr: "expired certificate", serverErr: "not yet valid",
		},
		{
			name: "server-only certificate refused as client (Go EKU check)", server: server(node), client: client(serverOnly, "node-1"),
			clientErr: "bad certificate", serverErr: "incompatible key usage",
		},
		{
			name: "certificate without EKU refused as client (our VerifyConnection)", server: server(node), client: client(noEKU, "node-1"),
			clientErr: "bad certificate", serverErr: "not valid for client authentication",
		},
		{
			name: "TLS 1.2-only client refused", server: server(node),
			client: func(t *testing.T) *tls.Config {
				cfg := client(plainClient, "node-1")(t)
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return cfg
			},
			clientErr: "protocol version", serverErr: "unsupported versions",
		},
		{
			name: "client expecting another node refused", server: server(node), client: client(plainClient, "node-2"),
			clientErr: "not node-2", serverErr: "bad certificate",
		},
		{
			name: "client expecting another IP refused", server: server(node), client: client(plainClient, "127.0.0.2"),
			clientErr: "not 127.0.0.2", serverErr: "bad certificate",
		},
		{
			name: "server certificate from another CA refused", server: server(foreignNode), client: client(plainClient, "node-1"),
			clientErr: "unknown authority", serverErr: "bad certificate",
		},
		{
			name: "client-only certificate refused as server", server: server(clientOnly), client: client(plainClient, "node-1"),
			clientErr: "incompatible key usage", serverErr: "bad certificate",
		},
		{
			name: "server certificate without EKU refused by client", server: server(noEKU), client: client(plainClient, "node-1"),
			clientErr: "not valid for server authentication", serverErr: "bad certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, results := startEchoServer(t, tt.server(t))
			clientErr := dialAndEcho(addr, tt.client(t))
			var res serverResult
			select {
			case res = <-results:
			case <-time.After(2 * ioTimeout):
				t.Fatal("server did not finish")
			}
			if tt.wantOK {
				if clientErr != nil {
					t.Fatalf("client: unexpected error: %v", clientErr)
				}
				if res.err != nil {
					t.Fatalf("server: unexpected error: %v", res.err)
				}
				st := res.state
				if st.Version != tls.VersionTLS13 {
					t.Errorf("negotiated version %x, want TLS 1.3", st.Version)
				}
				if len(st.VerifiedChains) == 0 {
					t.Fatal("server has no verified client chain")
				}
				leaf := st.VerifiedChains[0][0]
				if got := IsAdmin(leaf); got != tt.wantAdmin {
					t.Errorf("IsAdmin(client leaf %q) = %v, want %v", leaf.Subject.CommonName, got, tt.wantAdmin)
				}
				return
			}
			if clientErr == nil {
				t.Fatal("client: connection succeeded, want it refused")
			}
			if !strings.Contains(clientErr.Error(), tt.clientErr) {
				t.Errorf("client error %q does not contain %q", clientErr, tt.clientErr)
			}
			if res.err == nil {
				t.Fatal("server: connection succeeded, want it refused")
			}
			if !strings.Contains(res.err.Error(), tt.serverErr) {
				t.Errorf("server error %q does not contain %q", res.err, tt.serverErr)
			}
		})
	}
}

func TestTLSConfigs(t *testing.T) {
	ca, err := NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.IssueNode("node-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.IssueNode("node-2", nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	srv, err := ServerTLSConfig(ca.CertPEM, c, k)
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion != tls.VersionTLS13 || srv.ClientAuth != tls.RequireAndVerifyClientCert || srv.ClientCAs == nil || srv.VerifyConnection == nil {
		t.Errorf("unexpected server config: %+v", srv)
	}
	cli, err := ClientTLSConfig(ca.CertPEM, c, k, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if cli.MinVersion != tls.VersionTLS13 || cli.ServerName != "node-1" || cli.RootCAs == nil || cli.InsecureSkipVerify {
		t.Errorf("unexpected client config: %+v", cli)
	}

	errCases := []struct {
		name               string
		ca, cert, key      []byte
		serverName         string
		want               string
		mustNotContainData []byte
	}{
		{name: "no CA", ca: nil, cert: c, key: k, serverName: "node-1", want: "CA bundle"},
		{name: "leaf as CA", ca: c, cert: c, key: k, serverName: "node-1", want: "not a CA"},
		{name: "no cert", ca: ca.CertPEM, cert: k, key: k, serverName: "node-1", want: "no CERTIFICATE"},
		{name: "no key", ca: ca.CertPEM, cert: c, key: c, serverName: "node-1", want: "no PRIVATE KEY"},
		{name: "mismatched key", ca: ca.CertPEM, cert: c, key: otherKey, serverName: "node-1", want: "does not match", mustNotContainData: otherKey},
		{name: "corrupt key", ca: ca.CertPEM, cert: c, key: corruptKey(k), serverName: "node-1", want: "invalid private key", mustNotContainData: corruptKey(k)},
		{name: "empty server name", ca: ca.CertPEM, cert: c, key: k, serverName: "", want: "server name"},
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			_, errC := ClientTLSConfig(tt.ca, tt.cert, tt.key, tt.serverName)
			errs := []error{errC}
			if tt.serverName != "" {
				_, errS := ServerTLSConfig(tt.ca, tt.cert, tt.key)
				errs = append(errs, errS)
			}
			for _, err := range errs {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.want)
				}
				assertNoKeyMaterial(t, err, tt.mustNotContainData)
			}
		})
	}
}

// corruptKey returns a syntactically valid PEM block whose DER is damaged.
func corruptKey(keyPEM []byte) []byte {
	lines := strings.Split(string(keyPEM), "\n")
	// Flip every character of the first base64 line (the ASN.1 header).
	body := []byte(lines[1])
	for i := range body {
		if body[i] == 'A' {
			body[i] = 'B'
		} else {
			body[i] = 'A'
		}
	}
	lines[1] = string(body)
	return []byte(strings.Join(lines, "\n"))
}

// assertNoKeyMaterial checks that no base64 line of keyPEM (nor the PEM as
// a whole) appears in err.
func assertNoKeyMaterial(t *testing.T, err error, keyPEM []byte) {
	t.Helper()
	if err == nil || len(keyPEM) == 0 {
		return
	}
	msg := err.Error()
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line[:16]) {
			t.Fatalf("error leaks key material: %v", err)
		}
	}
	if strings.Contains(msg, "-----BEGIN") {
		t.Fatalf("error contains PEM data: %v", err)
	}
}
