package acctest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
)

// kubeadmPKI is the files of /etc/kubernetes/pki for one control-plane
// node at ip, as agentd/nested/pki makes them (CAs) and issues them (the
// leaves, as kubeadm's certs phase would in the guest).
type kubeadmPKI struct {
	Dir                           string
	CA                            *KubeCA
	FrontProxyCert, FrontProxyKey string
}

func writeKubeadmPKI(t *testing.T, dir string, ip net.IP, node, serviceCIDR string) *kubeadmPKI {
	t.Helper()
	addr, _ := netip.AddrFromSlice(ip.To4())
	cas, err := pki.GenerateCAs(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	full, err := cas.IssueLeaves(pki.LeafOptions{NodeName: node, NodeIPs: []netip.Addr{addr}, Endpoint: addr.String(),
		ServiceCIDR: netip.MustParsePrefix(serviceCIDR)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := full.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	ca, err := KubeCAFromPEM(full[pki.CACert], full[pki.CAKey])
	if err != nil {
		t.Fatal(err)
	}
	return &kubeadmPKI{Dir: dir, CA: ca,
		FrontProxyCert: filepath.Join(dir, pki.FrontProxyClientCert), FrontProxyKey: filepath.Join(dir, pki.FrontProxyClientKey)}
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
	guestPKI := writeKubeadmPKI(t, filepath.Join(t.TempDir(), "pki"), bind, "cp-0", "10.128.0.0/16")
	g := StartGuestControlPlane(t, GuestOptions{PKIDir: guestPKI.Dir, BindAddress: bind.String(), Port: port, ServiceCIDR: "10.128.0.0/16"})
	if g.Address != net.JoinHostPort("127.0.0.2", strconv.Itoa(port)) {
		t.Errorf("address %s", g.Address)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()

	// kubeadm's super-admin.conf: O=system:masters, no binding needed.
	admin := guestClient(t, filepath.Join(dir, "super-admin.conf"), g.URL, guestPKI.CA, guestPKI.CA, "kubernetes-super-admin", "system:masters")
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
	var (
		svc  *corev1.Service
		last error
	)
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		svc, last = admin.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if last != nil && !apierrors.IsNotFound(last) {
			return false, last
		}
		return last == nil, nil
	}); err != nil {
		t.Fatalf("kubernetes service: %v (last: %v)", err, last)
	}
	if !strings.HasPrefix(svc.Spec.ClusterIP, "10.128.") {
		t.Errorf("kubernetes service ClusterIP %s, want one in 10.128.0.0/16", svc.Spec.ClusterIP)
	}

	// kubeadm's admin.conf: O=kubeadm:cluster-admins is Forbidden until
	// the ClusterRoleBinding kubeadm creates with super-admin.conf exists.
	kubeadmAdmin := guestClient(t, filepath.Join(dir, "admin.conf"), g.URL, guestPKI.CA, guestPKI.CA, "kubernetes-admin", "kubeadm:cluster-admins")
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
	wrongTrust := guestClient(t, filepath.Join(dir, "wrong-ca.conf"), g.URL, other, guestPKI.CA, "kubernetes-super-admin", "system:masters")
	_, err = wrongTrust.Discovery().ServerVersion()
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("client trusting another CA: %v, want an unknown-authority error", err)
	}
	// ...and a client certificate from another CA is not authenticated.
	wrongCert := guestClient(t, filepath.Join(dir, "wrong-cert.conf"), g.URL, guestPKI.CA, other, "kubernetes-super-admin", "system:masters")
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
		user, err := whoami(ctx, g.URL, guestPKI.CA, func(r *http.Request) { r.Header.Set("Authorization", "Bearer abcdef.0123456789abcdef") }, nil)
		return err == nil && user == "system:bootstrap:abcdef", nil
	})

	// --requestheader-*: the front-proxy client certificate may assert a
	// user; the same headers with an admin cert from the cluster CA may not.
	fp, err := tls.LoadX509KeyPair(guestPKI.FrontProxyCert, guestPKI.FrontProxyKey)
	if err != nil {
		t.Fatal(err)
	}
	user, err := whoami(ctx, g.URL, guestPKI.CA, func(r *http.Request) { r.Header.Set("X-Remote-User", "proxied-alice") }, &fp)
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
