package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	ca := newTestCA(t)
	ip := net.IPv4(10, 0, 0, 7).To4()
	tests := []struct {
		name      string
		cn        string
		opts      []Option
		check     func(t *testing.T, c *x509.Certificate)
		keyBlock  string
		rsa       bool
		wantUsage x509.KeyUsage
		wantErr   string
	}{
		{name: "defaults", cn: "system:kube-scheduler", keyBlock: "PRIVATE KEY", wantUsage: x509.KeyUsageDigitalSignature,
			check: func(t *testing.T, c *x509.Certificate) {
				if len(c.ExtKeyUsage) != 0 || len(c.DNSNames) != 0 || c.IsCA {
					t.Errorf("EKU %v, DNS %v, IsCA %v", c.ExtKeyUsage, c.DNSNames, c.IsCA)
				}
			}},
		{name: "kubernetes user", cn: "kubernetes-admin",
			opts:     []Option{WithOrganization("system:masters"), WithExtKeyUsage(x509.ExtKeyUsageClientAuth), WithKeyEncoding(Traditional)},
			keyBlock: "EC PRIVATE KEY", wantUsage: x509.KeyUsageDigitalSignature,
			check: func(t *testing.T, c *x509.Certificate) {
				if !slices.Equal(c.Subject.Organization, []string{"system:masters"}) || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
					t.Errorf("subject %v, EKU %v", c.Subject, c.ExtKeyUsage)
				}
			}},
		{name: "server with SANs", cn: "kube-apiserver",
			opts: []Option{WithDNSNames("kubernetes", "localhost"), WithIPs(ip), WithExtKeyUsage(x509.ExtKeyUsageServerAuth),
				WithKeyUsage(x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment)},
			keyBlock: "PRIVATE KEY", wantUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			check: func(t *testing.T, c *x509.Certificate) {
				verify(t, ca, c, "kubernetes", x509.ExtKeyUsageServerAuth)
				verify(t, ca, c, "10.0.0.7", x509.ExtKeyUsageServerAuth)
			}},
		{name: "RSA key", cn: "rsa", opts: []Option{WithKeyType(RSA2048), WithKeyEncoding(Traditional)},
			keyBlock: "RSA PRIVATE KEY", rsa: true, wantUsage: x509.KeyUsageDigitalSignature},
		{name: "lifetime", cn: "short", opts: []Option{WithValidity(time.Hour), WithBackdate(time.Hour)},
			keyBlock: "PRIVATE KEY", wantUsage: x509.KeyUsageDigitalSignature,
			check: func(t *testing.T, c *x509.Certificate) {
				if got := c.NotAfter.Sub(c.NotBefore); got < 2*time.Hour-time.Second || got > 2*time.Hour {
					t.Errorf("window %v, want 2h", got)
				}
			}},
		{name: "negative back-date", cn: "x", opts: []Option{WithBackdate(-time.Hour)}, wantErr: "back-date"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.cn, tt.opts...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := parseLeaf(t, certPEM)
			if c.Subject.CommonName != tt.cn || c.KeyUsage != tt.wantUsage {
				t.Errorf("CN %q, key usage %b; want %q, %b", c.Subject.CommonName, c.KeyUsage, tt.cn, tt.wantUsage)
			}
			if err := c.CheckSignatureFrom(ca.Cert); err != nil {
				t.Error(err)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != tt.keyBlock {
				t.Errorf("key is not a %s block", tt.keyBlock)
			}
			key, err := ParseSignerPEM(keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if _, isRSA := key.(*rsa.PrivateKey); isRSA != tt.rsa {
				t.Errorf("key %T", key)
			}
			if _, isEC := c.PublicKey.(*ecdsa.PublicKey); isEC == tt.rsa {
				t.Errorf("certificate key %T", c.PublicKey)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestNewCAProfile(t *testing.T) {
	ca := newTestCA(t, WithKeyUsage(x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment),
		WithPathLen(-1), WithKeyEncoding(Traditional))
	c := ca.Cert
	if c.MaxPathLen != -1 || c.MaxPathLenZero || c.KeyUsage&x509.KeyUsageCRLSign != 0 {
		t.Errorf("path length %d/%v, key usage %b", c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if b, _ := pem.Decode(ca.KeyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
		t.Error("CA key is not SEC 1")
	}
	if _, err := LoadCA(ca.CertPEM, ca.KeyPEM); err != nil {
		t.Errorf("LoadCA: %v", err)
	}
	if _, err := NewCA("rsa", WithKeyType(RSA2048)); err == nil {
		t.Error("NewCA made an RSA CA")
	}
}

// IssueNode and IssueClient keep herd's profile whatever options ask for.
func TestHerdProfileIgnoresOtherOptions(t *testing.T) {
	ca := newTestCA(t)
	certPEM, _, err := ca.IssueClient("alice", false, WithOrganization(AdminOrganization), WithDNSNames("evil.example"), WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	if err != nil {
		t.Fatal(err)
	}
	c := parseLeaf(t, certPEM)
	if IsAdmin(c) || len(c.DNSNames) != 0 || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client certificate: O %v, DNS %v, EKU %v", c.Subject.Organization, c.DNSNames, c.ExtKeyUsage)
	}
}
