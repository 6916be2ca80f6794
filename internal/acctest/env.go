package acctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// ImageRepo and ImageTag name the busybox test image in the registry.
const (
	ImageRepo = "herd/busybox"
	ImageTag  = "1.35"
)

// Env is everything a node needs around it: a private containerd, a
// registry serving the busybox image (so the real pull path runs) and a
// fresh CA with an admin client certificate.
type Env struct {
	// ID makes this Env's containerd namespaces unique: runc state and
	// cgroup paths are host-wide, keyed by namespace and container id.
	ID         string
	Dir        string
	Containerd *Containerd
	Registry   *Registry
	// Image is the busybox image reference in Registry.
	Image string
	Certs *Certs
}

// NewEnv starts a containerd and a registry and issues certificates.
// Registry options (e.g. a fixed address for the demo) are passed through.
func NewEnv(ctx context.Context, opts ...RegistryOption) (*Env, error) {
	if reason := containerdUnavailable(); reason != "" {
		return nil, fmt.Errorf("private containerd unavailable: %s", reason)
	}
	dir, err := ShortTempDir("herd-env-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, ID: filepath.Base(dir)[len("herd-env-"):]}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	e.Containerd, err = StartContainerd(ctx, filepath.Join(dir, "ctd"))
	if err != nil {
		return nil, err
	}
	e.Registry, err = StartRegistry(opts...)
	if err != nil {
		return nil, err
	}
	img, err := BusyboxImage()
	if err != nil {
		return nil, err
	}
	e.Image, err = e.Registry.Push(ctx, ImageRepo, ImageTag, img)
	if err != nil {
		return nil, err
	}
	e.Certs, err = NewCerts(filepath.Join(dir, "certs"))
	if err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// Close stops everything the Env started and removes its files.
func (e *Env) Close() {
	if e.Registry != nil {
		_ = e.Registry.Close()
	}
	if e.Containerd != nil {
		_ = e.Containerd.Stop()
	}
	_ = os.RemoveAll(e.Dir)
}

// AgentOptions returns options for an agentd on this Env.
func (e *Env) AgentOptions(name string) AgentOptions {
	return AgentOptions{
		Name:               name,
		Namespace:          "herd-" + name + "-" + e.ID,
		Containerd:         e.Containerd,
		Certs:              e.Certs,
		InsecureRegistries: []string{e.Registry.Host()},
	}
}

// Agent starts an agentd for a test; mutate adjusts its options.
func (e *Env) Agent(tb testing.TB, name string, mutate ...func(*AgentOptions)) *Agent {
	tb.Helper()
	o := e.AgentOptions(name)
	for _, m := range mutate {
		m(&o)
	}
	return AgentForTest(tb, o)
}

var shared struct {
	once sync.Once
	env  *Env
	err  error
}

// SharedEnv returns one Env per test binary, started on first use and
// closed by Main. It skips (or, under CI, fails) where containerd cannot run.
func SharedEnv(tb testing.TB) *Env {
	tb.Helper()
	RequireContainerd(tb)
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.env, shared.err = NewEnv(ctx)
	})
	if shared.err != nil {
		tb.Fatalf("start test environment: %v", shared.err)
	}
	return shared.env
}

// Main runs the tests and then tears down the shared Env, the SharedKube and
// the agentd binary built for them. Use it from TestMain:
// os.Exit(acctest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.env != nil {
		shared.env.Close()
	}
	closeSharedKube()
	if agentdPath != "" && os.Getenv("HERD_AGENTD_BIN") == "" {
		_ = os.RemoveAll(filepath.Dir(agentdPath))
	}
	return code
}
