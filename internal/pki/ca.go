// Package pki implements the herd certificate authority: creation and
// loading of the CA, issuance of node and client certificates (ECDSA P-256),
// and the mutual-TLS configurations used between the Terraform provider,
// herdctl and agentd.
//
// Keys are written PEM-encoded as PKCS#8 ("PRIVATE KEY"); every loader also
// accepts SEC 1 ("EC PRIVATE KEY"). Errors returned by this package never
// contain key material.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// AdminOrganization is the Subject Organization carried by admin client
// certificates (see IsAdmin).
const AdminOrganization = "herd:admin"

// CA is the herd certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA with the given common name. The default
// validity is DefaultCAValidity.
func NewCA(commonName string, opts ...Option) (*CA, error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, errors.New("pki: CA common name must not be empty")
	}
	notBefore, notAfter, err := resolveValidity(time.Now(), DefaultCAValidity, opts)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // leaves only, no intermediates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCertPEM(der), KeyPEM: keyPEM}, nil
}

// LoadCA loads a CA from its PEM-encoded certificate and private key. The
// certificate must be a CA certificate and the key must match it.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("pki: load CA: certificate is not a CA certificate")
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	if !keyMatches(cert, key) {
		return nil, errors.New("pki: load CA: private key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

func keyMatches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// IssueNode issues a certificate for the agentd node called name (an
// RFC 1123 label, see ValidateName). The certificate has CN=name, DNS SANs
// name plus dnsNames, IP SANs ips, and is valid for both server and client
// authentication (nodes also talk to each other). Default validity is
// DefaultLeafValidity; it is clamped so as not to outlive the CA.
func (ca *CA) IssueNode(name string, ips []net.IP, dnsNames []string, opts ...Option) (certPEM, keyPEM []byte, err error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	dns := []string{name}
	for _, d := range dnsNames {
		d = strings.ToLower(strings.TrimSpace(d))
		if err := validateDNSName(d); err != nil {
			return nil, nil, err
		}
		if !slices.Contains(dns, d) {
			dns = append(dns, d)
		}
	}
	var ipSANs []net.IP
	for _, ip := range ips {
		if ip == nil || (ip.To4() == nil && len(ip) != net.IPv6len) {
			return nil, nil, errors.New("pki: invalid IP address")
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(ipSANs, ip.Equal) {
			ipSANs = append(ipSANs, ip)
		}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		DNSNames:    dns,
		IPAddresses: ipSANs,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, opts)
}

// IssueClient issues a client certificate (CN=name, ExtKeyUsage ClientAuth
// only) for a user or tool such as the Terraform provider or herdctl. Admin
// clients carry the Subject Organization AdminOrganization.
func (ca *CA) IssueClient(name string, admin bool, opts ...Option) (certPEM, keyPEM []byte, err error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	subject := pkix.Name{CommonName: name}
	if admin {
		subject.Organization = []string{AdminOrganization}
	}
	tmpl := &x509.Certificate{
		Subject:     subject,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, opts)
}

// issue fills in the common leaf fields of tmpl, signs it with the CA and
// returns the PEM-encoded certificate and a freshly generated key.
func (ca *CA) issue(tmpl *x509.Certificate, opts []Option) (certPEM, keyPEM []byte, err error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, nil, errors.New("pki: CA is not loaded")
	}
	notBefore, notAfter, err := resolveValidity(time.Now(), DefaultLeafValidity, opts)
	if err != nil {
		return nil, nil, err
	}
	// A leaf must not outlive its CA: clamp silently.
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
		if !notAfter.After(notBefore) {
			return nil, nil, errors.New("pki: CA certificate expires before the requested validity period starts")
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = encodeKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCertPEM(der), keyPEM, nil
}

// IsAdmin reports whether cert is an admin client certificate, i.e. a
// non-CA certificate whose Subject Organization contains AdminOrganization.
// It only inspects the certificate: callers must use a certificate whose
// chain has been verified against the herd CA (e.g. the leaf of
// tls.ConnectionState.VerifiedChains).
func IsAdmin(cert *x509.Certificate) bool {
	if cert == nil || cert.IsCA {
		return false
	}
	return slices.Contains(cert.Subject.Organization, AdminOrganization)
}

// ValidateName checks that name is an RFC 1123 label (the rule pods and
// nodes share, spec.ValidateName): node and client names must be valid
// labels, since a node's name is also a DNS SAN.
func ValidateName(name string) error {
	switch {
	case spec.ValidateName(name) == nil:
		return nil
	case name == "":
		return errors.New("invalid name: must not be empty")
	case len(name) > 63:
		return fmt.Errorf("invalid name %q: longer than 63 characters", name)
	}
	return fmt.Errorf("invalid name %q: only lowercase letters, digits and '-' are allowed, starting and ending with a letter or digit (RFC 1123 label)", name)
}

// validateDNSName checks a (lowercased) DNS name: dot-separated RFC 1123
// labels, at most 253 characters; a leading "*." wildcard label is allowed.
func validateDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("pki: invalid DNS name %q", name)
	}
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	for _, l := range labels {
		if ValidateName(l) != nil {
			return fmt.Errorf("pki: invalid DNS name %q", name)
		}
	}
	return nil
}

// newSerial returns a random, positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
