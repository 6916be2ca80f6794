package acctest

// Stand-ins for what boots inside a nested cluster's VMs, which
// no machine here can run: kubeadm in the first control plane (PlayKubeadm)
// and the kubelets (PlayKubelet). They read only what a real VM would get
// from the host (its cloud-init Secret) and do only what kubeadm and a
// kubelet would do, so that the API server agentd waits for is a real one
// running on agentd's own certificates.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
)

// CloudInitFiles parses a #cloud-config and returns its write_files by
// path (b64 contents decoded).
func CloudInitFiles(tb testing.TB, userData []byte) map[string][]byte {
	tb.Helper()
	files, err := cloudInitFiles(userData)
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

func cloudInitFiles(userData []byte) (map[string][]byte, error) {
	if !strings.HasPrefix(string(userData), "#cloud-config\n") {
		return nil, fmt.Errorf("user data is not a cloud-config:\n%s", userData)
	}
	var doc struct {
		WriteFiles []struct {
			Path     string `json:"path"`
			Encoding string `json:"encoding"`
			Content  string `json:"content"`
		} `json:"write_files"`
	}
	if err := yaml.Unmarshal(userData, &doc); err != nil {
		return nil, fmt.Errorf("parse cloud-config: %w", err)
	}
	files := map[string][]byte{}
	for _, f := range doc.WriteFiles {
		b := []byte(f.Content)
		if f.Encoding == "b64" {
			var err error
			if b, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
				return nil, fmt.Errorf("cloud-config file %s: %w", f.Path, err)
			}
		}
		files[f.Path] = b
	}
	return files, nil
}

// PlayKubeadm stands in for `kubeadm init` in a control-plane VM: see
// StartGuestFromCloudInit; it waits up to 60 s and fails the test on error.
func PlayKubeadm(tb testing.TB, host kubernetes.Interface, ns, secret, nodeName, endpoint, serviceCIDR string) *Guest {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := StartGuestFromCloudInit(ctx, tb, host, ns, secret, nodeName, endpoint, serviceCIDR)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// StartGuestFromCloudInit does what kubeadm init does in a control-plane
// VM: it waits (until ctx ends) for the VM's cloud-init Secret (namespace
// ns, name secret, key "userdata") on the host, takes the CAs and
// service-account keys it writes to /etc/kubernetes/pki, issues the node's
// leaf certificates as kubeadm's certs phase does (the endpoint's address
// standing in for the node IP) and starts a real etcd and kube-apiserver
// with kubeadm's flags on endpoint (host:port, a loopback address), stopped
// when the test ends. It returns errors instead of failing the test, so it
// may run on a goroutine of its own.
func StartGuestFromCloudInit(ctx context.Context, tb testing.TB, host kubernetes.Interface, ns, secret, nodeName, endpoint, serviceCIDR string) (*Guest, error) {
	var (
		sec  *corev1.Secret
		last error
	)
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		sec, last = host.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
		return last == nil, nil
	}); err != nil {
		if last == nil {
			last = err
		}
		return nil, fmt.Errorf("no cloud-init Secret %s/%s: %w", ns, secret, last)
	}
	files, err := cloudInitFiles(sec.Data["userdata"])
	if err != nil {
		return nil, err
	}
	shared := pki.Files{}
	for p, b := range files {
		if rel, ok := strings.CutPrefix(p, "/etc/kubernetes/pki/"); ok {
			shared[rel] = b
		}
	}
	h, p, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(p)
	full, err := shared.IssueLeaves(pki.LeafOptions{
		NodeName: nodeName, NodeIPs: []netip.Addr{netip.MustParseAddr(h)}, Endpoint: h,
		ServiceCIDR: netip.MustParsePrefix(serviceCIDR),
	}, time.Now())
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	if err := full.WriteDir(dir); err != nil {
		return nil, err
	}
	apiserverBin, etcdBin, err := kubeBinaries()
	if err != nil {
		return nil, err
	}
	g, err := startGuest(context.Background(), apiserverBin, etcdBin, tb.TempDir(),
		GuestOptions{PKIDir: dir, BindAddress: h, Port: port, ServiceCIDR: serviceCIDR, NodeName: nodeName})
	if err != nil {
		return nil, fmt.Errorf("start guest control plane: %w", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("guest control plane logs:%s", g.LogTail(30))
		}
		g.Close()
	})
	return g, nil
}

// PlayKubelet registers Ready nested Nodes, as the kubelets of booted VMs
// would, through kubeconfig (the admin kubeconfig agentd generated).
func PlayKubelet(tb testing.TB, kubeconfig []byte, names ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := RegisterReadyNodes(ctx, kubeconfig, names...); err != nil {
		tb.Fatal(err)
	}
}

// RegisterReadyNodes is PlayKubelet returning its error, for goroutines.
func RegisterReadyNodes(ctx context.Context, kubeconfig []byte, names ...string) error {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, n := range names {
		node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register nested node %s: %w", n, err)
		}
		now := metav1.Now()
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("nested node %s status: %w", n, err)
		}
	}
	return nil
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
