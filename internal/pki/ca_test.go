package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T, opts ...Option) *CA {
	t.Helper()
	ca, err := NewCA("herd test CA", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA basic constraints: IsCA=%v valid=%v maxPathLen=%d zero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA lacks KeyUsageCertSign")
	}
	if c.Subject.CommonName != "herd test CA" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if got := time.Until(c.NotAfter); got < DefaultCAValidity-time.Hour || got > DefaultCAValidity+time.Hour {
		t.Errorf("CA validity %v, want about %v", got, DefaultCAValidity)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("bad serial %v", c.SerialNumber)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if b, _ := pem.Decode(ca.KeyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("CA key is not PKCS#8 PEM")
	}
	if _, err := NewCA("  "); err == nil {
		t.Error("NewCA accepted an empty common name")
	}
}

func TestLoadCA(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	leafCert, leafKey, err := ca.IssueClient("alice", false)
	if err != nil {
		t.Fatal(err)
	}
	// The same key in SEC 1 ("EC PRIVATE KEY") form.
	secDER, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	secPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: secDER})

	tests := []struct {
		name      string
		cert, key []byte
		wantErr   string
	}{
		{name: "PKCS#8 key", cert: ca.CertPEM, key: ca.KeyPEM},
		{name: "SEC 1 key", cert: ca.CertPEM, key: secPEM},
		{name: "key of another CA", cert: ca.CertPEM, key: other.KeyPEM, wantErr: "does not match"},
		{name: "leaf certificate", cert: leafCert, key: leafKey, wantErr: "not a CA"},
		{name: "no certificate", cert: ca.KeyPEM, key: ca.KeyPEM, wantErr: "no CERTIFICATE"},
		{name: "no key", cert: ca.CertPEM, key: ca.CertPEM, wantErr: "no PRIVATE KEY"},
		{name: "garbage key", cert: ca.CertPEM, key: corruptKey(ca.KeyPEM), wantErr: "invalid private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded, err := LoadCA(tt.cert, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadCA error = %v, want %q", err, tt.wantErr)
				}
				assertNoKeyMaterial(t, err, tt.key)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !loaded.Cert.Equal(ca.Cert) || !loaded.Key.Equal(ca.Key) {
				t.Fatal("loaded CA differs from the original")
			}
			// The loaded CA can issue certificates that verify against the original.
			c, _, err := loaded.IssueNode("node-1", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, ca, parseLeaf(t, c), "node-1", x509.ExtKeyUsageServerAuth)
		})
	}
}

func verify(t *testing.T, ca *CA, leaf *x509.Certificate, dnsName string, eku x509.ExtKeyUsage) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
		t.Errorf("verify %q for %q: %v", leaf.Subject.CommonName, dnsName, err)
	}
}

func TestIssueNode(t *testing.T) {
	ca := newTestCA(t)
	ips := []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("fd00::7"), net.ParseIP("10.0.0.7")}
	certPEM, keyPEM, err := ca.IssueNode("node-7", ips, []string{"node-7.herd.internal", "NODE-7", "*.node-7.herd.internal"})
	if err != nil {
		t.Fatal(err)
	}
	c := parseLeaf(t, certPEM)
	if c.Subject.CommonName != "node-7" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if want := []string{"node-7", "node-7.herd.internal", "*.node-7.herd.internal"}; !slices.Equal(c.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(ips[0]) || !c.IPAddresses[1].Equal(ips[1]) {
		t.Errorf("IPAddresses = %v", c.IPAddresses)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v", c.ExtKeyUsage)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA=%v KeyUsage=%v", c.IsCA, c.KeyUsage)
	}
	if IsAdmin(c) {
		t.Error("node certificate is admin")
	}
	for _, name := range []string{"node-7", "node-7.herd.internal", "10.0.0.7", "fd00::7"} {
		verify(t, ca, c, name, x509.ExtKeyUsageServerAuth)
	}
	verify(t, ca, c, "", x509.ExtKeyUsageClientAuth)
	if got := time.Until(c.NotAfter); got < DefaultLeafValidity-time.Hour || got > DefaultLeafValidity+time.Hour {
		t.Errorf("leaf validity %v, want about %v", got, DefaultLeafValidity)
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !keyMatches(c, key) {
		t.Error("key does not match certificate")
	}

	for _, tt := range []struct {
		name string
		ips  []net.IP
		dns  []string
	}{
		{name: "Node-7"},
		{name: "node_7"},
		{name: "-node"},
		{name: ""},
		{name: "ok", dns: []string{"bad name"}},
		{name: "ok", dns: []string{""}},
		{name: "ok", ips: []net.IP{{1, 2, 3}}},
	} {
		if _, _, err := ca.IssueNode(tt.name, tt.ips, tt.dns); err == nil {
			t.Errorf("IssueNode(%q, %v, %q) succeeded, want error", tt.name, tt.ips, tt.dns)
		}
	}
}

func TestIssueClientAndIsAdmin(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name  string
		admin bool
	}{
		{"alice", true},
		{"terraform", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, _, err := ca.IssueClient(tt.name, tt.admin)
			if err != nil {
				t.Fatal(err)
			}
			c := parseLeaf(t, certPEM)
			if c.Subject.CommonName != tt.name {
				t.Errorf("CN = %q", c.Subject.CommonName)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", c.ExtKeyUsage)
			}
			if len(c.DNSNames)+len(c.IPAddresses) != 0 {
				t.Errorf("client certificate has SANs: %v %v", c.DNSNames, c.IPAddresses)
			}
			if got := IsAdmin(c); got != tt.admin {
				t.Errorf("IsAdmin = %v, want %v", got, tt.admin)
			}
			verify(t, ca, c, "", x509.ExtKeyUsageClientAuth)
		})
	}
	if _, _, err := ca.IssueClient("Bad Name", false); err == nil {
		t.Error("IssueClient accepted an invalid name")
	}

	adminCA := &x509.Certificate{IsCA: true}
	adminCA.Subject.Organization = []string{AdminOrganization}
	for _, tt := range []struct {
		name string
		cert *x509.Certificate
		want bool
	}{
		{"nil", nil, false},
		{"CA certificate with admin organization", adminCA, false},
		{"other organization", &x509.Certificate{Subject: pkixName("herd:admins", "x")}, false},
		{"admin among several organizations", &x509.Certificate{Subject: pkixName("acme", AdminOrganization)}, true},
	} {
		if got := IsAdmin(tt.cert); got != tt.want {
			t.Errorf("IsAdmin(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidityOptions(t *testing.T) {
	ca := newTestCA(t, WithValidity(48*time.Hour))
	if got := time.Until(ca.Cert.NotAfter); got > 48*time.Hour || got < 47*time.Hour {
		t.Errorf("CA validity %v, want 48h", got)
	}
	nb := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	na := nb.Add(24 * time.Hour)

	tests := []struct {
		name            string
		opts            []Option
		wantNB, wantNA  time.Time // zero: not checked
		approxValidity  time.Duration
		wantErr         bool
		wantClampedToCA bool
	}{
		{name: "default", approxValidity: DefaultLeafValidity, wantClampedToCA: true},
		{name: "validity", opts: []Option{WithValidity(2 * time.Hour)}, approxValidity: 2 * time.Hour},
		{name: "explicit window", opts: []Option{WithNotBefore(nb), WithNotAfter(na)}, wantNB: nb, wantNA: na},
		{name: "not before plus validity", opts: []Option{WithNotBefore(nb), WithValidity(time.Hour)}, wantNB: nb, wantNA: nb.Add(time.Hour)},
		{name: "zero validity", opts: []Option{WithValidity(0)}, wantErr: true},
		{name: "negative validity", opts: []Option{WithValidity(-time.Hour)}, wantErr: true},
		{name: "inverted window", opts: []Option{WithNotBefore(na), WithNotAfter(nb)}, wantErr: true},
		{name: "starts after CA expiry", opts: []Option{WithNotBefore(time.Now().Add(72 * time.Hour))}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, _, err := ca.IssueClient("alice", false, tt.opts...)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := parseLeaf(t, certPEM)
			if !tt.wantNB.IsZero() && !c.NotBefore.Equal(tt.wantNB) {
				t.Errorf("NotBefore = %v, want %v", c.NotBefore, tt.wantNB)
			}
			if !tt.wantNA.IsZero() && !c.NotAfter.Equal(tt.wantNA) {
				t.Errorf("NotAfter = %v, want %v", c.NotAfter, tt.wantNA)
			}
			if tt.wantClampedToCA && !c.NotAfter.Equal(ca.Cert.NotAfter) {
				t.Errorf("NotAfter = %v, want clamped to CA expiry %v", c.NotAfter, ca.Cert.NotAfter)
			}
			if tt.approxValidity != 0 && !tt.wantClampedToCA {
				if got := time.Until(c.NotAfter); got > tt.approxValidity || got < tt.approxValidity-time.Minute {
					t.Errorf("validity %v, want %v", got, tt.approxValidity)
				}
			}
			if tt.wantNB.IsZero() && time.Since(c.NotBefore) < time.Minute {
				t.Errorf("NotBefore %v is not back-dated for clock skew", c.NotBefore)
			}
		})
	}
}

func TestSerialsAreRandom(t *testing.T) {
	ca := newTestCA(t)
	seen := map[string]bool{ca.Cert.SerialNumber.String(): true}
	for range 20 {
		certPEM, _, err := ca.IssueClient("alice", false)
		if err != nil {
			t.Fatal(err)
		}
		s := parseLeaf(t, certPEM).SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Fatalf("serial %v out of range", s)
		}
		if seen[s.String()] {
			t.Fatalf("duplicate serial %v", s)
		}
		seen[s.String()] = true
	}
}

func TestValidateName(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name string
		ok   bool
	}{
		{"node-1", true},
		{"a", true},
		{"1", true},
		{"0abc9", true},
		{long, true},
		{long + "a", false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"Node", false},
		{"a_b", false},
		{"a.b", false},
		{"a b", false},
		{"nœud", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestLoadPEMOrFile(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notPEM, []byte("secret-ish content"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name       string
		in         string
		wantErr    string // substring; empty = success
		errNotHave string
	}{
		{name: "inline PEM", in: string(ca.CertPEM)},
		{name: "inline PEM with whitespace", in: "\n  " + string(ca.CertPEM) + "  \n"},
		{name: "file", in: file},
		{name: "file with whitespace", in: " " + file + "\n"},
		{name: "missing file", in: missing, wantErr: missing},
		{name: "not PEM", in: notPEM, wantErr: notPEM, errNotHave: "secret-ish"},
		{name: "empty", in: "  ", wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadPEMOrFile(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if tt.errNotHave != "" && strings.Contains(err.Error(), tt.errNotHave) {
					t.Fatalf("error leaks content: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseCertificatePEM(got)
			if err != nil || !c.Equal(ca.Cert) {
				t.Fatalf("content does not parse back to the CA: %v", err)
			}
		})
	}
}

func pkixName(orgs ...string) pkix.Name { return pkix.Name{CommonName: "x", Organization: orgs} }
