package acctest

// A real Kubernetes API server for the KubeVirt tests (agentd creates
// VirtualMachines, Services and Secrets on a host cluster).
//
// What was measured and mattered (Debian 12, 2 cores):
//
//   - kube-apiserver v1.34.3 and etcd v3.6.4 are built by scripts/tool.sh
//     from tools/kube (k8s.io/kubernetes with the 31 staging modules
//     replaced by their published v0.34.3); the main module only carries
//     client-go, api, apimachinery, apiextensions-apiserver and
//     kubevirt.io/api, all at the 0.34.3 line.
//   - etcd: plain HTTP on 127.0.0.1 free ports, --unsafe-no-fsync (a test
//     store; fsync on a shared disk made starts and writes slow), a
//     single-member --initial-cluster. Ready in well under a second.
//   - kube-apiserver: --bind-address/--advertise-address 127.0.0.1, a free
//     --secure-port, serving cert from our own CA (so the kubeconfig pins
//     it, no insecure-skip-verify), --client-ca-file for the admin client
//     cert (O=system:masters), --token-auth-file for the static admin
//     token, --authorization-mode=RBAC, service-account keys generated in
//     Go (ECDSA: --service-account-key-file and
//     --service-account-signing-key-file, --service-account-issuer),
//     --disable-admission-plugins=ServiceAccount (there is no
//     kube-controller-manager to create the "default" service accounts).
//     /readyz is 200 about 3 s after start.
//   - No kube-controller-manager runs: no garbage collector (PlayVirt
//     deletes orphaned VMIs itself), no namespace controller (a deleted
//     namespace stays Terminating; harmless, every test gets a fresh one),
//     no service-account token controller. Services still get a ClusterIP
//     and node ports (the apiserver allocates those itself).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kube is a kube-apiserver backed by its own etcd, both on 127.0.0.1 free
// ports, with the stand-in KubeVirt and CDI CRDs installed (see
// InstallStandInCRDs). Create it with StartKube, SharedKube or NewKube.
type Kube struct {
	// Dir holds etcd's data, the certificates, keys, logs and kubeconfigs.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig (client certificate
	// in system:masters).
	Kubeconfig string
	// Host is the API server URL, https://127.0.0.1:PORT.
	Host string
	// Token is a static bearer token of an admin user (system:masters).
	Token string
	// CA signs the serving certificate and client certificates; the API
	// server trusts it as --client-ca-file (see UserConfig).
	CA         *KubeCA
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface

	kubePair
	closeOnce sync.Once
}

// StartKube starts a Kube for one test and stops it when the test ends.
// Without the binaries it skips, or fails under CI (RequireKubeBinaries).
func StartKube(tb testing.TB) *Kube {
	tb.Helper()
	RequireKubeBinaries(tb)
	k, err := NewKube(context.Background())
	if err != nil {
		tb.Fatalf("start Kubernetes: %v", err)
	}
	tb.Cleanup(k.Close)
	return k
}

var sharedKube struct {
	once sync.Once
	kube *Kube
	err  error
}

// SharedKube returns one Kube per test binary, started on first use and
// stopped by Main (use os.Exit(acctest.Main(m)) in TestMain, or the
// processes outlive the tests until the binary exits: they get SIGTERM
// then through Pdeathsig). Give each test its own namespace (NewNamespace).
func SharedKube(tb testing.TB) *Kube {
	tb.Helper()
	RequireKubeBinaries(tb)
	sharedKube.once.Do(func() {
		sharedKube.kube, sharedKube.err = NewKube(context.Background())
	})
	if sharedKube.err != nil {
		tb.Fatalf("start shared Kubernetes: %v", sharedKube.err)
	}
	return sharedKube.kube
}

// closeSharedKube stops the SharedKube, if one was started (from Main).
func closeSharedKube() {
	if sharedKube.kube != nil {
		sharedKube.kube.Close()
	}
}

// NewKube starts etcd and kube-apiserver (binaries from KubeBinary) in a
// fresh directory, waits for /readyz and installs the stand-in CRDs. The
// caller must Close it. ctx bounds the start only.
func NewKube(ctx context.Context) (*Kube, error) {
	began := time.Now()
	apiserverBin, etcdBin, err := kubeBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-kube-")
	if err != nil {
		return nil, err
	}
	k := &Kube{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			k.Close()
		}
	}()
	if err := k.writePKI(); err != nil {
		return nil, err
	}

	// etcd: a throwaway single member on loopback.
	clientPort, err := freePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	peerPort, err := freePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	k.etcd, err = startKubeProc("etcd", etcdBin, filepath.Join(dir, "etcd.log"), []string{
		"--name=herd-test",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=herd-test=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=" + strconv.Itoa(2<<30),
		"--log-level=warn",
	})
	if err != nil {
		return nil, err
	}
	if err := k.etcd.waitHTTP(ctx, etcdURL+"/health", nil, nil); err != nil {
		return nil, fmt.Errorf("%w%s", err, k.etcd.logTail(20))
	}

	port, err := freePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	k.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
	pki := func(name string) string { return filepath.Join(dir, "pki", name) }
	k.apiserver, err = startKubeProc("kube-apiserver", apiserverBin, filepath.Join(dir, "kube-apiserver.log"), []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--token-auth-file=" + pki("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--profiling=false",
	})
	if err != nil {
		return nil, err
	}
	tlsConf, err := tlsClientConfig(k.CA.CertPEM, nil, nil)
	if err != nil {
		return nil, err
	}
	auth := map[string][]string{"Authorization": {"Bearer " + k.Token}}
	if err := k.apiserver.waitHTTP(ctx, k.Host+"/readyz", tlsConf, auth); err != nil {
		return nil, fmt.Errorf("%w%s", err, k.apiserver.logTail(30))
	}

	if err := k.connect(); err != nil {
		return nil, err
	}
	if err := InstallStandInCRDs(ctx, k.RESTConfig); err != nil {
		return nil, err
	}
	ok = true
	kubeLogf("acctest: Kubernetes up at %s in %s (etcd pid %d, kube-apiserver pid %d, dir %s)",
		k.Host, time.Since(began).Round(time.Millisecond), k.etcd.PID(), k.apiserver.PID(), dir)
	return k, nil
}

// kubeLogf reports start-up facts on stderr when HERD_KUBE_VERBOSE is set.
func kubeLogf(format string, args ...any) {
	if os.Getenv("HERD_KUBE_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// writePKI writes the CA, serving cert, admin client cert, token file and
// service-account key pair under Dir/pki, and the admin kubeconfig.
func (k *Kube) writePKI() error {
	dir := filepath.Join(k.Dir, "pki")
	var err error
	if k.CA, err = NewKubeCA("herd-test-kubernetes-ca"); err != nil {
		return err
	}
	if _, _, err := k.CA.WriteFiles(dir, "ca"); err != nil {
		return err
	}
	if _, _, err := k.CA.IssueFiles(dir, "apiserver", KubeCert{
		CommonName: "kube-apiserver", Server: true,
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}); err != nil {
		return err
	}
	if _, _, err := NewSigningKeyFiles(dir, "sa"); err != nil {
		return err
	}
	k.Token = randomHex(16)
	// token,user,uid,"group1,group2"
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(k.Token+`,herd-admin-token,herd-admin-token,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	return nil
}

// connect writes the admin kubeconfig and builds the clients.
func (k *Kube) connect() error {
	cfg, path, err := k.UserConfig("herd-admin", "system:masters")
	if err != nil {
		return err
	}
	k.Kubeconfig, k.RESTConfig = path, cfg
	if k.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if k.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	return nil
}

// UserConfig issues a client certificate for user in groups (CN and O, the
// way the API server reads them) and returns a rest.Config for it and the
// path of a kubeconfig file with the same credentials. Use it to test with
// an identity whose rights come from RBAC objects the test creates.
func (k *Kube) UserConfig(user string, groups ...string) (*rest.Config, string, error) {
	certPEM, keyPEM, err := k.CA.Issue(KubeCert{CommonName: user, Organizations: groups, Client: true})
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(k.Dir, "kubeconfig-"+sanitizeFileName(user))
	cfg, err := WriteKubeconfig(path, k.Host, k.CA.CertPEM, certPEM, keyPEM, "herd-test")
	if err != nil {
		return nil, "", err
	}
	return cfg, path, nil
}

// WriteKubeconfig writes a kubeconfig with one cluster, user and context
// (all named name) authenticating with a client certificate, and returns
// the rest.Config it loads to. Client-side rate limits are raised for
// tests (QPS 200, burst 400).
func WriteKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte, name string) (*rest.Config, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: metav1.NamespaceDefault}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// Close stops kube-apiserver and etcd (SIGTERM to each process group,
// SIGKILL after 10 s) and removes Dir.
func (k *Kube) Close() {
	k.closeOnce.Do(func() {
		k.stop()
		_ = os.RemoveAll(k.Dir)
	})
}

// NewNamespace creates a namespace named prefix-XXXXX and deletes it when
// the test ends. (Without a namespace controller it then stays
// Terminating with its objects; each test uses its own, so it does not
// matter.)
func (k *Kube) NewNamespace(tb testing.TB, prefix string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: strings.TrimSuffix(prefix, "-") + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create namespace: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = k.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// apiextClient is the CRD client for InstallStandInCRDs.
func apiextClient(cfg *rest.Config) (apiextclient.Interface, error) {
	c, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return nil, errors.New("apiextensions client: " + err.Error())
	}
	return c, nil
}
