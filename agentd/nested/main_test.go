package nested

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

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
	// newKEK: the next open is a --new-kek start.
	newKEK bool
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
	if e.kms, _, err = secrets.OpenNodeKMS(context.Background(), filepath.Join(e.stateDir, "keys"), e.st, e.newKEK, log); err != nil {
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

// userDataFiles plays cloud-init: the files a VM's user data writes, and
// its kubeadm configuration.
func userDataFiles(t *testing.T, ud []byte) (files map[string][]byte, kubeadm string) {
	t.Helper()
	files = acctest.CloudInitFiles(t, ud)
	return files, string(files[guestKubeadmCfg])
}

// playKubeadm: see acctest.PlayKubeadm (the first control-plane VM).
func playKubeadm(t *testing.T, host *Host, ns, vm, endpoint, serviceCIDR string) *acctest.Guest {
	t.Helper()
	return acctest.PlayKubeadm(t, host.Kube, ns, userDataName(vm), vm, endpoint, serviceCIDR)
}

// playKubelet: see acctest.PlayKubelet.
func playKubelet(t *testing.T, kubeconfig []byte, names ...string) {
	t.Helper()
	acctest.PlayKubelet(t, kubeconfig, names...)
}

func guestKube(t *testing.T, kubeconfig []byte) kubernetes.Interface {
	t.Helper()
	return acctest.GuestClient(t, kubeconfig)
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

// loopbackIP is a random 127.x.y.z address, so that runs that follow each
// other (or run side by side) never serve on the same address and port.
func loopbackIP() string {
	return fmt.Sprintf("127.%d.%d.%d", 90+rand.IntN(10), 1+rand.IntN(250), 1+rand.IntN(250))
}
