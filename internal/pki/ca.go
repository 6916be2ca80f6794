// Package pki is the one place herd makes keys and x509 certificates. It
// implements the herd certificate authority: creation and loading of the
// CA, issuance of node and client certificates (ECDSA P-256), and the
// mutual-TLS configurations used between the Terraform provider, herdctl
// and agentd. The same CA type, with options (NewCA, Issue), makes the
// certificates other systems read, such as a nested Kubernetes cluster's
// kubeadm PKI (agentd/nested/pki) and the test harness's.
//
// Keys are written PEM-encoded as PKCS#8 ("PRIVATE KEY") unless
// WithKeyEncoding says otherwise; every loader also accepts SEC 1
// ("EC PRIVATE KEY"). Errors returned by this package never contain key
// material.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"

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

// NewCA creates a self-signed CA with the given common name and an
// ECDSA P-256 key. By default it is herd's CA: valid for
// DefaultCAValidity, key usages CertSign, CRLSign and DigitalSignature,
// and a path length of 0 (leaves only, no intermediates); options change
// the validity, subject organization, key usages and path length (other
// CAs, e.g. a Kubernetes cluster's, use those).
func NewCA(commonName string, opts ...Option) (*CA, error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, errors.New("pki: CA common name must not be empty")
	}
	o, err := resolve(DefaultCAValidity, opts)
	if err != nil {
		return nil, err
	}
	if o.keyType != ECDSAP256 {
		return nil, fmt.Errorf("pki: CA keys are %v, not %v", ECDSAP256, o.keyType)
	}
	if o.keyUsage == 0 {
		o.keyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	}
	tmpl, err := o.template(commonName)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	switch {
	case o.pathLen == nil || *o.pathLen == 0:
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	case *o.pathLen < 0:
		tmpl.MaxPathLen = -1
	default:
		tmpl.MaxPathLen = *o.pathLen
	}
	signer, err := GenerateKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	key := signer.(*ecdsa.PrivateKey)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	keyPEM, err := EncodePrivateKeyPEM(key, o.keyEncoding)
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
// DefaultLeafValidity; it is clamped so as not to outlive the CA. Only the
// validity options apply: the node profile fixes names, usages and key.
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
	o, err := herdLeaf(opts)
	if err != nil {
		return nil, nil, err
	}
	o.dnsNames, o.ips = dns, ipSANs
	o.extKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	return ca.issue(name, o)
}

// IssueClient issues a client certificate (CN=name, ExtKeyUsage ClientAuth
// only) for a user or tool such as the Terraform provider or herdctl:
// an admin, or an operator of every namespace (IssueClientAccess chooses
// the role and namespaces). Only the validity options apply.
func (ca *CA) IssueClient(name string, admin bool, opts ...Option) (certPEM, keyPEM []byte, err error) {
	a := Access{Role: RoleOperator}
	if admin {
		a.Role = RoleAdmin
	}
	return ca.IssueClientAccess(name, a, opts...)
}

// herdLeaf resolves opts keeping only their validity window: herd's own
// node and client certificates always look the same otherwise.
func herdLeaf(opts []Option) (options, error) {
	o, err := resolve(DefaultLeafValidity, opts)
	if err != nil {
		return options{}, err
	}
	return options{validity: o.validity, now: o.now, backdate: o.backdate, notBefore: o.notBefore, notAfter: o.notAfter}, nil
}

// Issue signs a leaf certificate for commonName with a fresh key, as the
// options describe: subject organization, SANs, extended key usages,
// validity (default DefaultLeafValidity, clamped so as not to outlive the
// CA), key type and encoding. The key usage defaults to DigitalSignature.
// Unlike IssueNode and IssueClient it applies no herd naming rules: it is
// for certificates other systems read (e.g. Kubernetes takes the user
// from CN and the groups from O).
func (ca *CA) Issue(commonName string, opts ...Option) (certPEM, keyPEM []byte, err error) {
	o, err := resolve(DefaultLeafValidity, opts)
	if err != nil {
		return nil, nil, err
	}
	return ca.issue(commonName, o)
}

// issue signs the leaf o describes with the CA and returns the
// PEM-encoded certificate and a freshly generated key.
func (ca *CA) issue(commonName string, o options) (certPEM, keyPEM []byte, err error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, nil, errors.New("pki: CA is not loaded")
	}
	if o.keyUsage == 0 {
		o.keyUsage = x509.KeyUsageDigitalSignature
	}
	tmpl, err := o.template(commonName)
	if err != nil {
		return nil, nil, err
	}
	// A leaf must not outlive its CA: clamp silently.
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
		if !tmpl.NotAfter.After(tmpl.NotBefore) {
			return nil, nil, errors.New("pki: CA certificate expires before the requested validity period starts")
		}
	}
	key, err := GenerateKey(o.keyType)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate for %q: %w", commonName, err)
	}
	keyPEM, err = EncodePrivateKeyPEM(key, o.keyEncoding)
	if err != nil {
		return nil, nil, err
	}
	return encodeCertPEM(der), keyPEM, nil
}

// template is the certificate o describes, not yet a CA or signed.
func (o options) template(commonName string) (*x509.Certificate, error) {
	notBefore, notAfter, err := o.window()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: o.organization, OrganizationalUnit: o.units},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              o.keyUsage,
		ExtKeyUsage:           o.extKeyUsage,
		DNSNames:              o.dnsNames,
		IPAddresses:           o.ips,
		BasicConstraintsValid: true,
	}, nil
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

// IsNode reports whether cert is a node certificate as IssueNode makes
// them: a non-CA certificate valid for both server and client
// authentication (client certificates, admin ones included, carry
// ClientAuth only). Like IsAdmin it only inspects the certificate: use a
// verified leaf.
func IsNode(cert *x509.Certificate) bool {
	if cert == nil || cert.IsCA {
		return false
	}
	return slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) &&
		slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
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
