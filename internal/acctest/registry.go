package acctest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryRealm is the realm of the registry's basic-auth challenge.
const RegistryRealm = "herd-test"

// Registry is an in-process OCI distribution registry (go-containerregistry's
// pkg/registry, blobs in memory) served over plain HTTP on a loopback
// address. Create it with StartRegistry or RegistryForTest.
type Registry struct {
	host     string
	username string
	password string
	server   *http.Server
	served   chan struct{} // closed when Serve has returned

	closeOnce sync.Once
	closeErr  error
}

type registryConfig struct {
	addr     string
	username string
	password string
	logger   *slog.Logger
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryConfig)

// WithBasicAuth makes the registry demand HTTP basic auth with this user
// and password on every request. A missing or wrong Authorization header
// gets 401 with `WWW-Authenticate: Basic realm="herd-test"`, the challenge
// containerd's docker authorizer and go-containerregistry's transport
// answer with basic credentials.
func WithBasicAuth(username, password string) RegistryOption {
	return func(c *registryConfig) { c.username, c.password = username, password }
}

// WithAddr sets the listen address (default "127.0.0.1:0", a free port).
// A fixed port such as "127.0.0.1:5050" suits a long-running demo. The
// host must be a loopback IP.
func WithAddr(addr string) RegistryOption {
	return func(c *registryConfig) { c.addr = addr }
}

// WithRegistryLogger sends the registry's request log to l at debug level
// (default: slog.Default()).
func WithRegistryLogger(l *slog.Logger) RegistryOption {
	return func(c *registryConfig) { c.logger = l }
}

// StartRegistry starts an in-process registry, serving over plain HTTP
// until Close.
func StartRegistry(opts ...RegistryOption) (*Registry, error) {
	cfg := registryConfig{addr: "127.0.0.1:0"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	host, _, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("start registry: address %q: %w", cfg.addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("start registry: address %q: host must be a loopback IP", cfg.addr)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}

	log := cfg.logger.With("component", "acctest.registry", "host", ln.Addr().String())
	handler := ggcrregistry.New(
		ggcrregistry.Logger(slog.NewLogLogger(log.Handler(), slog.LevelDebug)),
	)
	if cfg.username != "" || cfg.password != "" {
		handler = basicAuth(handler, cfg.username, cfg.password)
	}
	r := &Registry{
		host:     ln.Addr().String(),
		username: cfg.username,
		password: cfg.password,
		server: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		served: make(chan struct{}),
	}
	go func() {
		defer close(r.served)
		if err := r.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("registry stopped serving", "err", err)
		}
	}()
	log.Debug("registry serving", "basic_auth", cfg.username != "")
	return r, nil
}

// RegistryForTest starts a registry and registers its Close with
// tb.Cleanup.
func RegistryForTest(tb testing.TB, opts ...RegistryOption) *Registry {
	tb.Helper()
	r, err := StartRegistry(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("close registry: %v", err)
		}
	})
	return r
}

// Host is the registry's "127.0.0.1:PORT", the host part of its image
// references.
func (r *Registry) Host() string { return r.host }

// Credentials returns the basic-auth user and password, empty without
// WithBasicAuth.
func (r *Registry) Credentials() (username, password string) { return r.username, r.password }

// Ref returns the reference "HOST/repo:tag" for an image in this registry.
func (r *Registry) Ref(repo, tag string) string { return r.host + "/" + repo + ":" + tag }

// Push uploads img as repo:tag (with the registry's own credentials, if
// any) and returns its reference "HOST/repo:tag".
func (r *Registry) Push(ctx context.Context, repo, tag string, img v1.Image) (string, error) {
	ref, err := name.NewTag(r.Ref(repo, tag), name.Insecure, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("push %s:%s: %w", repo, tag, err)
	}
	auth := authn.Anonymous
	if r.username != "" || r.password != "" {
		auth = &authn.Basic{Username: r.username, Password: r.password}
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuth(auth)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.String(), nil
}

// Resolver returns a containerd resolver for this registry: plain HTTP,
// and the registry's own credentials if it has any.
func (r *Registry) Resolver() remotes.Resolver {
	return NewResolver(r.host, r.username, r.password)
}

// Close stops the server, dropping open connections, and waits for it to
// stop. It is safe to call more than once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		if err := r.server.Close(); err != nil {
			r.closeErr = fmt.Errorf("close registry %s: %w", r.host, err)
		}
		<-r.served
	})
	return r.closeErr
}

// basicAuth guards next with HTTP basic auth.
func basicAuth(next http.Handler, username, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(username)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(p), []byte(password)) == 1
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+RegistryRealm+`"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}` + "\n"))
			return
		}
		next.ServeHTTP(w, req)
	})
}
