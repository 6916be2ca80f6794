package acctest

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// KubeCA is a certificate authority for the Kubernetes test clusters
// (StartKube, the kubeadm-style PKI of StartGuestControlPlane's tests):
// internal/pki's CA with a Kubernetes profile. Its certificates go through
// pki.CA.Issue, not IssueNode or IssueClient, which stamp herd's node-name
// rules and admin organization into every certificate, while Kubernetes
// reads the user from CN and the groups from O.
//
// Keys are ECDSA P-256 (kube-apiserver and etcd accept them everywhere,
// including as the service-account signing key: ES256), written as PKCS#8.
type KubeCA struct {
	*pki.CA
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

const (
	kubeCAValidity = 365 * 24 * time.Hour
	// kubeBackdate tolerates test processes whose clocks disagree a little.
	kubeBackdate = time.Hour
	// kubeKeyUsage is what client-go and kubeadm give their certificates.
	kubeKeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
)

// NewKubeCA creates a self-signed CA valid for a year.
func NewKubeCA(commonName string) (*KubeCA, error) {
	ca, err := pki.NewCA(commonName, pki.WithBackdate(kubeBackdate), pki.WithValidity(kubeCAValidity),
		pki.WithKeyUsage(x509.KeyUsageCertSign|kubeKeyUsage), pki.WithPathLen(-1))
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", commonName, err)
	}
	return &KubeCA{CA: ca}, nil
}

// KubeCAFromPEM loads a CA from its certificate and ECDSA P-256 key
// (PKCS#8 or SEC 1), e.g. one a kubeadm-style PKI generated.
func KubeCAFromPEM(certPEM, keyPEM []byte) (*KubeCA, error) {
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &KubeCA{CA: ca}, nil
}

// Issue signs a leaf certificate for req with a fresh key, valid as long
// as the CA.
func (ca *KubeCA) Issue(req KubeCert) (certPEM, keyPEM []byte, err error) {
	var eku []x509.ExtKeyUsage
	if req.Server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	return ca.CA.Issue(req.CommonName,
		pki.WithOrganization(req.Organizations...), pki.WithExtKeyUsage(eku...),
		pki.WithIPs(req.IPs...), pki.WithDNSNames(req.DNSNames...),
		pki.WithBackdate(kubeBackdate), pki.WithNotAfter(ca.Cert.NotAfter), pki.WithKeyUsage(kubeKeyUsage))
}

// IssueFiles issues req and writes base.crt and base.key (the kubeadm
// naming) into dir.
func (ca *KubeCA) IssueFiles(dir, base string, req KubeCert) (certFile, keyFile string, err error) {
	c, k, err := ca.Issue(req)
	if err != nil {
		return "", "", err
	}
	return writePair(dir, base, ".crt", c, k)
}

// WriteFiles writes the CA as base.crt and base.key into dir.
func (ca *KubeCA) WriteFiles(dir, base string) (certFile, keyFile string, err error) {
	return writePair(dir, base, ".crt", ca.CertPEM, ca.KeyPEM)
}

// NewSigningKeyFiles writes a fresh ECDSA key pair as base.key (PKCS#8)
// and base.pub (PKIX), the layout of kubeadm's sa.key and sa.pub.
func NewSigningKeyFiles(dir, base string) (keyFile, pubFile string, err error) {
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		return "", "", err
	}
	keyPEM, err := pki.EncodePrivateKeyPEM(key, pki.PKCS8)
	if err != nil {
		return "", "", err
	}
	pubPEM, err := pki.EncodePublicKeyPEM(key.Public())
	if err != nil {
		return "", "", err
	}
	pubFile, keyFile, err = writePair(dir, base, ".pub", pubPEM, keyPEM)
	return keyFile, pubFile, err
}

// writePair writes base+ext (public, 0644) and base.key (0600) into dir.
func writePair(dir, base, ext string, public, keyPEM []byte) (publicFile, keyFile string, err error) {
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(base)), 0o700); err != nil {
		return "", "", err
	}
	pf, kf := filepath.Join(dir, base+ext), filepath.Join(dir, base+".key")
	if err := os.WriteFile(pf, public, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return pf, kf, nil
}
