package resources_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// clientFiles issues a client certificate from ca (with opts) and writes
// it and its key; it returns their paths.
func clientFiles(t *testing.T, ca *pki.CA, opts ...pki.Option) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueClient("terraform", true, opts...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Over TCP the provider speaks mTLS with the node's certificate checked
// for the node's name; over the node's unix socket it needs no TLS.
func TestAccNodeOverMutualTLSAndLocalSocket(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-tls-ok")
	c := n.env.Certs
	socket := "unix://" + n.agent.Socket
	// The client certificate inline, as PEM content.
	config := func(address, labels string) string {
		return fmt.Sprintf(`
provider "herd" {
  ca_cert     = %q
  client_cert = %q
  client_key  = %q
}

resource "herd_node" "n" {
  name    = %q
  address = %q
  labels  = { %s }
}

data "herd_node" "tcp" {
  id         = %q
  depends_on = [herd_node.n]
}

data "herd_node" "local" {
  id         = %q
  depends_on = [herd_node.n]
}
`, c.CAFile, string(c.ClientCertPEM), c.ClientKeyFile, n.agent.Name, address, labels, n.agent.ID(), n.agent.Name+"@"+socket)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{
				Config: config(n.agent.Addr, `via = "tcp"`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "id", n.agent.ID()),
					resource.TestCheckResourceAttr("herd_node.n", "ready", "true"),
					resource.TestCheckResourceAttr("data.herd_node.tcp", "labels.via", "tcp"),
					resource.TestCheckResourceAttr("data.herd_node.local", "name", n.agent.Name),
					resource.TestCheckResourceAttr("data.herd_node.local", "address", socket),
					resource.TestCheckResourceAttr("data.herd_node.local", "labels.via", "tcp"),
				),
			},
			// Another address is another herd_node: replaced.
			{
				Config: config(socket, `via = "socket"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_node.n", plancheck.ResourceActionReplace)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "id", n.agent.Name+"@"+socket),
					resource.TestCheckResourceAttr("herd_node.n", "ready", "true"),
					resource.TestCheckResourceAttr("data.herd_node.tcp", "labels.via", "socket"),
				),
			},
		},
	})
}

// A real agentd refuses clients it must not serve, and the provider
// refuses nodes it cannot verify, each with an error that says so.
func TestAccNodeRefusedOverTLS(t *testing.T) {
	t.Parallel()
	n := startNode(t, "acc-tls")
	c := n.env.Certs
	otherCA := newCA(t)
	otherCert, otherKey := clientFiles(t, otherCA)
	otherCAFile := writeFile(t, "other-ca.pem", otherCA.CertPEM)
	expiredCert, expiredKey := clientFiles(t, c.CA,
		pki.WithNotBefore(time.Now().Add(-48*time.Hour)), pki.WithNotAfter(time.Now().Add(-24*time.Hour)))

	cases := []struct {
		name              string
		caCert, cert, key string
		nodeName, address string
		re                *regexp.Regexp
	}{
		{
			name:   "client certificate from another CA",
			caCert: c.CAFile, cert: otherCert, key: otherKey,
			re: errRe("Node refused the client", `node "acc-tls"`, "remote error: tls: unknown certificate authority", "client_cert"),
		},
		{
			name:   "expired client certificate",
			caCert: c.CAFile, cert: expiredCert, key: expiredKey,
			re: errRe("Node refused the client", `node "acc-tls"`, "remote error: tls: expired certificate", "has not expired"),
		},
		{
			name:   "node certificate from another CA",
			caCert: otherCAFile, cert: otherCert, key: otherKey,
			re: errRe("Cannot verify node", "certificate signed by unknown authority", `for the name "acc-tls"`),
		},
		{
			name:   "no client certificate",
			caCert: c.CAFile, cert: "", key: "",
			re: errRe(`node "acc-tls" at`, "is reached over TCP, which requires mutual TLS", "client_cert (HERD_CLIENT_CERT)",
				"client_key (HERD_CLIENT_KEY)"),
		},
		{
			// The certificate does not carry the name asked for.
			name:   "wrong node name",
			caCert: c.CAFile, cert: c.ClientCertFile, key: c.ClientKeyFile,
			nodeName: "acc-tls-other",
			re:       errRe("Cannot verify node", "certificate is valid for acc-tls, not acc-tls-other"),
		},
		{
			// Without TLS the node's own answer gives it away.
			name:   "wrong node name over the local socket",
			caCert: c.CAFile, cert: c.ClientCertFile, key: c.ClientKeyFile,
			nodeName: "acc-tls-other", address: "unix://" + n.agent.Socket,
			re: errRe("Node name mismatch", `reports the node name "acc-tls", not "acc-tls-other"`),
		},
	}
	// The provider retries an unreachable node for up to dial_timeout. A
	// long one makes "refused at once, not retried as unreachable" a
	// matter of behaviour: a retried refusal lasts at least dial_timeout,
	// a refusal a few seconds even on a loaded machine.
	const dialTimeout = 2 * time.Minute
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodeName, address := tc.nodeName, tc.address
			if nodeName == "" {
				nodeName = n.agent.Name
			}
			if address == "" {
				address = n.agent.Addr
			}
			start := time.Now()
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(),
				Steps: []resource.TestStep{{
					Config: fmt.Sprintf(`
provider "herd" {
  ca_cert      = %q
  client_cert  = %q
  client_key   = %q
  dial_timeout = %q
}

resource "herd_node" "n" {
  name    = %q
  address = %q
  labels  = { refused = "yes" }
}
`, tc.caCert, tc.cert, tc.key, dialTimeout.String(), nodeName, address),
					ExpectError: tc.re,
				}},
			})
			// Refused at once, not after retrying an "unreachable" node.
			if d := time.Since(start); d >= dialTimeout {
				t.Errorf("refusal took %s: retried for the whole dial_timeout (%s)", d, dialTimeout)
			} else {
				t.Logf("refused after %s", d.Round(time.Millisecond))
			}
			// Nothing was changed on the node.
			node, err := n.nodes.GetNode(context.Background(), &herdv1.GetNodeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(node.GetLabels()) != 0 {
				t.Fatalf("labels set by a refused client: %v", node.GetLabels())
			}
		})
	}
}

// agentd itself refuses TLS clients without a valid client certificate of
// its CA, whatever the client is (not only the provider).
func TestAgentdRefusesUnauthenticatedClients(t *testing.T) {
	t.Parallel()
	n := startAgent(t, "tls-raw")
	c := n.env.Certs
	otherCA := newCA(t)
	otherPEM, otherKeyPEM, err := otherCA.IssueClient("intruder", true)
	if err != nil {
		t.Fatal(err)
	}
	expiredPEM, expiredKeyPEM, err := c.CA.IssueClient("late", true,
		pki.WithNotBefore(time.Now().Add(-48*time.Hour)), pki.WithNotAfter(time.Now().Add(-24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(certPEM, keyPEM []byte) *tls.Config {
		tc, err := n.agent.ClientTLS(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	noCert := withCert(c.ClientCertPEM, c.ClientKeyPEM)
	noCert.Certificates = nil

	cases := []struct {
		name string
		tc   *tls.Config
		want string // in the error; "" means accepted
	}{
		{"admin client certificate", withCert(c.ClientCertPEM, c.ClientKeyPEM), ""},
		{"no client certificate", noCert, "certificate required"},
		{"client certificate from another CA", withCert(otherPEM, otherKeyPEM), "unknown certificate authority"},
		{"expired client certificate", withCert(expiredPEM, expiredKeyPEM), "expired certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				conn, err := grpc.NewClient(n.agent.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc.tc)))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				nc := herdv1.NewNodeServiceClient(conn)
				if _, err := nc.SetNodeLabels(ctx(t), &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"who": "admin"}}); err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, err := nc.SetNodeLabels(ctx(t), &herdv1.SetNodeLabelsRequest{}); err != nil {
					t.Fatal(err)
				}
				return
			}
			// With TLS 1.3 the client's side of the handshake completes
			// before the server has checked the client's certificate; the
			// server's verdict is the alert that the first read returns.
			// (A gRPC client may see "broken pipe" instead, depending on
			// whether it wrote or read first.)
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.agent.Addr, tc.tc)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			if err == nil || !strings.Contains(err.Error(), "remote error: tls: "+tc.want) {
				t.Fatalf("first read: %v, want the server's alert %q", err, tc.want)
			}
			node, err := n.nodes.GetNode(ctx(t), &herdv1.GetNodeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(node.GetLabels()) != 0 {
				t.Fatalf("labels set by a refused client: %v", node.GetLabels())
			}
		})
	}
}

// Bad TLS material is refused when the provider is configured, before any
// node is contacted.
func TestProviderRefusesBadTLSMaterial(t *testing.T) {
	needCLI(t)
	ca := newCA(t)
	caFile := writeFile(t, "ca.pem", ca.CertPEM)
	certFile, _ := clientFiles(t, ca)
	_, otherKey := clientFiles(t, ca)
	otherKeyPEM, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, provider string
		env            map[string]string
		want           []string
	}{
		{
			name:     "missing file",
			provider: `ca_cert = "/nonexistent/ca.pem"`,
			want:     []string{"Cannot load ca_cert", "/nonexistent/ca.pem", "no such file"},
		},
		{
			name: "key that does not match",
			env:  map[string]string{"HERD_CA_CERT": caFile, "HERD_CLIENT_CERT": certFile, "HERD_CLIENT_KEY": string(otherKeyPEM)},
			want: []string{"Invalid TLS configuration", "private key does not match certificate"},
		},
		{
			name:     "bad dial timeout",
			provider: `dial_timeout = "soon"`,
			want:     []string{"Invalid duration", `got "soon"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, env := range []string{"HERD_CA_CERT", "HERD_CLIENT_CERT", "HERD_CLIENT_KEY"} {
				t.Setenv(env, tc.env[env])
			}
			expectPlanErrors(t, fmt.Sprintf(`
provider "herd" {
  %s
}

resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
}
`, tc.provider), errRe(tc.want...), 1)
		})
	}
}
