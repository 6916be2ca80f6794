package resources_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// writeClientTLS issues a client certificate and writes the provider's
// three PEM files; it returns their paths.
func writeClientTLS(t *testing.T, ca *pki.CA) (caFile, certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueClient("terraform", true)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for p, b := range map[string][]byte{caFile: ca.CertPEM, certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Over TCP the provider speaks mTLS and checks that the node's certificate
// carries the node's name.
func TestNodeOverMutualTLS(t *testing.T) {
	needCLI(t)
	ca := newCA(t)
	f := startFakeAgentdTLS(t, "node-a", "node-a", ca)
	caFile, certFile, keyFile := writeClientTLS(t, ca)

	// Files through the environment, inline PEM through attributes.
	t.Setenv("HERD_CA_CERT", caFile)
	t.Setenv("HERD_CLIENT_CERT", certFile)
	t.Setenv("HERD_CLIENT_KEY", keyFile)
	certPEM, _ := os.ReadFile(certFile)

	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{
				Config: fmt.Sprintf(`
provider "herd" {
  client_cert = %q
}

resource "herd_node" "n" {
  name    = "node-a"
  address = %q
  labels  = { zone = "a" }
}
`, string(certPEM), f.addr),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_node.n", "id", "node-a@"+f.addr),
					resource.TestCheckResourceAttr("herd_node.n", "ready", "true"),
				),
			},
		},
	})
}

func TestNodeCertificateMustCarryTheNodeName(t *testing.T) {
	needCLI(t)
	ca := newCA(t)
	// The agentd at this address calls itself node-b but holds node-a's
	// certificate: the provider, asked for node-b, must refuse it.
	f := startFakeAgentdTLS(t, "node-b", "node-a", ca)
	caFile, certFile, keyFile := writeClientTLS(t, ca)
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config: fmt.Sprintf(`
provider "herd" {
  ca_cert      = %q
  client_cert  = %q
  client_key   = %q
  dial_timeout = "1s"
}

resource "herd_node" "n" {
  name    = "node-b"
  address = %q
}
`, caFile, certFile, keyFile, f.addr),
			ExpectError: errRe("Cannot verify node", "certificate is valid for node-a", "not node-b", `for the name "node-b"`),
		}},
	})
}

func TestNodeCertificateFromAnotherCA(t *testing.T) {
	needCLI(t)
	f := startFakeAgentdTLS(t, "node-a", "node-a", newCA(t))
	caFile, certFile, keyFile := writeClientTLS(t, newCA(t))
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config: fmt.Sprintf(`
provider "herd" {
  ca_cert      = %q
  client_cert  = %q
  client_key   = %q
  dial_timeout = "1s"
}

resource "herd_node" "n" {
  name    = "node-a"
  address = %q
}
`, caFile, certFile, keyFile, f.addr),
			ExpectError: errRe("Cannot verify node", "certificate signed by unknown authority"),
		}},
	})
}

func TestTCPNodeWithoutTLSConfiguration(t *testing.T) {
	needCLI(t)
	for _, env := range []string{"HERD_CA_CERT", "HERD_CLIENT_CERT", "HERD_CLIENT_KEY"} {
		t.Setenv(env, "")
	}
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config: `
resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
}
`,
			ExpectError: errRe(`node "node-a" at 127.0.0.1:1 is reached over TCP, which requires mutual TLS`,
				"ca_cert (HERD_CA_CERT)", "client_cert (HERD_CLIENT_CERT)", "client_key (HERD_CLIENT_KEY)"),
		}},
	})
}

func TestProviderRefusesBadTLSMaterial(t *testing.T) {
	needCLI(t)
	ca := newCA(t)
	caFile, certFile, _ := writeClientTLS(t, ca)
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
			env:  map[string]string{"HERD_CA_CERT": caFile, "HERD_CLIENT_CERT": certFile, "HERD_CLIENT_KEY": string(mustKey(t, ca))},
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

// mustKey returns the key of another client certificate of ca.
func mustKey(t *testing.T, ca *pki.CA) []byte {
	t.Helper()
	_, key, err := ca.IssueClient("other", false)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
