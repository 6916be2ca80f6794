package spec

import (
	"fmt"
	"path"
	"slices"
	"strings"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Secrets in pods: secret_mounts and secret_env of containers and the
// pod's image_pull_secret. These rules hold without the secrets' data; the
// checks that need the data (the secret exists on the node, a listed key
// is in it, the pull secret is of type registry for the image's host) are
// agentd's, at apply time. No error here carries a secret's value: the
// spec holds none, only references, key names and paths.
const (
	// DefaultSecretNamespace is the namespace of a reference without one.
	DefaultSecretNamespace = "default"
	// SecretMountRoot is the parent of a mount's default path:
	// /run/secrets/<name>.
	SecretMountRoot = "/run/secrets"
	// DefaultSecretMode is the mode of secret files unless mode is set.
	DefaultSecretMode = 0o400
	// MaxSecretMode is the largest mode: no setuid, setgid or sticky bits.
	MaxSecretMode = 0o777
	// MaxSecretMounts bounds the secret mounts of one container.
	MaxSecretMounts = 32
	// MaxSecretsPerContainer bounds the distinct secrets one container
	// uses (mounts, env and the pod's pull secret), which keeps the
	// record of their checksums on the container small.
	MaxSecretsPerContainer = 64
	maxMountPathLength     = 1024
)

// SecretRef is a parsed secret reference.
type SecretRef struct {
	Namespace, Name string
}

// String is the canonical "namespace/name".
func (r SecretRef) String() string { return r.Namespace + "/" + r.Name }

// ParseSecretRef parses "name" (namespace DefaultSecretNamespace) or
// "namespace/name"; both parts are RFC 1123 labels.
func ParseSecretRef(ref string) (namespace, name string, err error) {
	if ref == "" {
		return "", "", fmt.Errorf("secret reference must not be empty")
	}
	ns, n, ok := strings.Cut(ref, "/")
	if !ok {
		ns, n = DefaultSecretNamespace, ref
	}
	if err := ValidateName(ns); err != nil {
		return "", "", fmt.Errorf("invalid secret reference %q: namespace %w", ref, err)
	}
	if err := ValidateName(n); err != nil {
		return "", "", fmt.Errorf("invalid secret reference %q: name %w", ref, err)
	}
	return ns, n, nil
}

// ParsePodSecretRef parses a reference made in pod s: "name" is in the
// pod's namespace, "namespace/name" names its namespace, which must be the
// pod's (a pod uses only secrets of its own namespace).
func ParsePodSecretRef(s *herdv1.PodSpec, ref string) (SecretRef, error) {
	if ref == "" {
		return SecretRef{}, fmt.Errorf("secret reference must not be empty")
	}
	podNS := PodNamespace(s)
	ns, n, ok := strings.Cut(ref, "/")
	if !ok {
		ns, n = podNS, ref
	}
	if err := ValidateName(ns); err != nil {
		return SecretRef{}, fmt.Errorf("invalid secret reference %q: namespace %w", ref, err)
	}
	if err := ValidateName(n); err != nil {
		return SecretRef{}, fmt.Errorf("invalid secret reference %q: name %w", ref, err)
	}
	if ns != podNS {
		return SecretRef{}, fmt.Errorf("secret %q is in namespace %q: a pod in namespace %q may use only secrets of its own namespace", ref, ns, podNS)
	}
	return SecretRef{ns, n}, nil
}

// MustPodSecretRef parses a reference of pod s that was validated
// (ValidatePod): it panics on an invalid one.
func MustPodSecretRef(s *herdv1.PodSpec, ref string) SecretRef {
	r, err := ParsePodSecretRef(s, ref)
	if err != nil {
		panic(err)
	}
	return r
}

// SecretMountPath is the directory a mount appears at in the container:
// its path, or SecretMountRoot/<name> when the path is empty. The
// reference must be valid.
func SecretMountPath(m *herdv1.SecretMount) string {
	if p := m.GetPath(); p != "" {
		return p
	}
	_, n, err := ParseSecretRef(m.GetSecret())
	if err != nil {
		return ""
	}
	return SecretMountRoot + "/" + n
}

// SecretMountMode is a mount's file mode: mode, or DefaultSecretMode.
func SecretMountMode(m *herdv1.SecretMount) uint32 {
	if m.Mode != nil {
		return m.GetMode()
	}
	return DefaultSecretMode
}

// forbiddenMountRoots are kernel filesystems a secret mount must not hide
// or sit in.
var forbiddenMountRoots = []string{"/proc", "/sys", "/dev"}

// resolvConf is bind-mounted by agentd into pods with a pod network.
const resolvConf = "/etc/resolv.conf"

// ValidateSecretMountPath checks a mount's (explicit) container path:
// absolute, clean, not "/", not in /proc, /sys or /dev, and neither
// /etc/resolv.conf nor a directory above it (agentd mounts that file).
func ValidateSecretMountPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("must not be empty")
	case len(p) > maxMountPathLength:
		return fmt.Errorf("must be at most %d characters", maxMountPathLength)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("must not contain NUL bytes")
	case !path.IsAbs(p):
		return fmt.Errorf("must be an absolute path, got %q", p)
	case p == "/":
		return fmt.Errorf(`must not be "/"`)
	case path.Clean(p) != p:
		return fmt.Errorf("must be a clean path (no '.', '..', '//' or trailing '/'), got %q: use %q", p, path.Clean(p))
	}
	for _, root := range forbiddenMountRoots {
		if within(p, root) {
			return fmt.Errorf("must not be in %s, got %q", root, p)
		}
	}
	if within(resolvConf, p) {
		return fmt.Errorf("must not be %s or a directory above it (agentd mounts that file), got %q", resolvConf, p)
	}
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// ValidateSecretMountKey checks a key listed in a mount: a valid secret
// key that can be a file name next to the mount's own "..data" entries.
func ValidateSecretMountKey(k string) error {
	if err := ValidateSecretKey(k); err != nil {
		return err
	}
	if strings.HasPrefix(k, "..") {
		return fmt.Errorf(`a mounted key must not start with ".." (reserved for the mount's own entries)`)
	}
	return nil
}

// ValidateSecretMounts checks the secret_mounts of a container of pod s at
// p (the container's path).
func ValidateSecretMounts(s *herdv1.PodSpec, p Path, mounts []*herdv1.SecretMount) FieldErrors {
	var errs FieldErrors
	mp := p.Field("secret_mounts")
	if len(mounts) > MaxSecretMounts {
		errs.add(mp, "at most %d secret mounts, got %d", MaxSecretMounts, len(mounts))
	}
	type seenPath struct {
		path string
		idx  int
	}
	var paths []seenPath
	for i, m := range mounts {
		ip := mp.Index(i)
		if m == nil {
			errs.add(ip, "secret mount is empty")
			continue
		}
		var name string
		if r, err := ParsePodSecretRef(s, m.GetSecret()); err != nil {
			errs.add(ip.Field("secret"), "%v", err)
		} else {
			name = r.Name
		}
		target := m.GetPath()
		if target != "" {
			if err := ValidateSecretMountPath(target); err != nil {
				errs.add(ip.Field("path"), "%v", err)
				target = ""
			}
		} else if name != "" {
			target = SecretMountRoot + "/" + name
		}
		if target != "" {
			for _, o := range paths {
				switch {
				case o.path == target:
					errs.add(ip.Field("path"), "%s is also the path of secret_mounts[%d]", target, o.idx)
				case within(target, o.path):
					errs.add(ip.Field("path"), "%s is inside %s, the path of secret_mounts[%d]", target, o.path, o.idx)
				case within(o.path, target):
					errs.add(ip.Field("path"), "%s contains %s, the path of secret_mounts[%d]", target, o.path, o.idx)
				}
			}
			paths = append(paths, seenPath{target, i})
		}
		keys := map[string]int{}
		for j, k := range m.GetKeys() {
			kp := ip.Field("keys").Index(j)
			if err := ValidateSecretMountKey(k); err != nil {
				errs.add(kp, "%v", err)
				continue
			}
			if o, dup := keys[k]; dup {
				errs.add(kp, "duplicate key %q (also keys[%d])", k, o)
				continue
			}
			keys[k] = j
		}
		if m.Mode != nil && m.GetMode() > MaxSecretMode {
			errs.add(ip.Field("mode"), "must be at most 0777 (no setuid, setgid or sticky bit), got %#o", m.GetMode())
		}
	}
	return errs
}

// ValidateSecretEnv checks the secret_env of a container of pod s at p (the
// container's path); env is the container's plain env, whose names it
// must not repeat.
func ValidateSecretEnv(s *herdv1.PodSpec, p Path, vars []*herdv1.SecretEnv, env map[string]string) FieldErrors {
	var errs FieldErrors
	ep := p.Field("secret_env")
	if len(vars)+len(env) > maxEnv {
		errs.add(ep, "at most %d variables together with env", maxEnv)
	}
	seen := map[string]int{}
	for i, v := range vars {
		ip := ep.Index(i)
		if v == nil {
			errs.add(ip, "secret env is empty")
			continue
		}
		switch n := v.GetName(); {
		case !envNameRe.MatchString(n):
			errs.add(ip.Field("name"), "invalid environment variable name %q: must match [A-Za-z_][A-Za-z0-9_]*", n)
		case seen[n] > 0:
			errs.add(ip.Field("name"), "duplicate variable %q (also secret_env[%d])", n, seen[n]-1)
		default:
			if _, dup := env[n]; dup {
				errs.add(ip.Field("name"), "variable %q is also set in env", n)
			}
			seen[n] = i + 1
		}
		if _, err := ParsePodSecretRef(s, v.GetSecret()); err != nil {
			errs.add(ip.Field("secret"), "%v", err)
		}
		if err := ValidateSecretKey(v.GetKey()); err != nil {
			errs.add(ip.Field("key"), "%v", err)
		}
	}
	return errs
}

// ValidateImagePullSecret checks the image_pull_secret of pod s: empty, or
// a valid reference in the pod's namespace.
func ValidateImagePullSecret(s *herdv1.PodSpec) error {
	if s.GetImagePullSecret() == "" {
		return nil
	}
	_, err := ParsePodSecretRef(s, s.GetImagePullSecret())
	return err
}

// ValidatePodSecrets checks the secret fields of a pod spec (ValidatePod
// calls it). Paths are relative to the spec.
func ValidatePodSecrets(s *herdv1.PodSpec) FieldErrors {
	var errs FieldErrors
	if err := ValidateImagePullSecret(s); err != nil {
		errs.add(Path{}.Field("image_pull_secret"), "%v", err)
	}
	for i, c := range s.GetContainers() {
		if c == nil {
			continue
		}
		p := Path{}.Field("containers").Index(i)
		errs = append(errs, ValidateSecretMounts(s, p, c.GetSecretMounts())...)
		errs = append(errs, ValidateSecretEnv(s, p, c.GetSecretEnv(), c.GetEnv())...)
		if n := len(ContainerSecretRefs(s, c)); n > MaxSecretsPerContainer {
			errs.add(p, "uses %d distinct secrets, more than %d", n, MaxSecretsPerContainer)
		}
	}
	return errs
}

// ContainerSecretRefs returns the distinct, valid secrets container c of
// pod s uses (its mounts, its env and the pod's pull secret), sorted.
func ContainerSecretRefs(s *herdv1.PodSpec, c *herdv1.ContainerSpec) []SecretRef {
	var refs []SecretRef
	add := func(ref string) {
		if r, err := ParsePodSecretRef(s, ref); err == nil {
			refs = append(refs, r)
		}
	}
	for _, m := range c.GetSecretMounts() {
		add(m.GetSecret())
	}
	for _, v := range c.GetSecretEnv() {
		add(v.GetSecret())
	}
	if r := s.GetImagePullSecret(); r != "" {
		add(r)
	}
	return sortRefs(refs)
}

// PodSecretRefs returns the distinct, valid secrets pod s uses, sorted.
func PodSecretRefs(s *herdv1.PodSpec) []SecretRef {
	var refs []SecretRef
	for _, c := range s.GetContainers() {
		refs = append(refs, ContainerSecretRefs(s, c)...)
	}
	return sortRefs(refs)
}

func sortRefs(refs []SecretRef) []SecretRef {
	slices.SortFunc(refs, func(a, b SecretRef) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(refs)
}
