package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	herdpki "github.com/herd-project/terraform-provider-herd/internal/pki"
)

var (
	parseCert = herdpki.ParseCertificatePEM
	parseKey  = herdpki.ParseSignerPEM
)

func mustCAs(t *testing.T) Files {
	t.Helper()
	f, err := GenerateCAs(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func leaves(t *testing.T, f Files) Files {
	t.Helper()
	out, err := f.IssueLeaves(LeafOptions{
		NodeName:    "dev-cp-0",
		NodeIPs:     []netip.Addr{netip.MustParseAddr("10.0.0.7")},
		Endpoint:    "127.0.0.1",
		ServiceCIDR: netip.MustParsePrefix("10.201.0.0/16"),
		ExtraSANs:   []string{"dev.example.com"},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKubeadmFileSet(t *testing.T) {
	f := leaves(t, mustCAs(t))
	want := []string{
		"apiserver-etcd-client.crt", "apiserver-etcd-client.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
		"apiserver.crt", "apiserver.key", "ca.crt", "ca.key",
		"etcd/ca.crt", "etcd/ca.key", "etcd/healthcheck-client.crt", "etcd/healthcheck-client.key",
		"etcd/peer.crt", "etcd/peer.key", "etcd/server.crt", "etcd/server.key",
		"front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt", "front-proxy-client.key",
		"sa.key", "sa.pub",
	}
	if got := f.Names(); !slices.Equal(got, want) {
		t.Fatalf("files = %v\nwant %v", got, want)
	}
	if got := f.Shared().Names(); !slices.Equal(got, slices.Sorted(slices.Values(SharedFiles))) {
		t.Fatalf("shared = %v", got)
	}
	chains := map[string]string{
		APIServerCert: CACert, APIServerKubeletCert: CACert, FrontProxyClientCert: FrontProxyCACert,
		EtcdServerCert: EtcdCACert, EtcdPeerCert: EtcdCACert, EtcdHealthcheckCert: EtcdCACert, APIServerEtcdClientCrt: EtcdCACert,
	}
	for leaf, ca := range chains {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(f[ca])
		c, err := parseCert(f[leaf])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not chain to %s: %v", leaf, ca, err)
		}
	}
	api, _ := parseCert(f[APIServerCert])
	for _, h := range []string{"kubernetes", "kubernetes.default.svc.cluster.local", "localhost", "dev-cp-0", "dev.example.com", "10.201.0.1", "127.0.0.1", "10.0.0.7"} {
		if err := api.VerifyHostname(h); err != nil {
			t.Errorf("apiserver certificate lacks %s: %v", h, err)
		}
	}
	etcd, _ := parseCert(f[EtcdServerCert])
	if etcd.Subject.CommonName != "dev-cp-0" || etcd.VerifyHostname("10.0.0.7") != nil {
		t.Errorf("etcd server certificate: CN %q, IPs %v", etcd.Subject.CommonName, etcd.IPAddresses)
	}
	if _, err := parseKey(f[SAKey]); err != nil || !strings.Contains(string(f[SAPub]), "BEGIN PUBLIC KEY") {
		t.Errorf("service-account key pair: %v", err)
	}
}

func TestCAHash(t *testing.T) {
	f := mustCAs(t)
	c, _ := parseCert(f[CACert])
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	got, err := f.CAHash()
	if err != nil || got != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("CAHash = %q, %v", got, err)
	}
}

func TestMarshalAndWriteDir(t *testing.T) {
	f := mustCAs(t)
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Unmarshal(b)
	if err != nil || !slices.Equal(g.Names(), f.Names()) || string(g[CAKey]) != string(f[CAKey]) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := Unmarshal(append([]byte("x"), b...)); err == nil || strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("malformed input: %v", err)
	}
	dir := t.TempDir()
	if err := f.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "etcd", "ca.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("etcd/ca.key: %v %v", fi, err)
	}
}

// The admin kubeconfig authenticates against a TLS server that trusts the
// cluster CA and serves the generated apiserver certificate; one signed by
// another CA is refused. (A real kube-apiserver with these files is in the
// nested package's tests.)
func TestAdminKubeconfigTLS(t *testing.T) {
	f := leaves(t, mustCAs(t))
	srvCert, err := tls.X509KeyPair(f[APIServerCert], f[APIServerKey])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f[CACert])
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.TLS.PeerCertificates[0]
		_, _ = io.WriteString(w, c.Subject.CommonName+"/"+strings.Join(c.Subject.Organization, ","))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	get := func(kc []byte) (string, error) {
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := rest.TransportFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: rt, Timeout: 5 * time.Second}).Get(cfg.Host + "/readyz")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	kc, err := f.AdminKubeconfig("dev", srv.URL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(kc); err != nil || got != "kubernetes-admin/system:masters" {
		t.Fatalf("admin kubeconfig: %q, %v", got, err)
	}
	other := mustCAs(t)
	okc, err := other.AdminKubeconfig("dev", srv.URL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The other kubeconfig trusts its own CA, not the server: refused on
	// both sides.
	if _, err := get(okc); err == nil {
		t.Fatal("a kubeconfig of another CA was accepted")
	}
}

// The kubeadm profile internal/pki is asked for: what kubeadm itself
// writes, so guests and tools see the certificates they expect.
func TestKubeadmProfile(t *testing.T) {
	now := time.Now()
	f := leaves(t, mustCAs(t))
	// Issued between now and done (NotAfter is whole seconds): a slow
	// machine may cross a second boundary in between.
	done := time.Now()
	for _, n := range []string{CACert, EtcdCACert, FrontProxyCACert} {
		c, err := parseCert(f[n])
		if err != nil {
			t.Fatal(err)
		}
		wantUsage := x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		if !c.IsCA || c.KeyUsage != wantUsage || c.MaxPathLen != -1 || c.MaxPathLenZero {
			t.Errorf("%s: IsCA %v, key usage %b (want %b), path length %d/%v (want unconstrained)", n, c.IsCA, c.KeyUsage, wantUsage, c.MaxPathLen, c.MaxPathLenZero)
		}
		if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("%s: key %T, want ECDSA", n, c.PublicKey)
		}
		if life := c.NotAfter.Sub(now); life < caValidity-time.Hour || c.NotAfter.After(done.Add(caValidity)) {
			t.Errorf("%s: lifetime %v, want %v", n, life, caValidity)
		}
	}
	for _, n := range []string{APIServerCert, EtcdServerCert, FrontProxyClientCert} {
		c, _ := parseCert(f[n])
		if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
			t.Errorf("%s: IsCA %v, key usage %b", n, c.IsCA, c.KeyUsage)
		}
		if life := c.NotAfter.Sub(now); life < leafValidity-time.Hour || c.NotAfter.After(done.Add(leafValidity)) {
			t.Errorf("%s: lifetime %v, want %v", n, life, leafValidity)
		}
	}
	for n, want := range map[string]string{CAKey: "EC PRIVATE KEY", APIServerKey: "EC PRIVATE KEY", SAKey: "RSA PRIVATE KEY", SAPub: "PUBLIC KEY"} {
		if b, _ := pem.Decode(f[n]); b == nil || b.Type != want {
			t.Errorf("%s is not a %s PEM block", n, want)
		}
	}
	if k, err := parseKey(f[SAKey]); err != nil {
		t.Error(err)
	} else if rk, ok := k.(*rsa.PrivateKey); !ok || rk.N.BitLen() != 2048 {
		t.Errorf("service-account key %T, want RSA 2048", k)
	}
	kubelet, _ := parseCert(f[APIServerKubeletCert])
	if kubelet.Subject.CommonName != "kube-apiserver-kubelet-client" || !slices.Equal(kubelet.Subject.Organization, []string{"system:masters"}) ||
		!slices.Equal(kubelet.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("kubelet client certificate: %v, EKU %v", kubelet.Subject, kubelet.ExtKeyUsage)
	}
}
