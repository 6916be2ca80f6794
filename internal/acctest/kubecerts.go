package acctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// KubeCA is a small certificate authority for the Kubernetes test clusters
// (StartKube, the kubeadm-style PKI of StartGuestControlPlane's tests).
// herd's own internal/pki is not used: it stamps herd's node-name rules and
// admin organization into every certificate, while Kubernetes reads the
// user from CN and the groups from O.
//
// Keys are ECDSA P-256 (kube-apiserver and etcd accept them everywhere,
// including as the service-account signing key: ES256), written as PKCS#8.
type KubeCA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// KubeCert is a certificate request for KubeCA.Issue.
type KubeCert struct {
	CommonName    string
	Organizations []string
	// Server and Client select the extended key usages.
	Server, Client bool
	IPs            []net.IP
	DNSNames       []string
}

// NewKubeCA creates a self-signed CA valid for a year.
func NewKubeCA(commonName string) (*KubeCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &KubeCA{Cert: cert, Key: key, CertPEM: certPEM(der), KeyPEM: keyPEM}, nil
}

// KubeCAFromPEM loads a CA from its certificate and key (any PEM key
// format crypto/tls reads), e.g. one agentd/nested/pki generated.
func KubeCAFromPEM(certPEMBytes, keyPEM []byte) (*KubeCA, error) {
	pair, err := tls.X509KeyPair(certPEMBytes, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load CA: key of type %T cannot sign", pair.PrivateKey)
	}
	return &KubeCA{Cert: pair.Leaf, Key: key, CertPEM: certPEMBytes, KeyPEM: keyPEM}, nil
}

// Issue signs a leaf certificate for req with a fresh key.
func (ca *KubeCA) Issue(req KubeCert) (certPEMBytes, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.Cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		IPAddresses:  req.IPs,
		DNSNames:     req.DNSNames,
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: %w", req.CommonName, err)
	}
	keyPEM, err = KeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM(der), keyPEM, nil
}

// IssueFiles issues req and writes base.crt and base.key (the kubeadm
// naming) into dir.
func (ca *KubeCA) IssueFiles(dir, base string, req KubeCert) (certFile, keyFile string, err error) {
	c, k, err := ca.Issue(req)
	if err != nil {
		return "", "", err
	}
	return writePair(dir, base, c, k)
}

// WriteFiles writes the CA as base.crt and base.key into dir.
func (ca *KubeCA) WriteFiles(dir, base string) (certFile, keyFile string, err error) {
	return writePair(dir, base, ca.CertPEM, ca.KeyPEM)
}

// NewSigningKeyFiles writes a fresh ECDSA key pair as base.key (PKCS#8)
// and base.pub (PKIX), the layout of kubeadm's sa.key and sa.pub.
func NewSigningKeyFiles(dir, base string) (keyFile, pubFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	keyFile, pubFile = filepath.Join(dir, base+".key"), filepath.Join(dir, base+".pub")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubFile, pubPEM, 0o644); err != nil {
		return "", "", err
	}
	return keyFile, pubFile, nil
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writePair(dir, base string, certPEM, keyPEM []byte) (string, string, error) {
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(base)), 0o700); err != nil {
		return "", "", err
	}
	cf, kf := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(cf, certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return cf, kf, nil
}
