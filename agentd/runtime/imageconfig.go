package runtime

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultUnixEnv is containerd's environment for images without one.
var defaultUnixEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// userCache remembers, per image digest, the process user that
// oci.WithImageConfig resolved. Resolving it mounts the container's root
// filesystem to read /etc/passwd and /etc/group (about 4 ms per container
// here); the result only depends on the image's content and config, so
// later containers of the same image reuse it.
type userCache struct {
	mu    sync.Mutex
	users map[string]specs.User
}

func (c *userCache) get(digest string) (specs.User, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.users[digest]
	if ok {
		u.AdditionalGids = slices.Clone(u.AdditionalGids)
	}
	return u, ok
}

func (c *userCache) put(digest string, u specs.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[string]specs.User{}
	}
	u.AdditionalGids = slices.Clone(u.AdditionalGids)
	c.users[digest] = u
}

// withImageConfig applies the image's config to the spec exactly as
// oci.WithImageConfig does on Linux (environment, entrypoint and cmd,
// working directory, user and supplementary groups), using the cached user
// of the image when there is one.
func (r *Runtime) withImageConfig(img *Image) oci.SpecOpts {
	if u, ok := r.users.get(img.Digest); ok {
		return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			if s.Process == nil {
				s.Process = &specs.Process{}
			}
			cfg := img.Config
			defaults := cfg.Env
			if len(defaults) == 0 {
				defaults = defaultUnixEnv
			}
			s.Process.Env = mergeEnv(defaults, s.Process.Env)
			s.Process.Args = append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
			s.Process.Cwd = cfg.WorkingDir
			if s.Process.Cwd == "" {
				s.Process.Cwd = "/"
			}
			s.Process.User = u
			return nil
		}
	}
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		if err := oci.WithImageConfig(img.img)(ctx, client, c, s); err != nil {
			return err
		}
		if s.Process != nil {
			r.users.put(img.Digest, s.Process.User)
		}
		return nil
	}
}

// mergeEnv returns defaults with overrides replacing entries of the same
// name or appended; an override without "=" removes the name (containerd's
// replaceOrAppendEnvValues).
func mergeEnv(defaults, overrides []string) []string {
	out := slices.Clone(defaults)
	index := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	for _, o := range overrides {
		k, _, ok := strings.Cut(o, "=")
		i, exists := index[k]
		switch {
		case !ok && exists:
			out[i] = ""
		case !ok:
		case exists:
			out[i] = o
		default:
			index[k] = len(out)
			out = append(out, o)
		}
	}
	return slices.DeleteFunc(out, func(e string) bool { return e == "" })
}
