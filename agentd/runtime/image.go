package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Image is an image present in containerd and unpacked into the
// snapshotter, ready for containers. It is immutable.
type Image struct {
	// Ref is the normalized reference ("docker.io/library/busybox:latest").
	Ref string
	// Digest is the digest of the image's target (manifest or index).
	Digest string
	// Config is the image's runtime configuration (entrypoint, cmd, env...).
	Config ocispec.ImageConfig

	img client.Image
}

// NormalizeImage validates ref like the API does (spec.ValidateImage) and
// returns its fully qualified form: "busybox" becomes
// "docker.io/library/busybox:latest"; a digest-only reference stays
// without a tag.
func NormalizeImage(ref string) (string, error) {
	if err := spec.ValidateImage(ref); err != nil {
		return "", err
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// PullOption qualifies one pull (EnsureImage, PullImage).
type PullOption func(*pullOpts)

type pullOpts struct {
	host  string
	creds *Credentials
	// timeout and stall bound the pull's waits on its registry
	// (pullwatch.go); the Runtime's unless WithPullTimeouts.
	timeout, stall time.Duration
}

// WithPullCredentials authenticates this pull to registry host (as in
// image references: "registry.example.com:5000", "docker.io") with c,
// instead of the node-level Registry.Auth of that host. Other hosts keep
// the node-level credentials. It is how a pod's image_pull_secret reaches
// the registry; the credentials are used for this pull only, never kept.
func WithPullCredentials(host string, c Credentials) PullOption {
	return func(o *pullOpts) { o.host, o.creds = host, &c }
}

// ImageHost returns the registry host of an image reference ("busybox" is
// on "docker.io").
func ImageHost(ref string) (string, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return "", err
	}
	return reference.Domain(mustParse(name)), nil
}

// SameRegistryHost reports whether two registry hosts name the same
// registry (Docker Hub goes by several names).
func SameRegistryHost(a, b string) bool {
	if a == b {
		return true
	}
	return slices.Contains(dockerHubHosts, a) && slices.Contains(dockerHubHosts, b)
}

// EnsureImage returns the image ref, pulling and unpacking it only when it
// is not already present and unpacked (the fast path costs one containerd
// call once the image was seen). pulled says whether it was pulled.
//
// Credentials given with WithPullCredentials are used only when a pull is
// needed: an image that is present is used as it is, whoever pulled it
// (Kubernetes' IfNotPresent, its default). So a pod without credentials
// can run an image that another pod pulled with credentials onto this
// node. Herd keeps it that simple on purpose; a registry's access control
// protects the registry, not a node's local copies.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, opts ...PullOption) (img *Image, pulled bool, err error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return nil, false, err
	}
	ctx = r.Context(ctx)
	if img, err := r.presentImage(ctx, name); err != nil || img != nil {
		return img, false, err
	}
	unlock, err := r.pullLocks.lockContext(ctx, name)
	if err != nil {
		return nil, false, fmt.Errorf("pull image %s: wait for its other pull: %w", name, err)
	}
	defer unlock()
	// Someone may have pulled it while this call waited for the lock.
	if img, err := r.presentImage(ctx, name); err != nil || img != nil {
		return img, false, err
	}
	img, err = r.pull(ctx, name, opts)
	return img, err == nil, err
}

// PullImage pulls ref from its registry even when it is present.
func (r *Runtime) PullImage(ctx context.Context, ref string, opts ...PullOption) (*Image, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return nil, err
	}
	ctx = r.Context(ctx)
	unlock, err := r.pullLocks.lockContext(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("pull image %s: wait for its other pull: %w", name, err)
	}
	defer unlock()
	return r.pull(ctx, name, opts)
}

// presentImage returns the image if containerd has it (unpacking it if
// needed, which needs no network), or nil if it must be pulled.
func (r *Runtime) presentImage(ctx context.Context, name string) (*Image, error) {
	stored, err := r.client.ImageService().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	r.imgMu.Lock()
	cached := r.imgCache[name]
	r.imgMu.Unlock()
	if cached != nil && cached.Digest == stored.Target.Digest.String() {
		return cached, nil
	}
	ci := client.NewImage(r.client, stored)
	unpacked, err := ci.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		// Content missing (an interrupted pull, or a partial GC): pull again.
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("image %s: check unpacked: %w", name, err)
	}
	if !unpacked {
		if err := ci.Unpack(ctx, r.snapshotter, withManagedSnapshots); err != nil {
			if errdefs.IsNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("image %s: unpack: %w", name, err)
		}
	}
	return r.remember(ctx, name, ci)
}

// withManagedSnapshots labels the layer snapshots an unpack creates.
func withManagedSnapshots(_ context.Context, c *client.UnpackConfig) error {
	c.SnapshotOpts = append(c.SnapshotOpts, snapshots.WithLabels(map[string]string{LabelManaged: ManagedValue}))
	return nil
}

// remember reads the image's config and caches the image as present.
func (r *Runtime) remember(ctx context.Context, name string, ci client.Image) (*Image, error) {
	cfg, err := ci.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: read config: %w", name, err)
	}
	img := &Image{Ref: name, Digest: ci.Target().Digest.String(), Config: cfg.Config, img: ci}
	r.imgMu.Lock()
	r.imgCache[name] = img
	r.imgMu.Unlock()
	return img, nil
}

// forgetImage drops name from the cache, e.g. after a container create
// found its layers missing.
func (r *Runtime) forgetImage(name string) {
	r.imgMu.Lock()
	delete(r.imgCache, name)
	r.imgMu.Unlock()
}

func (r *Runtime) pull(ctx context.Context, name string, opts []PullOption) (*Image, error) {
	o := pullOpts{timeout: r.pullLimits.timeout, stall: r.pullLimits.stall}
	for _, opt := range opts {
		opt(&o)
	}
	host := reference.Domain(mustParse(name))
	r.log.Info("pulling image", "image", name, "pull_credentials", o.creds != nil, "stall_timeout", o.stall, "timeout", o.timeout)
	lctx, release, err := r.pullLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", name, err)
	}
	defer release()
	pctx, cancel := context.WithCancelCause(lctx)
	defer cancel(nil)
	watch := newPullWatch(host, name, o.timeout, o.stall, time.Now())
	go watch.run(pctx, cancel)
	ci, err := r.client.Pull(pctx, name,
		client.WithResolver(watch.resolver(r.resolver(o))),
		client.WithPullUnpack,
		client.WithPullSnapshotter(r.snapshotter, snapshots.WithLabels(map[string]string{LabelManaged: ManagedValue})),
		client.WithPullLabel(LabelManaged, ManagedValue),
	)
	if err != nil {
		// The watchdog's verdict says more than the canceled request.
		if cause := context.Cause(pctx); errors.Is(cause, ErrPullStalled) || errors.Is(cause, ErrPullTimedOut) {
			return nil, cause
		}
		return nil, fmt.Errorf("pull image %s: %w%s", name, err, r.pullHint(host, err, o))
	}
	return r.remember(ctx, name, ci)
}

// pullLease holds what a pull downloads until it is done. client.Pull
// would take its own lease and delete it with the pull's context, which
// fails once that is canceled (a stalled pull): the lease, and the partial
// download it holds, would stay for its whole expiry. This one is deleted
// whatever became of the pull's context.
func (r *Runtime) pullLease(ctx context.Context) (context.Context, func(), error) {
	ls := r.client.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(24*time.Hour))
	if err != nil {
		return nil, nil, fmt.Errorf("create lease: %w", err)
	}
	return leases.WithLease(ctx, l.ID), func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := ls.Delete(dctx, l); err != nil {
			r.log.Warn("delete pull lease", "lease", l.ID, "err", err)
		}
	}, nil
}

// pullHint explains the two most common pull failures in herd's terms. It
// goes by the errors' types, not their text: net/http's scheme mismatch for
// a plain-HTTP registry reached over HTTPS, and the resolver's authorization
// failure or the registry's 401/403 status for refused credentials.
func (r *Runtime) pullHint(host string, err error, o pullOpts) string {
	switch {
	case errors.Is(err, http.ErrSchemeMismatch):
		return fmt.Sprintf(" (herd reaches %s over HTTPS because it is not listed as an insecure registry)", host)
	case authRefused(err):
		if o.creds != nil && SameRegistryHost(o.host, host) {
			return fmt.Sprintf(" (the pod's image pull secret's credentials for registry %s were refused)", host)
		}
		if _, ok := r.credentials(host, pullOpts{}); !ok {
			return fmt.Sprintf(" (no credentials are configured for registry %s)", host)
		}
		return fmt.Sprintf(" (the credentials configured for registry %s were refused)", host)
	}
	return ""
}

// authRefused reports whether a pull failed for want of valid credentials:
// the resolver gave up authorizing (no credentials for a basic-auth
// registry, a refused bearer token), or the registry or its token service
// answered 401 Unauthorized or 403 Forbidden.
func authRefused(err error) bool {
	if errors.Is(err, docker.ErrInvalidAuthorization) {
		return true
	}
	var st remoteerrors.ErrUnexpectedStatus
	return errors.As(err, &st) && (st.StatusCode == http.StatusUnauthorized || st.StatusCode == http.StatusForbidden)
}

func mustParse(name string) reference.Named {
	n, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		panic(err) // name was normalized by NormalizeImage
	}
	return n
}

// dockerHubHosts are the names Docker Hub goes by.
var dockerHubHosts = []string{"docker.io", "registry-1.docker.io", "index.docker.io"}

// credentials finds the credentials for a registry host: the pull's own
// for its host, else the node-level ones.
func (r *Runtime) credentials(host string, o pullOpts) (Credentials, bool) {
	if o.creds != nil && SameRegistryHost(o.host, host) {
		return *o.creds, true
	}
	if c, ok := r.registry.Auth[host]; ok {
		return c, true
	}
	if slices.Contains(dockerHubHosts, host) {
		for _, h := range dockerHubHosts {
			if c, ok := r.registry.Auth[h]; ok {
				return c, true
			}
		}
	}
	return Credentials{}, false
}

// resolver builds the registry resolver: plain HTTP only for the hosts in
// Registry.Insecure, basic or token auth from the pull's credentials or
// Registry.Auth.
func (r *Runtime) resolver(o pullOpts) remotes.Resolver {
	authorizer := docker.NewDockerAuthorizer(docker.WithAuthCreds(func(host string) (string, string, error) {
		c, _ := r.credentials(host, o)
		return c.Username, c.Password, nil
	}))
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithAuthorizer(authorizer),
			docker.WithPlainHTTP(func(host string) (bool, error) {
				return slices.Contains(r.registry.Insecure, host), nil
			}),
		),
	})
}

// ImageManaged reports whether the image record ref carries the marker
// (herd pulled it).
func (r *Runtime) ImageManaged(ctx context.Context, ref string) (bool, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return false, err
	}
	img, err := r.client.ImageService().Get(r.Context(ctx), name)
	if err != nil {
		return false, fmt.Errorf("image %s: %w", name, err)
	}
	return IsManaged(img.Labels), nil
}
