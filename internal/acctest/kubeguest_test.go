package acctest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubeadmPKI is a minimal stand-in for `kubeadm init phase certs all`: the
// files of /etc/kubernetes/pki for one control-plane node at ip.
type kubeadmPKI struct {
	Dir                           string
	CA, FrontProxyCA, EtcdCA      *KubeCA
	IP                            net.IP
	FrontProxyCert, FrontProxyKey string
}

func writeKubeadmPKI(t *testing.T, dir string, ip net.IP, node string) *kubeadmPKI {
	t.Helper()
	p := &kubeadmPKI{Dir: dir, IP: ip}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	p.CA, err = NewKubeCA("kubernetes")
	must(err)
	p.FrontProxyCA, err = NewKubeCA("front-proxy-ca")
	must(err)
	p.EtcdCA, err = NewKubeCA("etcd-ca")
	must(err)
	for _, ca := range []struct {
		ca   *KubeCA
		base string
	}{{p.CA, "ca"}, {p.FrontProxyCA, "front-proxy-ca"}, {p.EtcdCA, "etcd/ca"}} {
		_, _, err := ca.ca.WriteFiles(dir, ca.base)
		must(err)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	issue := func(ca *KubeCA, base string, req KubeCert) (string, string) {
		c, k, err := ca.IssueFiles(dir, base, req)
		must(err)
		return c, k
	}
	issue(p.CA, "apiserver", KubeCert{CommonName: "kube-apiserver", Server: true,
		IPs:      []net.IP{net.IPv4(10, 96, 0, 1), ip},
		DNSNames: []string{node, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}})
	issue(p.CA, "apiserver-kubelet-client", KubeCert{CommonName: "kube-apiserver-kubelet-client", Organizations: []string{"kubeadm:cluster-admins"}, Client: true})
	p.FrontProxyCert, p.FrontProxyKey = issue(p.FrontProxyCA, "front-proxy-client", KubeCert{CommonName: "front-proxy-client", Client: true})
	issue(p.EtcdCA, "etcd/server", KubeCert{CommonName: node, Server: true, Client: true, IPs: append([]net.IP{ip}, loopback...), DNSNames: []string{node, "localhost"}})
	issue(p.EtcdCA, "etcd/peer", KubeCert{CommonName: node, Server: true, Client: true, IPs: append([]net.IP{ip}, loopback...), DNSNames: []string{node, "localhost"}})
	issue(p.EtcdCA, "etcd/healthcheck-client", KubeCert{CommonName: "kube-etcd-healthcheck-client", Client: true})
	issue(p.EtcdCA, "apiserver-etcd-client", KubeCert{CommonName: "kube-apiserver-etcd-client", Client: true})
	_, _, err = NewSigningKeyFiles(dir, "sa")
	must(err)
	return p
}

// kubeconfig writes a client-certificate kubeconfig for user/groups signed
// by signer, trusting trust, and returns a clientset for it.
func guestClient(t *testing.T, path, url string, trust, signer *KubeCA, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	certPEM, keyPEM, err := signer.Issue(KubeCert{CommonName: user, Organizations: groups, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := WriteKubeconfig(path, url, trust.CertPEM, certPEM, keyPEM, "guest")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfigOrDie(cfg)
}

func TestGuestControlPlane(t *testing.T) {
	bind := net.IPv4(127, 0, 0, 2)
	port, err := freePortOn(bind.String())
	if err != nil {
		t.Fatalf("127.0.0.2 is not usable here: %v", err)
	}
	pki := writeKubeadmPKI(t, filepath.Join(t.TempDir(), "pki"), bind, "cp-0")
	g := StartGuestControlPlane(t, GuestOptions{PKIDir: pki.Dir, BindAddress: bind.String(), Port: port, ServiceCIDR: "10.128.0.0/16"})
	if g.Address != net.JoinHostPort("127.0.0.2", strconv.Itoa(port)) {
		t.Errorf("address %s", g.Address)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()

	// kubeadm's super-admin.conf: O=system:masters, no binding needed.
	admin := guestClient(t, filepath.Join(dir, "super-admin.conf"), g.URL, pki.CA, pki.CA, "kubernetes-super-admin", "system:masters")
	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("admin kubeconfig: %v", err)
	}
	t.Logf("guest control plane %s at %s", v.GitVersion, g.URL)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The service range is the one given. The apiserver creates the
	// kubernetes Service in the background after it reports ready.
	var svc *corev1.Service
	deadline := time.Now().Add(60 * time.Second)
	for {
		svc, err = admin.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(svc.Spec.ClusterIP, "10.128.") {
		t.Errorf("kubernetes service ClusterIP %s, want one in 10.128.0.0/16", svc.Spec.ClusterIP)
	}

	// kubeadm's admin.conf: O=kubeadm:cluster-admins is Forbidden until
	// the ClusterRoleBinding kubeadm creates with super-admin.conf exists.
	kubeadmAdmin := guestClient(t, filepath.Join(dir, "admin.conf"), g.URL, pki.CA, pki.CA, "kubernetes-admin", "kubeadm:cluster-admins")
	if _, err := kubeadmAdmin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("admin.conf before the binding: %v, want Forbidden", err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "kubeadm:cluster-admins"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "admin.conf allowed after the binding", func(ctx context.Context) (bool, error) {
		_, err := kubeadmAdmin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})

	// A client that trusts another CA refuses the server...
	other, err := NewKubeCA("not-the-guest-ca")
	if err != nil {
		t.Fatal(err)
	}
	wrongTrust := guestClient(t, filepath.Join(dir, "wrong-ca.conf"), g.URL, other, pki.CA, "kubernetes-super-admin", "system:masters")
	_, err = wrongTrust.Discovery().ServerVersion()
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("client trusting another CA: %v, want an unknown-authority error", err)
	}
	// ...and a client certificate from another CA is not authenticated.
	wrongCert := guestClient(t, filepath.Join(dir, "wrong-cert.conf"), g.URL, pki.CA, other, "kubernetes-super-admin", "system:masters")
	if _, err := wrongCert.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("client cert from another CA: %v, want Unauthorized", err)
	}

	// --enable-bootstrap-token-auth: a bootstrap token Secret in
	// kube-system authenticates as system:bootstrap:<id>.
	if _, err := admin.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef"},
		Type:       "bootstrap.kubernetes.io/token",
		StringData: map[string]string{"token-id": "abcdef", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "bootstrap token authenticates", func(ctx context.Context) (bool, error) {
		user, err := whoami(ctx, g.URL, pki.CA, func(r *http.Request) { r.Header.Set("Authorization", "Bearer abcdef.0123456789abcdef") }, nil)
		return err == nil && user == "system:bootstrap:abcdef", nil
	})

	// --requestheader-*: the front-proxy client certificate may assert a
	// user; the same headers with an admin cert from the cluster CA may not.
	fp, err := tls.LoadX509KeyPair(pki.FrontProxyCert, pki.FrontProxyKey)
	if err != nil {
		t.Fatal(err)
	}
	user, err := whoami(ctx, g.URL, pki.CA, func(r *http.Request) { r.Header.Set("X-Remote-User", "proxied-alice") }, &fp)
	if err != nil || user != "proxied-alice" {
		t.Errorf("front proxy: user %q, %v", user, err)
	}
}

// whoami posts a SelfSubjectReview and returns the user name.
func whoami(ctx context.Context, url string, ca *KubeCA, mutate func(*http.Request), cert *tls.Certificate) (string, error) {
	tc, err := tlsClientConfig(ca.CertPEM, nil, nil)
	if err != nil {
		return "", err
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	mutate(req)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	var review authnv1.SelfSubjectReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return "", err
	}
	return review.Status.UserInfo.Username, nil
}
