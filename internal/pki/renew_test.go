package pki

import (
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// A renewed certificate keeps the name, role, namespaces, SANs and usages
// of the old one, with a new serial, a new key and a new window; one of
// another CA is refused.
func TestRenew(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, _, err := ca.IssueNode("node-a", []net.IP{net.IPv4(10, 0, 0, 5)}, []string{"a.example"}, WithValidity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	clientPEM, _, err := ca.IssueClientAccess("wes", Access{Role: RoleViewer, Namespaces: []string{"web"}, Logs: true}, WithValidity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pem  []byte
	}{{"node", nodePEM}, {"client", clientPEM}} {
		t.Run(tc.name, func(t *testing.T) {
			old, err := ParseCertificatePEM(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM, err := ca.Renew(old, WithValidity(90*24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseCertificatePEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if got.SerialNumber.Cmp(old.SerialNumber) == 0 {
				t.Error("same serial")
			}
			if got.Subject.String() != old.Subject.String() || !slices.Equal(got.DNSNames, old.DNSNames) ||
				len(got.IPAddresses) != len(old.IPAddresses) || !slices.Equal(got.ExtKeyUsage, old.ExtKeyUsage) {
				t.Errorf("renewed %v %v %v %v, want %v %v %v %v", got.Subject, got.DNSNames, got.IPAddresses, got.ExtKeyUsage,
					old.Subject, old.DNSNames, old.IPAddresses, old.ExtKeyUsage)
			}
			if !got.NotAfter.After(old.NotAfter.Add(24 * time.Hour)) {
				t.Errorf("renewed NotAfter %v, not past the old %v", got.NotAfter, old.NotAfter)
			}
			if _, err := got.Verify(x509.VerifyOptions{Roots: poolOf(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("renewed certificate does not verify: %v", err)
			}
			if !strings.Contains(string(keyPEM), "PRIVATE KEY") {
				t.Error("no key")
			}
		})
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	old, _ := ParseCertificatePEM(nodePEM)
	if _, _, err := other.Renew(old); err == nil || !strings.Contains(err.Error(), "not signed by this CA") {
		t.Errorf("renew by another CA = %v", err)
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}
