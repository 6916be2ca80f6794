package acctest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	// containerdStartTimeout bounds how long StartContainerd waits for the
	// daemon to report SERVING. A healthy start takes about a second.
	containerdStartTimeout = 20 * time.Second
	// containerdTermTimeout is how long Stop waits after SIGTERM before it
	// sends SIGKILL.
	containerdTermTimeout = 10 * time.Second
	// taskCleanupTimeout bounds killing and deleting one task during Stop.
	taskCleanupTimeout = 10 * time.Second
	// shimKillTimeout bounds killing leftover shims during Stop.
	shimKillTimeout = 10 * time.Second
	// maxUnixSocketPath is the usable length of sun_path on Linux (108 bytes
	// including the terminating NUL).
	maxUnixSocketPath = 107
	// runcRuntime is the runtime (shim) every harness container uses.
	runcRuntime = "io.containerd.runc.v2"
)

// Containerd is a private containerd daemon whose root, state and socket all
// live in Dir. Create it with StartContainerd or ContainerdForTest and always
// call Stop, which kills everything the instance started and removes Dir.
//
// The exported fields are informational; do not modify them.
type Containerd struct {
	// Dir holds everything the instance owns: config.toml, containerd.log,
	// root/, state/, runc/ and the sockets. Stop removes it.
	Dir string
	// Address is the path of the gRPC unix socket (Dir/containerd.sock).
	Address string
	// Namespace is a containerd namespace unique to this instance
	// ("acctest-" plus random hex). Using it (see Context) keeps cgroup paths
	// (/<namespace>/<id>) apart from other containerd instances on the host
	// that happen to use the same container IDs.
	Namespace string
	// LogPath is the file that receives containerd's stdout and stderr.
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	client *client.Client
	log    *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// ShortTempDir creates a fresh directory directly under /tmp (not $TMPDIR,
// which may be long) whose name starts with prefix. containerd's socket
// paths must stay below 108 bytes, and t.TempDir() paths are usually too
// long, so use this for the dir passed to StartContainerd.
func ShortTempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		return "", fmt.Errorf("create short temp dir: %w", err)
	}
	return dir, nil
}

// StartContainerd starts a private containerd (the "containerd" binary on
// PATH) whose root, state and sockets all live in dir, and waits (at most
// 20 s, or until ctx is done) until it reports SERVING.
//
// dir must be absent or empty, and short: the gRPC socket is
// dir/containerd.sock and its ttrpc twin dir/containerd.sock.ttrpc, and a
// unix socket path must be shorter than 108 bytes. Use ShortTempDir.
// The instance owns dir from now on: Stop removes it, and so does a failed
// StartContainerd (its error carries the tail of containerd's log).
//
// The configuration disables the CRI plugin, tracing and the snapshotters
// that are irrelevant here (aufs, btrfs, zfs, devmapper); overlayfs and
// native remain, and the harness uses overlayfs. (The legacy v1 runtime
// stays: containerd 1.6's tasks service refuses to load without it.)
//
// ctx only bounds the start; the daemon keeps running until Stop.
func StartContainerd(ctx context.Context, dir string) (*Containerd, error) {
	began := time.Now()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	address := filepath.Join(dir, "containerd.sock")
	if n := len(address + ".ttrpc"); n > maxUnixSocketPath {
		return nil, fmt.Errorf("start containerd: socket path %q.ttrpc is %d bytes, the limit is %d: use a shorter dir (see ShortTempDir)", address, n, maxUnixSocketPath)
	}
	if err := ensureEmptyDir(dir); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}

	c := &Containerd{
		Dir:       dir,
		Address:   address,
		Namespace: "acctest-" + randomHex(4),
		LogPath:   filepath.Join(dir, "containerd.log"),
		exited:    make(chan struct{}),
	}
	c.log = slog.Default().With("component", "acctest.containerd", "address", address)

	fail := func(err error) (*Containerd, error) {
		err = fmt.Errorf("start containerd: %w%s", err, c.logTail())
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}

	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(containerdConfig(dir, address)), 0o600); err != nil {
		return fail(fmt.Errorf("write config: %w", err))
	}
	if err := c.launch(bin, configPath); err != nil {
		return fail(err)
	}

	if err := c.waitServing(ctx); err != nil {
		return fail(err)
	}
	c.log.Debug("containerd serving", "took", time.Since(began).Round(time.Millisecond))
	return c, nil
}

// launch starts the daemon process with the given config and reaps it in
// the background (closing c.exited).
func (c *Containerd) launch(bin, configPath string) error {
	c.exited = make(chan struct{})
	logFile, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		close(c.exited)
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(bin, "--config", configPath)
	cmd.Dir = c.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a ^C in the terminal must not kill the daemon
		// before Stop had a chance to clean up through its API.
		Setpgid: true,
		// But do not outlive the test binary.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		close(c.exited)
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	c.cmd = cmd
	exited := c.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.log = c.log.With("pid", cmd.Process.Pid)
	return nil
}

// ContainerdForTest starts a private containerd in a fresh short temp dir
// and registers its Stop with tb.Cleanup (a failing Stop fails the test).
// Without root, or without the containerd, containerd-shim-runc-v2 or runc
// binaries, it skips the test, or fails it when the CI environment variable
// is set, so that CI cannot silently skip the real-system tests (see
// RequireContainerd).
func ContainerdForTest(tb testing.TB) *Containerd {
	tb.Helper()
	RequireContainerd(tb)
	dir, err := ShortTempDir("herd-ctd-")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerdStartTimeout+5*time.Second)
	defer cancel()
	began := time.Now()
	c, err := StartContainerd(ctx, dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("private containerd pid %d at %s ready in %s", c.PID(), c.Address, time.Since(began).Round(time.Millisecond))
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("stop private containerd: %v", err)
		}
	})
	return c
}

// RequireContainerd skips the test, or fails it when the CI environment
// variable is set, unless a private containerd can run here: root, and the
// containerd, containerd-shim-runc-v2 and runc binaries on PATH.
// ContainerdForTest calls it; call it yourself before StartContainerd.
func RequireContainerd(tb testing.TB) {
	tb.Helper()
	if reason := containerdUnavailable(); reason != "" {
		if os.Getenv("CI") != "" {
			tb.Fatalf("private containerd unavailable in CI: %s", reason)
		}
		tb.Skipf("private containerd unavailable: %s", reason)
	}
}

// containerdUnavailable says why a private containerd cannot run here, or
// returns "" when it can.
func containerdUnavailable() string {
	if os.Geteuid() != 0 {
		return "needs root"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("%s not found on PATH (apt-get install containerd runc)", bin)
		}
	}
	return ""
}

// Client returns the instance's containerd v2 client. It is owned by c
// (Stop closes it); do not Close it yourself. Every call needs a
// namespace in its context: see Context.
func (c *Containerd) Client() *client.Client { return c.client }

// Context returns ctx carrying c.Namespace, unless ctx already names a
// containerd namespace.
func (c *Containerd) Context(ctx context.Context) context.Context {
	if _, ok := namespaces.Namespace(ctx); ok {
		return ctx
	}
	return namespaces.WithNamespace(ctx, c.Namespace)
}

// PID is the process ID of the containerd daemon.
func (c *Containerd) PID() int { return c.cmd.Process.Pid }

// RuncRoot is the runc state directory (Dir/runc) that RuntimeOpt hands to
// the shim, instead of the host-wide /run/containerd/runc.
func (c *Containerd) RuncRoot() string { return filepath.Join(c.Dir, "runc") }

// RuntimeOpt selects the io.containerd.runc.v2 runtime with runc's state
// kept in RuncRoot. Pass it to NewContainer: with the default options runc
// keeps its state in /run/containerd/runc/<namespace>/<id>, which every
// containerd on the host shares, so two instances that run the same
// namespace and container ID would collide there, and a crashed test would
// leave it behind.
func (c *Containerd) RuntimeOpt() client.NewContainerOpts {
	return client.WithRuntime(runcRuntime, &options.Options{Root: c.RuncRoot()})
}

// Stop tears the instance down and leaves nothing behind:
//
//  1. through the API, in every namespace: kill (SIGKILL) and delete every
//     task, delete every container together with its snapshot;
//  2. SIGTERM the daemon, SIGKILL it after 10 s;
//  3. SIGKILL every shim still serving this instance (found by the
//     -address argument in /proc/*/cmdline) and the processes it reaps;
//  4. remove the (empty) cgroups left under /<Namespace>;
//  5. unmount whatever is still mounted under Dir, remove Dir.
//
// Stop keeps going after an error and returns all of them joined. It is
// safe to call more than once (later calls return the first result).
func (c *Containerd) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Containerd) stop() error {
	began := time.Now()
	var errs []error

	if c.client != nil && c.running() {
		if err := c.cleanupThroughAPI(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.client != nil {
		_ = c.client.Close()
	}
	if err := c.stopDaemon(); err != nil {
		errs = append(errs, err)
	}
	if err := c.killShims(); err != nil {
		errs = append(errs, err)
	}
	removeNamespaceCgroups(c.Namespace)
	if err := UnmountUnder(c.Dir); err != nil {
		errs = append(errs, err)
	} else if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop containerd %s: %w", c.Address, errors.Join(errs...))
	}
	c.log.Debug("containerd stopped", "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// running reports whether the daemon process has not exited yet.
func (c *Containerd) running() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// cleanupThroughAPI kills and deletes every task and deletes every
// container (and its snapshot) in every namespace.
func (c *Containerd) cleanupThroughAPI() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nss, err := c.client.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var errs []error
	for _, ns := range nss {
		nsCtx := namespaces.WithNamespace(ctx, ns)
		containers, err := c.client.Containers(nsCtx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list containers in %s: %w", ns, err))
			continue
		}
		for _, ctr := range containers {
			if err := deleteContainer(nsCtx, ctr); err != nil {
				errs = append(errs, fmt.Errorf("namespace %s: %w", ns, err))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteContainer SIGKILLs and deletes the container's task, if any, then
// deletes the container and its snapshot.
func deleteContainer(ctx context.Context, ctr client.Container) error {
	ctx, cancel := context.WithTimeout(ctx, taskCleanupTimeout)
	defer cancel()
	task, err := ctr.Task(ctx, nil)
	switch {
	case err == nil:
		// WithProcessKill sends SIGKILL to all the task's processes and
		// waits for the exit before the delete.
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !isNotFound(err) {
			// The shim may exit under the delete ("ttrpc: closed") when the
			// kill ends its last process: look again before failing.
			if err := retryTaskDelete(ctx, ctr); err != nil {
				return fmt.Errorf("delete task %s: %w", ctr.ID(), err)
			}
		}
	case !isNotFound(err):
		return fmt.Errorf("load task %s: %w", ctr.ID(), err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete container %s: %w", ctr.ID(), err)
	}
	return nil
}

// retryTaskDelete deletes a container's task again, up to five times
// 200 ms apart (while ctx lasts), until it is gone.
func retryTaskDelete(ctx context.Context, ctr client.Container) error {
	const attempts = 5
	var (
		tried int
		last  error
	)
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, false, func(ctx context.Context) (bool, error) {
		task, err := ctr.Task(ctx, nil)
		if err == nil {
			_, err = task.Delete(ctx, client.WithProcessKill)
		}
		if err == nil || isNotFound(err) {
			return true, nil
		}
		last, tried = err, tried+1
		if tried == attempts {
			return false, err
		}
		return false, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// stopDaemon sends SIGTERM, then SIGKILL after containerdTermTimeout, and
// waits for the process to be reaped.
func (c *Containerd) stopDaemon() error {
	if !c.running() {
		return nil
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal containerd: %w", err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(containerdTermTimeout):
	}
	c.log.Warn("containerd ignored SIGTERM, sending SIGKILL", "waited", containerdTermTimeout)
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill containerd: %w", err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("containerd pid %d survived SIGKILL", c.PID())
	}
}

// killShims SIGKILLs every shim left serving this instance. Normally there
// is none: deleting a task makes its shim exit. A leftover shim means a
// task the API could not reach (containerd crashed, or timed out), so its
// children, the container processes, are killed first.
func (c *Containerd) killShims() error {
	var leftovers []shimTask
	defer func() {
		for _, t := range leftovers {
			t.removeHostState(c.Address)
		}
	}()
	// Stop has no context of its own: the shims get ten seconds.
	ctx, cancel := context.WithTimeout(context.Background(), shimKillTimeout)
	defer cancel()
	var shims []int
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		if shims, err = ShimProcesses(c.Address); err != nil || len(shims) == 0 {
			return err == nil, err
		}
		for _, pid := range shims {
			if args, err := procArgs(pid); err == nil {
				leftovers = append(leftovers, shimTask{flagValue(args, "namespace"), flagValue(args, "id")})
			}
			for _, child := range childPIDs(pid) {
				c.log.Warn("killing leftover container process", "shim", pid, "process", child)
				_ = syscall.Kill(child, syscall.SIGKILL)
			}
			c.log.Warn("killing leftover shim", "shim", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("shims still alive after SIGKILL: %v", shims)
	}
	return err
}

// shimTask names the task a leftover shim served.
type shimTask struct{ namespace, id string }

// removeHostState removes what a SIGKILLed shim leaves outside Dir: its
// socket in /run/containerd/s (named after address, namespace and ID, as
// containerd's shim package does) and the task's cgroup (the default spec
// puts it at /<namespace>/<id>). Best effort: errors are ignored.
func (t shimTask) removeHostState(address string) {
	if t.namespace == "" || t.id == "" {
		return
	}
	sum := sha256.Sum256([]byte(filepath.Join(address, t.namespace, t.id)))
	_ = os.Remove(filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:])))
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", t.namespace, t.id))
	if unified := filepath.Join("/sys/fs/cgroup", t.namespace, t.id); dirExists(unified) {
		cgroups = append(cgroups, unified)
	}
	for _, cg := range cgroups {
		_ = os.Remove(cg) // rmdir: succeeds once the cgroup has no processes
	}
}

// removeNamespaceCgroups removes the empty cgroups the default spec
// created for namespace ns (/<ns>/<id> in every hierarchy, v1 and v2):
// runc removes a task's own cgroup, but not the /<ns> parent. Only call it
// for a namespace no other containerd uses (c.Namespace), since another
// instance may be creating a cgroup under it. Best effort: rmdir fails on
// cgroups that still hold processes, and errors are ignored.
func removeNamespaceCgroups(ns string) {
	if ns == "" || strings.ContainsAny(ns, "/.") {
		return
	}
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
	if unified := filepath.Join("/sys/fs/cgroup", ns); dirExists(unified) {
		roots = append(roots, unified)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // children before parents
			_ = os.Remove(dirs[i])
		}
	}
}

func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// waitServing waits until the daemon answers its health check with
// SERVING, the daemon exits, ctx is done or containerdStartTimeout passes.
func (c *Containerd) waitServing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, containerdStartTimeout)
	defer cancel()
	// Wait for the socket first: gRPC backs off for a second after a failed
	// dial, which would double the start time.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(c.Address); err == nil {
			break
		}
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited before serving: %s", c.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("wait for socket %s: %w", c.Address, ctx.Err())
		case <-tick.C:
		}
	}
	cl, err := client.New(c.Address)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c.client = cl
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 500*time.Millisecond)
		serving, err := cl.IsServing(attempt)
		cancelAttempt()
		if serving {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited before serving: %s", c.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("wait for containerd to serve (last error: %w): %w", err, ctx.Err())
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of containerd's log, formatted to be
// appended to an error, or "" if there is none.
func (c *Containerd) logTail() string {
	data, err := os.ReadFile(c.LogPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	const keep = 4096
	if len(data) > keep {
		data = data[len(data)-keep:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return "\n--- tail of " + c.LogPath + " ---\n" + strings.TrimRight(string(data), "\n")
}

// containerdConfig renders config.toml (version 2, as containerd 1.6
// understands it) for an instance living in dir.
func containerdConfig(dir, address string) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	return `# Written by herd's acctest harness for a private containerd.
version = 2
root = ` + q(filepath.Join(dir, "root")) + `
state = ` + q(filepath.Join(dir, "state")) + `
temp = ` + q(filepath.Join(dir, "tmp")) + `
plugin_dir = ""
imports = []
required_plugins = []
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
oom_score = 0

[grpc]
  address = ` + q(address) + `

[ttrpc]
  address = ` + q(address+".ttrpc") + `

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ` + q(filepath.Join(dir, "opt")) + `
  [plugins."io.containerd.monitor.v1.cgroups"]
    no_prometheus = true
`
}

// ensureEmptyDir creates dir, or accepts it if it exists and is empty. It
// refuses a non-empty dir because Stop removes the directory.
func ensureEmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("dir %s is not empty (the instance removes it on Stop)", dir)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
