package nested

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestMain(m *testing.M) { os.Exit(acctest.Main(m)) }

var nodeSeq atomic.Int32

// testEnv is one driver on the shared host cluster, with its own node
// name (so namespaces never collide), store and KMS.
type testEnv struct {
	kube     *acctest.Kube
	host     *Host
	stateDir string
	st       *store.Store
	kms      *secrets.FileKMS
	d        *Driver
	node     string
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	k := acctest.SharedKube(t)
	e := &testEnv{kube: k, host: &Host{Kube: k.Client, Dynamic: k.Dynamic}, stateDir: t.TempDir()}
	e.node = fmt.Sprintf("n%d-%d", os.Getpid()%10000, nodeSeq.Add(1))
	e.open(t)
	return e
}

// open (re)starts the driver on the env's state, as an agentd start would.
func (e *testEnv) open(t *testing.T) {
	t.Helper()
	var err error
	if e.st, err = store.Open(filepath.Join(e.stateDir, "agentd.db")); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if e.kms, err = secrets.OpenFileKMS(filepath.Join(e.stateDir, "keys"), log); err != nil {
		t.Fatal(err)
	}
	e.d, err = New(Config{Node: e.node, Host: e.host, Store: e.st, KMS: e.kms, Poll: 200 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
}

func (e *testEnv) close() {
	if e.d != nil {
		e.d.Close()
		_ = e.kms.Close()
		_ = e.st.Close()
		e.d = nil
	}
}

// userDataFiles plays cloud-init: the files a VM's user data writes.
func userDataFiles(t *testing.T, ud []byte) (files map[string][]byte, kubeadm string) {
	t.Helper()
	if !strings.HasPrefix(string(ud), "#cloud-config\n") {
		t.Fatalf("user data is not a cloud-config:\n%s", ud)
	}
	var doc struct {
		WriteFiles []struct {
			Path     string `json:"path"`
			Encoding string `json:"encoding"`
			Content  string `json:"content"`
		} `json:"write_files"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatal(err)
	}
	files = map[string][]byte{}
	for _, f := range doc.WriteFiles {
		b := []byte(f.Content)
		if f.Encoding == "b64" {
			var err error
			if b, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
				t.Fatal(err)
			}
		}
		files[f.Path] = b
	}
	return files, string(files[guestKubeadmCfg])
}

// playKubeadm stands in for kubeadm init in the first control-plane VM,
// which cannot boot here: it reads the VM's cloud-init Secret from the
// host, issues the node's leaf certificates from the CAs written there
// (as kubeadm's certs phase does, with the endpoint address as the node's
// IP) and starts a real etcd and kube-apiserver on that address with
// kubeadm's flags. What answers /readyz then is a real API server running
// on agentd's own certificates.
func playKubeadm(t *testing.T, host *Host, ns, vm, endpoint, serviceCIDR string) *acctest.Guest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sec *corev1.Secret
	for {
		var err error
		sec, err = host.Kube.CoreV1().Secrets(ns).Get(ctx, userDataName(vm), metav1.GetOptions{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no cloud-init Secret for %s: %v", vm, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	files, _ := userDataFiles(t, sec.Data[UserDataKey])
	shared := pki.Files{}
	for p, b := range files {
		if rel, ok := strings.CutPrefix(p, guestPKIDir+"/"); ok {
			shared[rel] = b
		}
	}
	h, port := splitHostPort(endpoint)
	ip := netip.MustParseAddr(h)
	full, err := shared.IssueLeaves(pki.LeafOptions{
		NodeName: vm, NodeIPs: []netip.Addr{ip}, Endpoint: h, ServiceCIDR: netip.MustParsePrefix(serviceCIDR),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := full.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return acctest.StartGuestControlPlane(t, acctest.GuestOptions{
		PKIDir: dir, BindAddress: h, Port: port, ServiceCIDR: serviceCIDR, NodeName: vm,
	})
}

// playKubelet registers a Ready nested Node, as a booted VM's kubelet
// would, through the admin kubeconfig agentd generated.
func playKubelet(t *testing.T, kubeconfig []byte, names ...string) {
	t.Helper()
	c := guestKube(t, kubeconfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("register nested node %s: %v", n, err)
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("nested node %s status: %v", n, err)
		}
	}
}

func guestKube(t *testing.T, kubeconfig []byte) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replaceCA returns kubeconfig with another certificate authority.
func replaceCA(t *testing.T, kubeconfig, caPEM []byte) string {
	t.Helper()
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.CertificateAuthorityData = caPEM
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func caHashOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}
