package acctest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// Certs is a fresh herd CA with an admin client certificate, written to a
// directory the way `herdctl certs` lays them out.
type Certs struct {
	Dir string
	CA  *pki.CA
	// Files of the CA and the admin client certificate.
	CAFile, ClientCertFile, ClientKeyFile string
	ClientCertPEM, ClientKeyPEM           []byte
}

// NewCerts creates a CA and an admin client certificate in dir.
func NewCerts(dir string) (*Certs, error) {
	ca, err := pki.NewCA("herd test CA")
	if err != nil {
		return nil, err
	}
	c := &Certs{Dir: dir, CA: ca}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c.CAFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(c.CAFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	c.ClientCertPEM, c.ClientKeyPEM, err = ca.IssueClient("acctest", true)
	if err != nil {
		return nil, err
	}
	c.ClientCertFile, c.ClientKeyFile, err = c.write("acctest", c.ClientCertPEM, c.ClientKeyPEM)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CertsForTest creates certificates in a temporary directory.
func CertsForTest(tb testing.TB) *Certs {
	tb.Helper()
	c, err := NewCerts(tb.TempDir())
	if err != nil {
		tb.Fatalf("create certificates: %v", err)
	}
	return c
}

// Node issues a node certificate for name, valid for 127.0.0.1 and the
// given IPs, and returns its files.
func (c *Certs) Node(name string, ips ...net.IP) (certFile, keyFile string, err error) {
	ips = append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...)
	certPEM, keyPEM, err := c.CA.IssueNode(name, ips, nil)
	if err != nil {
		return "", "", err
	}
	return c.write(name, certPEM, keyPEM)
}

func (c *Certs) write(name string, certPEM, keyPEM []byte) (string, string, error) {
	cf := filepath.Join(c.Dir, name+".pem")
	kf := filepath.Join(c.Dir, name+"-key.pem")
	if err := os.WriteFile(cf, certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return cf, kf, nil
}

// ProviderEnv returns the environment variables that configure the herd
// provider with the admin client certificate.
func (c *Certs) ProviderEnv() map[string]string {
	return map[string]string{
		"HERD_CA_CERT":     c.CAFile,
		"HERD_CLIENT_CERT": c.ClientCertFile,
		"HERD_CLIENT_KEY":  c.ClientKeyFile,
	}
}
