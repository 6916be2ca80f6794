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
//
// This package knows kubeadm's layout: which certificates, with which
// names and usages, in which files. internal/pki makes the keys and
// certificates.
package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	herdpki "github.com/herd-project/terraform-provider-herd/internal/pki"
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
		// kubeadm's CA profile (client-go's self-signed CA): these key
		// usages, no path-length constraint, keys as kubeadm writes them.
		c, err := herdpki.NewCA(ca.cn,
			herdpki.WithNow(now), herdpki.WithBackdate(backdate), herdpki.WithValidity(caValidity),
			herdpki.WithKeyUsage(x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment),
			herdpki.WithPathLen(-1), herdpki.WithKeyEncoding(herdpki.Traditional))
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", ca.cn, err)
		}
		f[ca.cert], f[ca.key] = c.CertPEM, c.KeyPEM
	}
	sa, err := herdpki.GenerateKey(herdpki.RSA2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	if f[SAKey], err = herdpki.EncodePrivateKeyPEM(sa, herdpki.Traditional); err != nil {
		return nil, fmt.Errorf("encode service-account key: %w", err)
	}
	if f[SAPub], err = herdpki.EncodePublicKeyPEM(sa.Public()); err != nil {
		return nil, fmt.Errorf("encode service-account public key: %w", err)
	}
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
	masters := []string{"system:masters"}
	for _, l := range []struct {
		cert, key string
		ca        *herdpki.CA
		cn        string
		org       []string
		usage     []x509.ExtKeyUsage
		dns       []string
		ips       []net.IP
	}{
		{APIServerCert, APIServerKey, ca, "kube-apiserver", nil, server, dns, ips},
		{APIServerKubeletCert, APIServerKubeletKey, ca, "kube-apiserver-kubelet-client", masters, client, nil, nil},
		{FrontProxyClientCert, FrontProxyClientKey, fp, "front-proxy-client", nil, client, nil, nil},
		{EtcdServerCert, EtcdServerKey, etcdCA, node, nil, both, etcdDNS, etcdIPs},
		{EtcdPeerCert, EtcdPeerKey, etcdCA, node, nil, both, etcdDNS, etcdIPs},
		{EtcdHealthcheckCert, EtcdHealthcheckKey, etcdCA, "kube-etcd-healthcheck-client", nil, client, nil, nil},
		{APIServerEtcdClientCrt, APIServerEtcdClientKey, etcdCA, "kube-apiserver-etcd-client", nil, client, nil, nil},
	} {
		certPEM, keyPEM, err := issue(l.ca, now, l.cn, l.org, l.usage, herdpki.WithDNSNames(l.dns...), herdpki.WithIPs(l.ips...))
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
	c, err := herdpki.ParseCertificatePEM(f[CACert])
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
	certPEM, keyPEM, err := issue(ca, now, "kubernetes-admin", []string{"system:masters"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
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

func (f Files) loadCA(certName, keyName string) (*herdpki.CA, error) {
	ca, err := herdpki.LoadCA(f[certName], f[keyName])
	if err != nil {
		return nil, fmt.Errorf("load %s and %s: %w", certName, keyName, err)
	}
	return ca, nil
}

// issue signs a leaf with kubeadm's leaf profile: a year (at most the
// CA's lifetime), these key usages, the key written as kubeadm writes it.
func issue(ca *herdpki.CA, now time.Time, cn string, org []string, usage []x509.ExtKeyUsage, opts ...herdpki.Option) (certPEM, keyPEM []byte, err error) {
	return ca.Issue(cn, append([]herdpki.Option{
		herdpki.WithNow(now), herdpki.WithBackdate(backdate), herdpki.WithValidity(leafValidity),
		herdpki.WithOrganization(org...), herdpki.WithExtKeyUsage(usage...),
		herdpki.WithKeyUsage(x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment),
		herdpki.WithKeyEncoding(herdpki.Traditional),
	}, opts...)...)
}
