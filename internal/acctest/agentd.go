package acctest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// AgentOptions describe one agentd process.
type AgentOptions struct {
	Name       string
	Containerd *Containerd
	// Namespace defaults to "herd-<name>" so agents share one containerd.
	Namespace          string
	Certs              *Certs
	InsecureRegistries []string
	RegistryConfig     string
	// BackoffBase is the first crash-restart delay (agentd default 10s).
	BackoffBase time.Duration
	ExtraArgs   []string
	// Dir holds the state dir, socket and log; a temp dir if empty.
	Dir string
	// Listen is the mTLS address; a free loopback port if empty.
	Listen string
	// Node runs agentd inside this lab node's network namespace, entered
	// with nsenter --net only (mounts stay shared with containerd and runc).
	// agentd listens on the node's IP (port 7443 unless Listen says
	// otherwise); Addr is then a 127.0.0.1 forwarder to it.
	Node *LabNode
}

// Agent is a running agentd process.
type Agent struct {
	Opts     AgentOptions
	Name     string
	Addr     string // 127.0.0.1:PORT, mTLS
	listen   string // agentd's --listen (differs from Addr inside a lab node)
	fwd      net.Listener
	Socket   string // local plaintext socket
	StateDir string
	LogFile  string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// ID is the herd_node id of this agent: NAME@ADDRESS.
func (a *Agent) ID() string { return a.Name + "@" + a.Addr }

// PID of the agentd process.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

var (
	agentdOnce sync.Once
	agentdPath string
	agentdErr  error
)

// AgentdBinary builds cmd/agentd once per process (or uses HERD_AGENTD_BIN).
func AgentdBinary() (string, error) {
	agentdOnce.Do(func() {
		if p := os.Getenv("HERD_AGENTD_BIN"); p != "" {
			agentdPath = p
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			agentdErr = err
			return
		}
		dir, err := os.MkdirTemp("", "herd-acctest-bin-")
		if err != nil {
			agentdErr = err
			return
		}
		agentdPath = filepath.Join(dir, "agentd")
		cmd := exec.Command("go", "build", "-o", agentdPath, "./cmd/agentd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			agentdErr = fmt.Errorf("build agentd: %w\n%s", err, out)
		}
	})
	return agentdPath, agentdErr
}

// ModuleRoot finds the repository root from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/herd-project/terraform-provider-herd\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root of terraform-provider-herd not found")
		}
		dir = parent
	}
}

// FreePort returns a loopback TCP address that was free a moment ago.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartAgent starts agentd and waits until it answers health checks.
func StartAgent(ctx context.Context, o AgentOptions) (*Agent, error) {
	made := false
	if o.Dir == "" {
		d, err := ShortTempDir("herd-agent-")
		if err != nil {
			return nil, err
		}
		o.Dir, made = d, true
	}
	a, err := startAgent(ctx, o)
	if err != nil && made {
		_ = os.RemoveAll(o.Dir) // nothing of a failed start stays behind
	}
	return a, err
}

func startAgent(ctx context.Context, o AgentOptions) (*Agent, error) {
	if o.Name == "" || o.Containerd == nil || o.Certs == nil {
		return nil, errors.New("start agentd: Name, Containerd and Certs are required")
	}
	if o.Namespace == "" {
		o.Namespace = "herd-" + o.Name
	}
	addr := o.Listen
	if addr == "" && o.Node != nil {
		addr = o.Node.IP.String() + ":7443"
	}
	if addr == "" {
		var err error
		if addr, err = FreePort(); err != nil {
			return nil, err
		}
	}
	a := &Agent{
		Opts:     o,
		Name:     o.Name,
		Addr:     addr,
		listen:   addr,
		Socket:   filepath.Join(o.Dir, "agentd.sock"),
		StateDir: filepath.Join(o.Dir, "state"),
		LogFile:  filepath.Join(o.Dir, "agentd.log"),
	}
	// A free port may be taken by a parallel test before agentd binds it:
	// then try another, unless the caller fixed the address.
	for attempt := 0; ; attempt++ {
		err := a.start(ctx)
		if err == nil {
			break
		}
		if o.Listen != "" || o.Node != nil || attempt == 4 || !errors.Is(err, ErrListenInUse) {
			return nil, err
		}
		if a.Addr, err = FreePort(); err != nil {
			return nil, err
		}
		a.listen = a.Addr
	}
	if o.Node != nil {
		fwd, err := o.Node.Forward(a.listen)
		if err != nil {
			a.Kill()
			return nil, err
		}
		a.fwd, a.Addr = fwd, fwd.Addr().String()
	}
	return a, nil
}

func (a *Agent) start(ctx context.Context) error {
	bin, err := AgentdBinary()
	if err != nil {
		return err
	}
	o := a.Opts
	cert, key, err := o.Certs.Node(o.Name)
	if err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	args := []string{
		"--name", o.Name,
		"--listen", a.listen,
		"--socket", a.Socket,
		"--state-dir", a.StateDir,
		"--containerd", o.Containerd.Address,
		"--namespace", o.Namespace,
		"--ca-cert", o.Certs.CAFile,
		"--cert", cert,
		"--key", key,
		"--log-level", "debug",
	}
	for _, r := range o.InsecureRegistries {
		args = append(args, "--insecure-registry", r)
	}
	if o.RegistryConfig != "" {
		args = append(args, "--registry-config", o.RegistryConfig)
	}
	if o.BackoffBase > 0 {
		args = append(args, "--restart-backoff", o.BackoffBase.String())
	}
	args = append(args, o.ExtraArgs...)
	logf, err := os.OpenFile(a.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	if o.Node != nil {
		cmd = exec.Command("nsenter", append([]string{"--net=" + o.Node.Path(), "--", bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a test's SIGKILL reaches agentd alone, and
	// containers (children of containerd's shims) are unaffected anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agentd: %w", err)
	}
	a.cmd = cmd
	a.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(a.exited) }()
	if err := a.waitReady(ctx, 60*time.Second); err != nil {
		a.Kill()
		return fmt.Errorf("agentd %s did not become ready: %w\n--- agentd log ---\n%s", a.Name, err, a.LogTail(40))
	}
	return nil
}

// agentdExitAddrInUse is agentd's exit status when an address it must
// listen on is taken (cmd/agentd).
const agentdExitAddrInUse = 3

// ErrListenInUse is StartAgent's error when agentd exited because its
// listen address was taken.
var ErrListenInUse = errors.New("agentd's listen address is in use")

// waitReady waits until agentd's standard health service reports the
// server as a whole SERVING on the local socket.
func (a *Agent) waitReady(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-a.exited:
			if a.cmd.ProcessState.ExitCode() == agentdExitAddrInUse {
				return false, fmt.Errorf("agentd exited: %w", ErrListenInUse)
			}
			return false, fmt.Errorf("agentd exited (%s)", a.cmd.ProcessState)
		default:
		}
		conn, err := a.LocalConn()
		if err != nil {
			last = err
			return false, nil
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		switch {
		case err != nil:
			last = err
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			last = fmt.Errorf("health: %s", resp.GetStatus())
		default:
			return true, nil
		}
		return false, nil
	})
	if wait.Interrupted(err) && last != nil {
		return fmt.Errorf("%w (last: %w)", err, last)
	}
	return err
}

// LocalConn connects over the plaintext unix socket.
func (a *Agent) LocalConn() (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+a.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Conn connects over mTLS with the admin client certificate.
func (a *Agent) Conn() (*grpc.ClientConn, error) {
	tc, err := a.ClientTLS(a.Opts.Certs.ClientCertPEM, a.Opts.Certs.ClientKeyPEM)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(a.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
}

// ClientTLS returns a client TLS config for this node with the given
// client certificate.
func (a *Agent) ClientTLS(certPEM, keyPEM []byte) (*tls.Config, error) {
	return pki.ClientTLSConfig(a.Opts.Certs.CA.CertPEM, certPEM, keyPEM, a.Name)
}

// Kill sends SIGKILL to agentd and waits for it to exit.
func (a *Agent) Kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

// Stop sends SIGTERM and waits (SIGKILL after 15 s).
func (a *Agent) Stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		a.Kill()
	}
}

// Restart starts agentd again with the same name, address and state.
func (a *Agent) Restart(ctx context.Context) error {
	a.Stop()
	return a.start(ctx)
}

// LogTail returns the last n lines of agentd's log.
func (a *Agent) LogTail(n int) string {
	b, _ := os.ReadFile(a.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AgentForTest starts agentd for a test and stops it (and removes its
// directory) when the test ends.
func AgentForTest(tb testing.TB, o AgentOptions) *Agent {
	tb.Helper()
	a, err := StartAgent(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		a.Stop()
		if a.fwd != nil {
			a.fwd.Close()
		}
		if tb.Failed() {
			tb.Logf("agentd %s log tail:\n%s", a.Name, a.LogTail(30))
		}
		// Pods left running leave their netns bind mounts (and secret
		// tmpfs) below the state dir; RemoveAll would stop at them.
		if err := UnmountUnder(a.Opts.Dir); err != nil {
			tb.Logf("agentd %s: %v", a.Name, err)
			return
		}
		// Volumes and size-limited empty_dirs keep their loop devices.
		if err := DetachLoopsUnder(a.Opts.Dir); err != nil {
			tb.Logf("agentd %s: %v", a.Name, err)
		}
		_ = os.RemoveAll(a.Opts.Dir)
	})
	return a
}
