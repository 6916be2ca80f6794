package nested

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// The PKI and admin kubeconfig agentd generates work with a real
// kube-apiserver started as kubeadm starts it in the guest, from the
// kubeadm-layout directory; a kubeconfig of another CA is refused.
func TestGeneratedPKIWithRealAPIServer(t *testing.T) {
	acctest.RequireKubeBinaries(t)
	bind := loopbackIP()
	cas, err := pki.GenerateCAs(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	full, err := cas.IssueLeaves(pki.LeafOptions{
		NodeName: "pki-cp-0", NodeIPs: []netip.Addr{netip.MustParseAddr(bind)}, Endpoint: bind,
		ServiceCIDR: netip.MustParsePrefix("10.201.0.0/16"),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := full.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	g := acctest.StartGuestControlPlane(t, acctest.GuestOptions{PKIDir: dir, BindAddress: bind, Port: 6443, ServiceCIDR: "10.201.0.0/16", NodeName: "pki-cp-0"})

	kc, err := cas.AdminKubeconfig("pki", g.URL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := guestReadyz(ctx, kc); err != nil {
		t.Fatalf("/readyz through the generated kubeconfig: %v", err)
	}
	c := guestKube(t, kc)
	nss, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil || len(nss.Items) == 0 {
		t.Fatalf("list namespaces: %v", err)
	}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "from-agentd"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ConfigMap: %v", err)
	}
	// A bootstrap token minted as agentd does for new workers is stored
	// where kubeadm looks for it.
	tok, err := guestMintToken(ctx, kc, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+tok[:6], metav1.GetOptions{}); err != nil {
		t.Fatalf("minted token: %v", err)
	}

	// Another CA: its kubeconfig does not even trust the server.
	other, err := pki.GenerateCAs(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	okc, err := other.AdminKubeconfig("pki", g.URL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := guestReadyz(ctx, okc); err == nil {
		t.Fatal("a kubeconfig of another CA reached the API server")
	}
	// Trusting the server but with a client certificate of another CA:
	// unauthenticated.
	mixed := pki.Files{pki.CACert: other[pki.CACert], pki.CAKey: other[pki.CAKey]}
	mkc, err := mixed.AdminKubeconfig("pki", g.URL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Swap in the real CA as the server's trust anchor.
	mkc = []byte(replaceCA(t, mkc, full[pki.CACert]))
	_, err = guestKube(t, mkc).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("client certificate of another CA: want Unauthorized, got %v", err)
	}
}
