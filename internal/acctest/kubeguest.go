package acctest

// The guest control plane: etcd and kube-apiserver run the way kubeadm's
// static pods run them inside a nested cluster's control-plane VM, so a test
// can check that the PKI and kubeconfigs agentd generates up front (herd
// never SSHes into the guest) are accepted by a real API server.
//
// Flags, as in kubeadm v1.34's manifests (kube-apiserver.yaml, etcd.yaml),
// with what had to change for a test on loopback:
//
//   - kube-apiserver: --bind-address=opts.BindAddress is added (kubeadm
//     binds 0.0.0.0); --advertise-address is the bind address;
//     --etcd-servers points at this etcd on the bind address and a free
//     port instead of https://127.0.0.1:2379, so guests never collide
//     with each other or a host etcd. Everything else is kubeadm's:
//     --authorization-mode=Node,RBAC, --enable-admission-plugins=NodeRestriction,
//     --enable-bootstrap-token-auth, --client-ca-file, --tls-cert-file,
//     --kubelet-client-*, --etcd-cafile/--etcd-certfile/--etcd-keyfile,
//     --proxy-client-*, --requestheader-* with the front-proxy CA and
//     allowed name front-proxy-client, --service-account-issuer,
//     --service-account-key-file=sa.pub,
//     --service-account-signing-key-file=sa.key,
//     --service-cluster-ip-range.
//   - etcd: kubeadm's --client-cert-auth and --peer-client-cert-auth with
//     etcd/ca.crt as --trusted-ca-file and --peer-trusted-ca-file, the
//     etcd/server and etcd/peer pairs, --snapshot-count=10000,
//     --feature-gates=InitialCorruptCheck=true and
//     --watch-progress-notify-interval=5s (etcd 3.6 names; 3.5's
//     --experimental-* spellings are deprecated; etcd 3.6.4 warns that
//     --snapshot-count is deprecated, kubeadm still passes it). Listening on
//     opts.BindAddress with free ports (kubeadm: 127.0.0.1 and the node
//     IP on 2379/2380); the etcd server certificate must carry that IP.
//   - Loopback addresses other than 127.0.0.1 (127.0.0.2, ...) work on
//     Linux with no setup: 127.0.0.0/8 is routed to lo. Connections to
//     them come from source 127.0.0.1, not from the bind address.
//   - etcd logs "rejected connection on client endpoint ... EOF" for
//     kube-apiserver's health-check connections: noise, not a TLS problem.
//   - kubeadm's admin.conf user is CN=kubernetes-admin,
//     O=kubeadm:cluster-admins, which only gets rights from a
//     ClusterRoleBinding kubeadm creates with super-admin.conf
//     (O=system:masters). A test that mimics the former must create that
//     binding with the latter; O=system:masters needs nothing.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// GuestOptions configure StartGuestControlPlane.
type GuestOptions struct {
	// PKIDir is laid out like kubeadm's /etc/kubernetes/pki: ca.crt/key,
	// apiserver.crt/key, apiserver-kubelet-client.crt/key,
	// front-proxy-ca.crt/key, front-proxy-client.crt/key, sa.key/sa.pub,
	// etcd/ca.crt/key, etcd/server.crt/key, etcd/peer.crt/key,
	// etcd/healthcheck-client.crt/key, apiserver-etcd-client.crt/key.
	// Required. apiserver.crt must carry BindAddress as an IP SAN, and so
	// must etcd/server.crt and etcd/peer.crt.
	PKIDir string
	// BindAddress is the address both listen on; default 127.0.0.2.
	BindAddress string
	// Port is kube-apiserver's secure port; default 6443.
	Port int
	// ServiceCIDR is --service-cluster-ip-range; default 10.96.0.0/12.
	ServiceCIDR string
	// NodeName is etcd's member name; default "guest-cp".
	NodeName string
	// ExtraArgs are added to kube-apiserver's flags ("--name=value").
	ExtraArgs []string
}

// Guest is a running guest control plane.
type Guest struct {
	// Address is host:port of kube-apiserver, URL is https://Address.
	Address, URL string
	// EtcdURL is etcd's client URL (TLS with client certificates).
	EtcdURL string
	PKIDir  string
	// Dir holds etcd's data and both logs.
	Dir string

	kubePair
	closeOnce sync.Once
}

// StartGuestControlPlane starts etcd and kube-apiserver from opts.PKIDir
// with kubeadm's static-pod flags and waits until /readyz answers 200
// (anonymously, as kubeadm's own probe does, trusting PKIDir/ca.crt). Both
// are stopped when the test ends. Without the binaries it skips, or fails
// under CI. The test then talks to Guest.URL with the admin kubeconfig it
// generated from the same CA.
func StartGuestControlPlane(tb testing.TB, opts GuestOptions) *Guest {
	tb.Helper()
	apiserverBin, etcdBin := RequireKubeBinaries(tb)
	g, err := startGuest(context.Background(), apiserverBin, etcdBin, tb.TempDir(), opts)
	if err != nil {
		tb.Fatalf("start guest control plane: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("guest control plane logs:%s", g.LogTail(30))
		}
		g.Close()
	})
	return g
}

func startGuest(ctx context.Context, apiserverBin, etcdBin, dir string, o GuestOptions) (*Guest, error) {
	if o.PKIDir == "" {
		return nil, errors.New("GuestOptions.PKIDir is required")
	}
	if o.BindAddress == "" {
		o.BindAddress = "127.0.0.2"
	}
	if o.Port == 0 {
		o.Port = 6443
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = "10.96.0.0/12"
	}
	if o.NodeName == "" {
		o.NodeName = "guest-cp"
	}
	pki := func(name string) string { return filepath.Join(o.PKIDir, name) }
	for _, f := range []string{
		"ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
		"front-proxy-ca.crt", "front-proxy-client.crt", "front-proxy-client.key", "sa.key", "sa.pub",
		"etcd/ca.crt", "etcd/server.crt", "etcd/server.key", "etcd/peer.crt", "etcd/peer.key",
		"apiserver-etcd-client.crt", "apiserver-etcd-client.key",
	} {
		if _, err := os.Stat(pki(f)); err != nil {
			return nil, fmt.Errorf("PKI dir: %w", err)
		}
	}
	g := &Guest{PKIDir: o.PKIDir, Dir: dir}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()

	clientPort, err := freePortOn(o.BindAddress)
	if err != nil {
		return nil, fmt.Errorf("bind address %s: %w", o.BindAddress, err)
	}
	peerPort, err := freePortOn(o.BindAddress)
	if err != nil {
		return nil, err
	}
	host := o.BindAddress
	g.EtcdURL = "https://" + net.JoinHostPort(host, strconv.Itoa(clientPort))
	peerURL := "https://" + net.JoinHostPort(host, strconv.Itoa(peerPort))
	// kubeadm's etcd.yaml, v1.34 (etcd 3.6).
	g.etcd, err = startKubeProc("etcd", etcdBin, filepath.Join(dir, "etcd.log"), []string{
		"--advertise-client-urls=" + g.EtcdURL,
		"--cert-file=" + pki("etcd/server.crt"),
		"--client-cert-auth=true",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--feature-gates=InitialCorruptCheck=true",
		"--watch-progress-notify-interval=5s",
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=" + o.NodeName + "=" + peerURL,
		"--key-file=" + pki("etcd/server.key"),
		"--listen-client-urls=" + g.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--name=" + o.NodeName,
		"--peer-cert-file=" + pki("etcd/peer.crt"),
		"--peer-client-cert-auth=true",
		"--peer-key-file=" + pki("etcd/peer.key"),
		"--peer-trusted-ca-file=" + pki("etcd/ca.crt"),
		"--snapshot-count=10000",
		"--trusted-ca-file=" + pki("etcd/ca.crt"),
		// Not kubeadm: a test store on a shared disk.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	})
	if err != nil {
		return nil, err
	}
	// Probe etcd as kubeadm's liveness probe would, but over TLS with the
	// healthcheck client (or, if absent, the apiserver's etcd client).
	etcdCA, err := os.ReadFile(pki("etcd/ca.crt"))
	if err != nil {
		return nil, err
	}
	probeCert, probeKey := pki("etcd/healthcheck-client.crt"), pki("etcd/healthcheck-client.key")
	if _, err := os.Stat(probeCert); err != nil {
		probeCert, probeKey = pki("apiserver-etcd-client.crt"), pki("apiserver-etcd-client.key")
	}
	certPEM, err := os.ReadFile(probeCert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(probeKey)
	if err != nil {
		return nil, err
	}
	etcdTLS, err := tlsClientConfig(etcdCA, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if err := g.etcd.waitHTTP(ctx, g.EtcdURL+"/health", etcdTLS, nil); err != nil {
		return nil, fmt.Errorf("%w%s", err, g.etcd.logTail(20))
	}

	g.Address = net.JoinHostPort(host, strconv.Itoa(o.Port))
	g.URL = "https://" + g.Address
	// kubeadm's kube-apiserver.yaml, v1.34, plus --bind-address.
	args := []string{
		"--advertise-address=" + host,
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--bind-address=" + host,
		"--client-ca-file=" + pki("ca.crt"),
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--etcd-cafile=" + pki("etcd/ca.crt"),
		"--etcd-certfile=" + pki("apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + pki("apiserver-etcd-client.key"),
		"--etcd-servers=" + g.EtcdURL,
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--proxy-client-cert-file=" + pki("front-proxy-client.crt"),
		"--proxy-client-key-file=" + pki("front-proxy-client.key"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--secure-port=" + strconv.Itoa(o.Port),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--service-cluster-ip-range=" + o.ServiceCIDR,
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
	}
	args = append(args, o.ExtraArgs...)
	g.apiserver, err = startKubeProc("kube-apiserver", apiserverBin, filepath.Join(dir, "kube-apiserver.log"), args)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	apiTLS, err := tlsClientConfig(caPEM, nil, nil)
	if err != nil {
		return nil, err
	}
	// /readyz is open to anonymous users (system:public-info-viewer)
	// once the RBAC bootstrap policy is in; kubeadm probes it the same way.
	if err := g.apiserver.waitHTTP(ctx, g.URL+"/readyz", apiTLS, nil); err != nil {
		return nil, fmt.Errorf("%w%s", err, g.apiserver.logTail(30))
	}
	ok = true
	return g, nil
}

// Close stops kube-apiserver, then etcd (by process group).
func (g *Guest) Close() {
	g.closeOnce.Do(func() {
		g.stop()
	})
}
