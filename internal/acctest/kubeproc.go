package acctest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// kubeStartTimeout bounds how long an etcd or kube-apiserver start may
	// take until ready. Measured: etcd about 0.5 s, kube-apiserver about 3 s
	// to /readyz on an idle machine; CI machines are shared and noisy.
	kubeStartTimeout = 90 * time.Second
	// kubeTermTimeout is how long stop waits after SIGTERM before SIGKILL.
	kubeTermTimeout = 10 * time.Second
)

// Environment variables naming prebuilt binaries; without them the harness
// asks scripts/tool.sh, which builds once and caches by version.
const (
	KubeAPIServerEnv = "HERD_KUBE_APISERVER_BIN"
	EtcdEnv          = "HERD_ETCD_BIN"
)

var kubeBins struct {
	mu    sync.Mutex
	paths map[string]string
	errs  map[string]error
}

// KubeBinary returns the path of "kube-apiserver" or "etcd": the file named
// by $HERD_KUBE_APISERVER_BIN / $HERD_ETCD_BIN, else what `scripts/tool.sh
// NAME` prints. tool.sh builds the version pinned in tools/kube/go.mod once
// (kube-apiserver: 4-7 min and 2.1 GB cold on 2 cores, up to 13 min on a
// busy machine) and caches it under ~/.cache/herd/tools, so after
// `make tools` this is instant.
func KubeBinary(name string) (string, error) {
	kubeBins.mu.Lock()
	defer kubeBins.mu.Unlock()
	if p, ok := kubeBins.paths[name]; ok {
		return p, kubeBins.errs[name]
	}
	p, err := kubeBinary(name)
	if kubeBins.paths == nil {
		kubeBins.paths, kubeBins.errs = map[string]string{}, map[string]error{}
	}
	kubeBins.paths[name], kubeBins.errs[name] = p, err
	return p, err
}

func kubeBinary(name string) (string, error) {
	if name != "kube-apiserver" && name != "etcd" {
		return "", fmt.Errorf("unknown Kubernetes binary %q", name)
	}
	return BuildTool(name)
}

// kubeBinaries returns the kube-apiserver and etcd binaries (see
// KubeBinary), stopping at the first that cannot be had.
func kubeBinaries() (apiserver, etcd string, err error) {
	if apiserver, err = KubeBinary("kube-apiserver"); err != nil {
		return "", "", err
	}
	if etcd, err = KubeBinary("etcd"); err != nil {
		return "", "", err
	}
	return apiserver, etcd, nil
}

// RequireKubeBinaries returns the kube-apiserver and etcd binaries. Where
// they cannot be had it skips the test, and fails it under CI (CI set), so
// that CI never passes by skipping.
func RequireKubeBinaries(tb testing.TB) (apiserver, etcd string) {
	tb.Helper()
	var errs []error
	apiserver, err := KubeBinary("kube-apiserver")
	errs = append(errs, err)
	etcd, err = KubeBinary("etcd")
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("Kubernetes binaries missing in CI: %v", err)
		}
		tb.Skipf("Kubernetes binaries unavailable (run `make tools` or scripts/tool.sh kube-apiserver): %v", err)
	}
	return apiserver, etcd
}

// kubeProc is one etcd or kube-apiserver process. It runs in its own
// process group (Setpgid), gets SIGTERM if the test binary dies
// (Pdeathsig), and stop signals the whole group by our child's PID.
type kubeProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	once    sync.Once
}

func startKubeProc(name, bin, logPath string, args []string) (*kubeProc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = filepath.Dir(logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &kubeProc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// PID of the process.
func (p *kubeProc) PID() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process group, then SIGKILL after
// kubeTermTimeout, and waits for the process to be reaped.
func (p *kubeProc) stop() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid // Setpgid: the group id is our child's PID
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(kubeTermTimeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
		}
	})
}

// logTail returns the last n lines of the process log.
func (p *kubeProc) logTail(n int) string {
	if p == nil {
		return ""
	}
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("\n--- %s log tail (%s) ---\n%s", p.name, p.logPath, strings.Join(lines, "\n"))
}

// waitHTTP polls url until it answers 200, the process exits or ctx ends.
// tlsConf may be nil for plain HTTP.
func (p *kubeProc) waitHTTP(ctx context.Context, url string, tlsConf *tls.Config, header http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, kubeStartTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body[:n])
		} else {
			last = err.Error()
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before %s answered (last: %s)", p.name, url, last)
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready: %w (last: %s)", p.name, url, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tlsClientConfig trusts caPEM and, if given, presents a client cert.
func tlsClientConfig(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate in PEM")
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// freePortOn returns a TCP port on host that was free a moment ago.
func freePortOn(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// kubePair is an etcd and the kube-apiserver that stores in it, as both
// Kube and Guest run them.
type kubePair struct {
	etcd, apiserver *kubeProc
}

// stop stops kube-apiserver, then etcd.
func (p *kubePair) stop() {
	p.apiserver.stop()
	p.etcd.stop()
}

// PIDs returns the process ids of etcd and kube-apiserver (0 if not
// started), for tests that check nothing outlives Close.
func (p *kubePair) PIDs() (etcd, apiserver int) {
	if p.etcd != nil {
		etcd = p.etcd.PID()
	}
	if p.apiserver != nil {
		apiserver = p.apiserver.PID()
	}
	return etcd, apiserver
}

// LogTail returns the last n lines of the etcd and kube-apiserver logs.
func (p *kubePair) LogTail(n int) string { return p.etcd.logTail(n) + p.apiserver.logTail(n) }
