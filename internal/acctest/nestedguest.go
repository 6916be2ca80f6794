package acctest

// Stand-ins for what boots inside a nested cluster's VMs (issue 6), which
// no machine here can run: kubeadm in the first control plane (PlayKubeadm)
// and the kubelets (PlayKubelet). They read only what a real VM would get
// from the host (its cloud-init Secret) and do only what kubeadm and a
// kubelet would do, so that the API server agentd waits for is a real one
// running on agentd's own certificates.

import (
	"context"
	"encoding/base64"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
)

// CloudInitFiles parses a #cloud-config and returns its write_files by
// path (b64 contents decoded).
func CloudInitFiles(tb testing.TB, userData []byte) map[string][]byte {
	tb.Helper()
	if !strings.HasPrefix(string(userData), "#cloud-config\n") {
		tb.Fatalf("user data is not a cloud-config:\n%s", userData)
	}
	var doc struct {
		WriteFiles []struct {
			Path     string `json:"path"`
			Encoding string `json:"encoding"`
			Content  string `json:"content"`
		} `json:"write_files"`
	}
	if err := yaml.Unmarshal(userData, &doc); err != nil {
		tb.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range doc.WriteFiles {
		b := []byte(f.Content)
		if f.Encoding == "b64" {
			var err error
			if b, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
				tb.Fatal(err)
			}
		}
		files[f.Path] = b
	}
	return files
}

// PlayKubeadm stands in for `kubeadm init` in a control-plane VM: it waits
// (up to 60 s) for the VM's cloud-init Secret (namespace ns, name secret,
// key "userdata") on the host, takes the CAs and service-account keys it
// writes to /etc/kubernetes/pki, issues the node's leaf certificates as
// kubeadm's certs phase does (the endpoint's address standing in for the
// node IP) and starts a real etcd and kube-apiserver with kubeadm's flags
// on endpoint (host:port, a loopback address).
func PlayKubeadm(tb testing.TB, host kubernetes.Interface, ns, secret, nodeName, endpoint, serviceCIDR string) *Guest {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var sec *corev1.Secret
	for {
		var err error
		if sec, err = host.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{}); err == nil {
			break
		}
		if ctx.Err() != nil {
			tb.Fatalf("no cloud-init Secret %s/%s: %v", ns, secret, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	shared := pki.Files{}
	for p, b := range CloudInitFiles(tb, sec.Data["userdata"]) {
		if rel, ok := strings.CutPrefix(p, "/etc/kubernetes/pki/"); ok {
			shared[rel] = b
		}
	}
	h, p, err := net.SplitHostPort(endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	full, err := shared.IssueLeaves(pki.LeafOptions{
		NodeName: nodeName, NodeIPs: []netip.Addr{netip.MustParseAddr(h)}, Endpoint: h,
		ServiceCIDR: netip.MustParsePrefix(serviceCIDR),
	}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	if err := full.WriteDir(dir); err != nil {
		tb.Fatal(err)
	}
	return StartGuestControlPlane(tb, GuestOptions{PKIDir: dir, BindAddress: h, Port: port, ServiceCIDR: serviceCIDR, NodeName: nodeName})
}

// PlayKubelet registers Ready nested Nodes, as the kubelets of booted VMs
// would, through kubeconfig (the admin kubeconfig agentd generated).
func PlayKubelet(tb testing.TB, kubeconfig []byte, names ...string) {
	tb.Helper()
	c := GuestClient(tb, kubeconfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil {
			tb.Fatalf("register nested node %s: %v", n, err)
		}
		now := metav1.Now()
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			tb.Fatalf("nested node %s status: %v", n, err)
		}
	}
}

// GuestClient is a client for a kubeconfig's cluster.
func GuestClient(tb testing.TB, kubeconfig []byte) kubernetes.Interface {
	tb.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
