// Package runtime is agentd's narrow gate to containerd. It creates, starts,
// stops and removes the containers of pods, pulls their images, and enforces
// herd's safety marker:
//
//   - every container and snapshot it creates carries the label
//     io.herd.managed=true (plus the pod, container and pod-uid labels), and
//     so do the images it pulls and the layer snapshots it unpacks;
//   - container IDs start with "herd-" (see ContainerID);
//   - it never kills, modifies or deletes a container, task or snapshot that
//     lacks io.herd.managed=true, whatever its ID: such calls fail with an
//     error wrapping ErrForeign that names the object.
//
// Everything happens in one containerd namespace (default "herd").
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// Labels of the safety marker.
const (
	// LabelManaged marks every object herd created. Its value is always
	// ManagedValue.
	LabelManaged = "io.herd.managed"
	// LabelPod names the pod a container or snapshot belongs to.
	LabelPod = "io.herd.pod"
	// LabelContainer names the container within the pod.
	LabelContainer = "io.herd.container"
	// LabelPodUID is the uid of the pod incarnation that created the object.
	LabelPodUID = "io.herd.pod-uid"
	// ManagedValue is the value of LabelManaged.
	ManagedValue = "true"
)

// Defaults.
const (
	DefaultNamespace   = "herd"
	DefaultSnapshotter = "overlayfs"
	DefaultRuntime     = "io.containerd.runc.v2"
	// IDPrefix starts every container ID (and container snapshot key) herd
	// creates.
	IDPrefix = "herd-"
)

// ErrForeign is wrapped by errors about objects that do not carry the
// safety marker: herd refuses to touch them.
var ErrForeign = errors.New("not managed by herd (no " + LabelManaged + "=" + ManagedValue + " label)")

// ErrNotFound is wrapped by errors about objects that do not exist. It is
// containerd's errdefs.ErrNotFound, so errdefs.IsNotFound works too.
var ErrNotFound = errdefs.ErrNotFound

// IsManaged reports whether labels carry the safety marker.
func IsManaged(labels map[string]string) bool { return labels[LabelManaged] == ManagedValue }

// Credentials authenticate to a registry (basic auth, or a token service
// that accepts them).
type Credentials struct {
	Username string
	Password string
}

// RegistryConfig says how to reach registries.
type RegistryConfig struct {
	// Insecure lists registry hosts ("127.0.0.1:5000", "registry.lan")
	// reached over plain HTTP. Every other host is reached over HTTPS only.
	Insecure []string
	// Auth holds credentials by registry host as it appears in image
	// references ("registry.example.com:5000"; "docker.io" for Docker Hub).
	Auth map[string]Credentials
}

// Config configures a Runtime.
type Config struct {
	// Address is containerd's gRPC socket.
	Address string
	// Namespace is the containerd namespace herd works in (default "herd").
	Namespace string
	// Snapshotter for container root filesystems (default "overlayfs").
	Snapshotter string
	// RuntimeName is the containerd runtime (default "io.containerd.runc.v2").
	RuntimeName string
	// RuntimeOptions are passed to the runtime with every container, e.g.
	// *options.Options{Root: ...} for runc (nil: the runtime's defaults).
	RuntimeOptions any
	// Registry configures image pulls.
	Registry RegistryConfig
	// PullTimeout and PullStallTimeout bound each image pull's waits on
	// its registry, unless the pull gives its own (WithPullTimeouts; zero:
	// DefaultPullTimeout, DefaultPullStallTimeout).
	PullTimeout, PullStallTimeout time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Runtime is a containerd client bound to herd's namespace and safety
// marker. It is safe for concurrent use.
type Runtime struct {
	client      *client.Client
	ns          string
	snapshotter string
	runtimeName string
	runtimeOpts any
	registry    RegistryConfig
	pullLimits  pullOpts // timeout and stall only
	log         *slog.Logger

	pullLocks keyedMutex

	imgMu    sync.Mutex
	imgCache map[string]*Image // by normalized ref: verified present and unpacked

	users userCache
}

// New connects to containerd. It does not wait for containerd to answer:
// use Ping or Version for that.
func New(cfg Config) (*Runtime, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("runtime: containerd address is required")
	}
	r := &Runtime{
		ns:          cfg.Namespace,
		snapshotter: cfg.Snapshotter,
		runtimeName: cfg.RuntimeName,
		runtimeOpts: cfg.RuntimeOptions,
		registry:    cfg.Registry,
		pullLimits:  pullOpts{timeout: DefaultPullTimeout, stall: DefaultPullStallTimeout},
		log:         cfg.Logger,
		imgCache:    map[string]*Image{},
	}
	if r.ns == "" {
		r.ns = DefaultNamespace
	}
	if err := identifiers.Validate(r.ns); err != nil {
		return nil, fmt.Errorf("runtime: namespace: %w", err)
	}
	if r.snapshotter == "" {
		r.snapshotter = DefaultSnapshotter
	}
	if r.runtimeName == "" {
		r.runtimeName = DefaultRuntime
	}
	WithPullTimeouts(cfg.PullTimeout, cfg.PullStallTimeout)(&r.pullLimits)
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", "runtime", "namespace", r.ns)
	c, err := client.New(cfg.Address,
		client.WithDefaultNamespace(r.ns),
		client.WithDefaultRuntime(r.runtimeName),
		client.WithTimeout(10*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("runtime: connect to containerd at %s: %w", cfg.Address, err)
	}
	r.client = c
	return r, nil
}

// Close closes the connection to containerd. Containers keep running.
func (r *Runtime) Close() error { return r.client.Close() }

// Namespace is the containerd namespace herd works in.
func (r *Runtime) Namespace() string { return r.ns }

// Snapshotter is the snapshotter used for container root filesystems.
func (r *Runtime) Snapshotter() string { return r.snapshotter }

// Client is the underlying containerd client, for read-only inspection
// (tests, health checks). Changes made through it bypass the safety marker.
func (r *Runtime) Client() *client.Client { return r.client }

// Context returns ctx bound to herd's containerd namespace.
func (r *Runtime) Context(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.ns)
}

// Version reports containerd's version ("1.6.20~ds1").
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.Context(ctx))
	if err != nil {
		return "", fmt.Errorf("containerd version: %w", err)
	}
	return v.Version, nil
}

// Ping reports whether containerd is serving.
func (r *Runtime) Ping(ctx context.Context) error {
	ok, err := r.client.IsServing(r.Context(ctx))
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	if !ok {
		return fmt.Errorf("containerd is not serving")
	}
	return nil
}

// keyedMutex serializes work per key (one pull per image at a time).
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
