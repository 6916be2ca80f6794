package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// An admin client over mTLS sees the node as it is.
func TestMTLSAdminClientGetsNode(t *testing.T) {
	t.Parallel()
	n := startNode(t, "mtls-ok")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatalf("GetNode over mTLS: %v", err)
	}
	if got.GetName() != "mtls-ok" {
		t.Errorf("name = %q, want mtls-ok", got.GetName())
	}
	if got.GetOs() != runtime.GOOS || got.GetArch() != runtime.GOARCH {
		t.Errorf("os/arch = %s/%s, want %s/%s", got.GetOs(), got.GetArch(), runtime.GOOS, runtime.GOARCH)
	}
	if got.GetCapacity().GetCpuMillis() <= 0 || got.GetCapacity().GetMemoryBytes() <= 0 {
		t.Errorf("capacity = %v, want cpu and memory > 0", got.GetCapacity())
	}
	if want := int64(runtime.NumCPU()) * 1000; got.GetCapacity().GetCpuMillis() != want {
		t.Errorf("capacity cpu = %dm, want %dm (NumCPU)", got.GetCapacity().GetCpuMillis(), want)
	}
	if got.GetAllocatable().GetCpuMillis() <= 0 || got.GetAllocatable().GetCpuMillis() > got.GetCapacity().GetCpuMillis() {
		t.Errorf("allocatable = %v, capacity %v", got.GetAllocatable(), got.GetCapacity())
	}
	if !got.GetReady() || got.GetNotReadyReason() != "" {
		t.Errorf("ready = %v (%q), want ready", got.GetReady(), got.GetNotReadyReason())
	}
	if got.GetContainerdNamespace() != n.agent.Opts.Namespace {
		t.Errorf("containerd_namespace = %q, want %q", got.GetContainerdNamespace(), n.agent.Opts.Namespace)
	}
	if got.GetContainerdVersion() == "" || got.GetKernelVersion() == "" {
		t.Errorf("containerd_version %q, kernel_version %q: want both set", got.GetContainerdVersion(), got.GetKernelVersion())
	}
	if !containsString(got.GetAddresses(), n.agent.Addr) {
		t.Errorf("addresses %v do not include the mTLS address %s", got.GetAddresses(), n.agent.Addr)
	}
	if got.GetStartedAt() == nil || time.Since(got.GetStartedAt().AsTime()) > 5*time.Minute {
		t.Errorf("started_at = %v", got.GetStartedAt())
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Clients without a valid client certificate, or that cannot speak TLS
// 1.3, or that expect another node, get nowhere: the RPC fails with
// Unavailable and nothing is created.
func TestMTLSRefusesBadClients(t *testing.T) {
	t.Parallel()
	n := startNode(t, "mtls-refuse")
	a := n.agent
	ca := a.Opts.Certs.CA

	admin := func() tls.Certificate {
		c, err := tls.X509KeyPair(a.Opts.Certs.ClientCertPEM, a.Opts.Certs.ClientKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}()
	base := func() *tls.Config {
		cfg, err := a.ClientTLS(a.Opts.Certs.ClientCertPEM, a.Opts.Certs.ClientKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	otherCA, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, foreignKey, err := otherCA.IssueClient("intruder", true)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expiredCert, expiredKey, err := ca.IssueClient("expired", true,
		pki.WithNotBefore(now.Add(-48*time.Hour)), pki.WithNotAfter(now.Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		cfg  func() *tls.Config
		// wantRaw is part of the error a raw TLS client sees: the
		// server's alert, or the client's own verification error.
		wantRaw string
	}{
		{"no client certificate", func() *tls.Config {
			c := base()
			c.Certificates = nil
			return c
		}, "remote error: tls: certificate required"},
		{"certificate from another CA", func() *tls.Config {
			c, err := pki.ClientTLSConfig(a.Opts.Certs.CA.CertPEM, foreignCert, foreignKey, a.Name)
			if err != nil {
				t.Fatal(err)
			}
			// Go's client only offers a certificate of a CA the server
			// asks for; present this one regardless.
			foreign := c.Certificates[0]
			c.Certificates = nil
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
			return c
		}, "remote error: tls: unknown certificate authority"},
		{"expired client certificate", func() *tls.Config {
			c, err := a.ClientTLS(expiredCert, expiredKey)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, "remote error: tls: expired certificate"},
		{"TLS 1.2 only client", func() *tls.Config {
			c := base()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}, "remote error: tls: protocol version not supported"},
		{"client expects another node", func() *tls.Config {
			c, err := pki.ClientTLSConfig(a.Opts.Certs.CA.CertPEM, a.Opts.Certs.ClientCertPEM, a.Opts.Certs.ClientKeyPEM, "some-other-node")
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, "x509: certificate is valid for mtls-refuse, not some-other-node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Raw TLS: the handshake, or the first read after it, fails
			// with a TLS alert (in TLS 1.3 the server checks the client's
			// certificate after the client considers the handshake done).
			err := rawTLS(a.Addr, tc.cfg())
			if err == nil {
				t.Fatal("raw TLS connection was accepted")
			}
			t.Logf("raw TLS: %v", err)
			if !strings.Contains(err.Error(), tc.wantRaw) {
				t.Errorf("raw TLS error %q does not contain %q", err, tc.wantRaw)
			}

			// gRPC: the first RPC fails with Unavailable.
			conn := dial(t, a.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc.cfg())))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = herdv1.NewPodServiceClient(conn).ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: n.pod("intruder", "sleep 3600")})
			wantCode(t, err, codes.Unavailable)
			_, err = herdv1.NewNodeServiceClient(conn).SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"owned": "yes"}})
			wantCode(t, err, codes.Unavailable)
		})
	}

	t.Run("plaintext gRPC on the TCP port", func(t *testing.T) {
		conn := dial(t, a.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := herdv1.NewPodServiceClient(conn).ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: n.pod("intruder", "sleep 3600")})
		wantCode(t, err, codes.Unavailable)
	})

	// The admin certificate still works on a raw connection: the
	// rejections above are about the client, not the server.
	if err := rawTLS(a.Addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{admin},
		RootCAs: base().RootCAs, ServerName: a.Name,
	}); err != nil {
		t.Errorf("raw TLS with the admin certificate: %v", err)
	}

	// Nothing was created, and the node labels were not set.
	n.mustEmpty(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetLabels()) != 0 {
		t.Errorf("node labels = %v, want none", got.GetLabels())
	}
}

// rawTLS connects to addr, completes the handshake and reads once: a
// rejected client sees the server's alert there. An accepted one reads
// the server's first HTTP/2 frame (SETTINGS): nil.
func rawTLS(addr string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"} // gRPC servers insist on ALPN h2
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The client's HTTP/2 preface and an empty SETTINGS frame make the
	// server read, and so finish the handshake on its side.
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	if _, err := conn.Write([]byte(preface)); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 9)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if buf[3] != 0x4 {
		return fmt.Errorf("first frame from the server has type %d, want SETTINGS", buf[3])
	}
	return nil
}

// The local socket is 0600 and speaks plaintext gRPC.
func TestLocalSocket(t *testing.T) {
	t.Parallel()
	n := startNode(t, "sock")
	fi, err := os.Stat(n.agent.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is not a socket: %v", n.agent.Socket, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %#o, want 0600", perm)
	}
	conn := dial(t, "unix://"+n.agent.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := herdv1.NewNodeServiceClient(conn).GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatalf("GetNode over the socket: %v", err)
	}
	if got.GetName() != "sock" {
		t.Errorf("name = %q", got.GetName())
	}
	if !containsString(got.GetAddresses(), "unix://"+n.agent.Socket) {
		t.Errorf("addresses %v do not include the socket", got.GetAddresses())
	}
	// Labels set locally are what mTLS clients see.
	if _, err := herdv1.NewNodeServiceClient(conn).SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"zone": "a"}}); err != nil {
		t.Fatalf("SetNodeLabels over the socket: %v", err)
	}
	got, err = n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetLabels()["zone"] != "a" {
		t.Errorf("labels over mTLS = %v, want zone=a", got.GetLabels())
	}

	// Graceful stop removes the socket; a restart recreates it 0600, and
	// the labels, kept in the store, survive.
	n.agent.Stop()
	if _, err := os.Stat(n.agent.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after SIGTERM: %v, want it removed", err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if err := n.agent.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(n.agent.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket after restart: %v %v, want mode 0600", fi, err)
	}
	got, err = herdv1.NewNodeServiceClient(conn).GetNode(rctx, &herdv1.GetNodeRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("GetNode over the socket after restart: %v", err)
	}
	if got.GetLabels()["zone"] != "a" {
		t.Errorf("labels after restart = %v, want zone=a", got.GetLabels())
	}
}
