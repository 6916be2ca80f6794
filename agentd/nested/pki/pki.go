// Package pki generates a nested Kubernetes cluster's PKI the way kubeadm
// lays it out under /etc/kubernetes/pki, and its admin kubeconfig.
//
// agentd generates the certificate authorities up front (GenerateCAs), so
// that it can hand back a working kubeconfig without ever logging into a
// guest. The guests receive only the shared set (Shared: the three CAs and
// the service-account key pair, what `kubeadm init --upload-certs` shares
// between control planes); kubeadm in each guest then issues the leaf
// certificates that carry the node's own IP, which nobody knows before the
// VM boots. IssueLeaves issues exactly those leaves from the same CAs, as
// kubeadm's certs phase would: agentd's tests use it to start a real
// kube-apiserver with the guest's files.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The kubeadm file set, relative to /etc/kubernetes/pki.
const (
	CACert                 = "ca.crt"
	CAKey                  = "ca.key"
	APIServerCert          = "apiserver.crt"
	APIServerKey           = "apiserver.key"
	APIServerKubeletCert   = "apiserver-kubelet-client.crt"
	APIServerKubeletKey    = "apiserver-kubelet-client.key"
	FrontProxyCACert       = "front-proxy-ca.crt"
	FrontProxyCAKey        = "front-proxy-ca.key"
	FrontProxyClientCert   = "front-proxy-client.crt"
	FrontProxyClientKey    = "front-proxy-client.key"
	SAKey                  = "sa.key"
	SAPub                  = "sa.pub"
	EtcdCACert             = "etcd/ca.crt"
	EtcdCAKey              = "etcd/ca.key"
	EtcdServerCert         = "etcd/server.crt"
	EtcdServerKey          = "etcd/server.key"
	EtcdPeerCert           = "etcd/peer.crt"
	EtcdPeerKey            = "etcd/peer.key"
	EtcdHealthcheckCert    = "etcd/healthcheck-client.crt"
	EtcdHealthcheckKey     = "etcd/healthcheck-client.key"
	APIServerEtcdClientCrt = "apiserver-etcd-client.crt"
	APIServerEtcdClientKey = "apiserver-etcd-client.key"
)

// SharedFiles are what every control plane must have in common before
// kubeadm runs: the CAs with their keys and the service-account key pair.
var SharedFiles = []string{CACert, CAKey, SAKey, SAPub, FrontProxyCACert, FrontProxyCAKey, EtcdCACert, EtcdCAKey}

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// backdate tolerates clocks a little behind agentd's (a fresh VM).
	backdate = 5 * time.Minute
)

// Files maps a path relative to the pki directory to PEM content.
type Files map[string][]byte

// GenerateCAs makes a new cluster CA, etcd CA and front-proxy CA (ECDSA
// P-256) and the service-account key pair (RSA 2048, which every
// kube-apiserver accepts).
func GenerateCAs(now time.Time) (Files, error) {
	f := Files{}
	for _, ca := range []struct{ cert, key, cn string }{
		{CACert, CAKey, "kubernetes"},
		{EtcdCACert, EtcdCAKey, "etcd-ca"},
		{FrontProxyCACert, FrontProxyCAKey, "front-proxy-ca"},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", ca.cn, err)
		}
		serial, err := newSerial()
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: ca.cn},
			NotBefore:             now.Add(-backdate),
			NotAfter:              now.Add(caValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, fmt.Errorf("self-sign %s: %w", ca.cn, err)
		}
		if f[ca.key], err = encodeKey(key); err != nil {
			return nil, err
		}
		f[ca.cert] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	f[SAKey] = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sa)})
	pub, err := x509.MarshalPKIXPublicKey(sa.Public())
	if err != nil {
		return nil, fmt.Errorf("encode service-account public key: %w", err)
	}
	f[SAPub] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	return f, nil
}

// Shared returns the files every control plane receives (SharedFiles).
func (f Files) Shared() Files {
	out := Files{}
	for _, n := range SharedFiles {
		if v, ok := f[n]; ok {
			out[n] = bytes.Clone(v)
		}
	}
	return out
}

// Names lists the files, sorted.
func (f Files) Names() []string { return slices.Sorted(maps.Keys(f)) }

// LeafOptions say what a control-plane node's leaf certificates name.
type LeafOptions struct {
	// NodeName is the node's name (etcd server and peer CN and SAN).
	NodeName string
	// NodeIPs are the node's own addresses (API server, etcd).
	NodeIPs []netip.Addr
	// Endpoint is the control-plane endpoint's host (IP or DNS name).
	Endpoint string
	// ServiceCIDR's first address is the in-cluster `kubernetes` service.
	ServiceCIDR netip.Prefix
	// DNSDomain is the cluster domain (default cluster.local).
	DNSDomain string
	// ExtraSANs are more API server names or IPs.
	ExtraSANs []string
}

// APIServerSANs are the names and addresses the API server certificate
// carries: kubeadm's defaults plus the endpoint.
func (o LeafOptions) APIServerSANs() (dns []string, ips []net.IP, err error) {
	domain := o.DNSDomain
	if domain == "" {
		domain = "cluster.local"
	}
	dns = []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + domain, "localhost"}
	if o.NodeName != "" {
		dns = append(dns, o.NodeName)
	}
	if !o.ServiceCIDR.IsValid() {
		return nil, nil, errors.New("api server SANs: no service CIDR")
	}
	first := o.ServiceCIDR.Masked().Addr().Next()
	ips = []net.IP{net.IP(first.AsSlice()), net.IPv4(127, 0, 0, 1)}
	for _, a := range o.NodeIPs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	for _, s := range append([]string{o.Endpoint}, o.ExtraSANs...) {
		if s == "" {
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, net.IP(a.AsSlice()))
		} else {
			dns = append(dns, s)
		}
	}
	return dns, ips, nil
}

// IssueLeaves returns f plus the leaf certificates kubeadm's certs phase
// issues on a control-plane node, all signed by the CAs in f.
func (f Files) IssueLeaves(o LeafOptions, now time.Time) (Files, error) {
	ca, err := f.loadCA(CACert, CAKey)
	if err != nil {
		return nil, err
	}
	etcdCA, err := f.loadCA(EtcdCACert, EtcdCAKey)
	if err != nil {
		return nil, err
	}
	fp, err := f.loadCA(FrontProxyCACert, FrontProxyCAKey)
	if err != nil {
		return nil, err
	}
	dns, ips, err := o.APIServerSANs()
	if err != nil {
		return nil, err
	}
	node := o.NodeName
	if node == "" {
		node = "localhost"
	}
	etcdDNS := []string{"localhost", node}
	etcdIPs := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, a := range o.NodeIPs {
		etcdIPs = append(etcdIPs, net.IP(a.AsSlice()))
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	out := maps.Clone(f)
	for _, l := range []struct {
		cert, key string
		ca        *authority
		subject   pkix.Name
		usage     []x509.ExtKeyUsage
		dns       []string
		ips       []net.IP
	}{
		{APIServerCert, APIServerKey, ca, pkix.Name{CommonName: "kube-apiserver"}, server, dns, ips},
		{APIServerKubeletCert, APIServerKubeletKey, ca, pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}}, client, nil, nil},
		{FrontProxyClientCert, FrontProxyClientKey, fp, pkix.Name{CommonName: "front-proxy-client"}, client, nil, nil},
		{EtcdServerCert, EtcdServerKey, etcdCA, pkix.Name{CommonName: node}, both, etcdDNS, etcdIPs},
		{EtcdPeerCert, EtcdPeerKey, etcdCA, pkix.Name{CommonName: node}, both, etcdDNS, etcdIPs},
		{EtcdHealthcheckCert, EtcdHealthcheckKey, etcdCA, pkix.Name{CommonName: "kube-etcd-healthcheck-client"}, client, nil, nil},
		{APIServerEtcdClientCrt, APIServerEtcdClientKey, etcdCA, pkix.Name{CommonName: "kube-apiserver-etcd-client"}, client, nil, nil},
	} {
		certPEM, keyPEM, err := l.ca.issue(l.subject, l.usage, l.dns, l.ips, now)
		if err != nil {
			return nil, fmt.Errorf("issue %s: %w", l.cert, err)
		}
		out[l.cert], out[l.key] = certPEM, keyPEM
	}
	return out, nil
}

// CACertificate returns the cluster CA certificate (PEM).
func (f Files) CACertificate() []byte { return bytes.Clone(f[CACert]) }

// CAHash is what `kubeadm join --discovery-token-ca-cert-hash` expects:
// "sha256:" and the hex SHA-256 of the CA's SubjectPublicKeyInfo.
func (f Files) CAHash() (string, error) {
	c, err := parseCert(f[CACert])
	if err != nil {
		return "", fmt.Errorf("ca hash: %w", err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// AdminKubeconfig issues a client certificate for kubernetes-admin in
// system:masters (which needs no RBAC binding) and returns a kubeconfig
// for server (https://host:port) trusting the cluster CA.
func (f Files) AdminKubeconfig(clusterName, server string, now time.Time) ([]byte, error) {
	ca, err := f.loadCA(CACert, CAKey)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.issue(pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, now)
	if err != nil {
		return nil, fmt.Errorf("issue admin certificate: %w", err)
	}
	return Kubeconfig(clusterName, server, f[CACert], "kubernetes-admin", certPEM, keyPEM)
}

// Kubeconfig renders a kubeconfig with one cluster, user and context.
func Kubeconfig(clusterName, server string, caPEM []byte, user string, certPEM, keyPEM []byte) ([]byte, error) {
	ctxName := user + "@" + clusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: bytes.Clone(caPEM)}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: user}
	cfg.CurrentContext = ctxName
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("render kubeconfig: %w", err)
	}
	return b, nil
}

// WriteDir writes the files under dir (directories 0700, keys 0600,
// certificates 0644), as kubeadm would in /etc/kubernetes/pki.
func (f Files) WriteDir(dir string) error {
	for _, n := range f.Names() {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Ext(n) == ".key" {
			mode = 0o600
		}
		if err := os.WriteFile(p, f[n], mode); err != nil {
			return err
		}
	}
	return nil
}

// Marshal encodes the files (for sealing); Unmarshal reverses it.
func (f Files) Marshal() ([]byte, error) { return json.Marshal(map[string][]byte(f)) }

// Unmarshal decodes what Marshal produced.
func Unmarshal(b []byte) (Files, error) {
	var m map[string][]byte
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errors.New("decode pki: malformed") // never echo key material
	}
	return Files(m), nil
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func (f Files) loadCA(certName, keyName string) (*authority, error) {
	c, err := parseCert(f[certName])
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", certName, err)
	}
	k, err := parseKey(f[keyName])
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", keyName, err)
	}
	return &authority{cert: c, key: k}, nil
}

func (a *authority) issue(subject pkix.Name, usage []x509.ExtKeyUsage, dns []string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, errors.New("encode private key failed")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// parseKey never puts key bytes into its errors.
func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM private key")
	}
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("malformed EC private key")
		}
		return k, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("malformed RSA private key")
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("malformed PKCS#8 private key")
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("unsupported private key type")
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported PEM block %q", blk.Type)
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
