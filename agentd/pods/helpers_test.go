package pods

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"golang.org/x/sys/unix"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// env is a private containerd, a registry serving busybox, a store and a
// log dir: everything a Manager needs.
type env struct {
	ctd    *acctest.Containerd
	reg    *acctest.Registry
	ref    string // busybox in reg
	rt     *runtime.Runtime
	st     *store.Store
	logDir string
}

func newEnv(tb testing.TB, regOpts ...acctest.RegistryOption) *env {
	tb.Helper()
	e := &env{ctd: acctest.ContainerdForTest(tb), reg: acctest.RegistryForTest(tb, regOpts...)}
	img, err := acctest.BusyboxImage()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.ref, err = e.reg.Push(ctx, "herd/busybox", "1.35", img); err != nil {
		tb.Fatal(err)
	}
	user, pass := e.reg.Credentials()
	cfg := e.runtimeConfig()
	if user != "" {
		cfg.Registry.Auth = map[string]runtime.Credentials{e.reg.Host(): {Username: user, Password: pass}}
	}
	e.rt = e.newRuntime(tb, cfg)
	dir := tb.TempDir()
	e.logDir = filepath.Join(dir, "logs")
	// Pods left running keep their secret tmpfs mounted: unmount them
	// before the temporary directory goes.
	tb.Cleanup(func() { unmountAll(filepath.Join(dir, "secrets")) })
	if e.st, err = store.Open(filepath.Join(dir, "agentd.db")); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.st.Close() })
	return e
}

func (e *env) runtimeConfig() runtime.Config {
	return runtime.Config{
		Address:        e.ctd.Address,
		Namespace:      e.ctd.Namespace,
		RuntimeOptions: &options.Options{Root: e.ctd.RuncRoot()},
		Registry:       runtime.RegistryConfig{Insecure: []string{e.reg.Host()}},
	}
}

func (e *env) newRuntime(tb testing.TB, cfg runtime.Config) *runtime.Runtime {
	tb.Helper()
	rt, err := runtime.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close() })
	return rt
}

// config is the Manager config tests use: fast back-off.
func (e *env) config(tb testing.TB) Config {
	return Config{
		Runtime:     e.rt,
		Store:       e.st,
		LogDir:      e.logDir,
		BackoffBase: 200 * time.Millisecond,
		BackoffMax:  time.Second,
		Logger:      testLogger(tb),
	}
}

// manager starts a Manager; Close is registered with Cleanup.
func (e *env) manager(tb testing.TB, mutate ...func(*Config)) *Manager {
	tb.Helper()
	cfg := e.config(tb)
	for _, f := range mutate {
		f(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	return m
}

// pod is a one-container pod spec running args in busybox.
func (e *env) pod(name, policy string, args ...string) *herdv1.PodSpec {
	return &herdv1.PodSpec{
		Name:          name,
		RestartPolicy: policy,
		Containers:    []*herdv1.ContainerSpec{{Name: "main", Image: e.ref, Command: args}},
	}
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// waitFor waits (at most 30 s) for cond on pod name.
func waitFor(tb testing.TB, m *Manager, name string, what string, cond func(*herdv1.Pod) bool) *herdv1.Pod {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := m.WaitFor(ctx, name, cond)
	if err != nil {
		tb.Fatalf("waiting for pod %s to be %s: %v; last status: %v", name, what, err, pod.GetStatus())
	}
	return pod
}

func phaseIs(phase string) func(*herdv1.Pod) bool {
	return func(p *herdv1.Pod) bool { return p.GetStatus().GetPhase() == phase }
}

// allRunning holds when every container runs.
func allRunning(p *herdv1.Pod) bool {
	cs := p.GetStatus().GetContainers()
	for _, c := range cs {
		if c.GetState() != StateRunning {
			return false
		}
	}
	return len(cs) > 0
}

// logs returns the whole log of a container.
func logs(tb testing.TB, m *Manager, pod, container string, tailLines int64) string {
	tb.Helper()
	var buf bytes.Buffer
	err := m.Logs(testContext(tb), pod, container, false, tailLines, func(_ string, data []byte) error {
		buf.Write(data)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return buf.String()
}

// testLogger writes to the test log, and stays quiet after the test.
func testLogger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && os.Getenv("HERD_TEST_QUIET") == "" {
		w.tb.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// eventually polls cond for up to 10 s.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unmountAll detaches the mounts directly under dir.
func unmountAll(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		_ = unix.Unmount(filepath.Join(dir, de.Name()), unix.MNT_DETACH)
	}
}
