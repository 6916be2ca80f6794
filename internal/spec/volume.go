package spec

import (
	"fmt"
	"path"
	"strings"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Volumes, empty_dirs and config files. The rules here hold without the
// node: that a volume exists on the pod's node and that no other pod holds
// it read-write are agentd's, at apply time.
const (
	// DefaultVolumeNamespace is a volume's namespace when none is set.
	DefaultVolumeNamespace = "default"
	// MinVolumeBytes is the smallest volume (and disk empty_dir limit):
	// below it ext4's own metadata leaves nothing useful.
	MinVolumeBytes = 1 << 20
	// MaxVolumeBytes bounds a volume: 64 TiB, far beyond a node-local
	// disk here, and well inside what ext4 and a sparse file can hold.
	MaxVolumeBytes = 64 << 40
	// MaxVolumeMounts bounds the volume mounts of one container.
	MaxVolumeMounts = 32
	// MaxEmptyDirs bounds the empty_dirs of one pod.
	MaxEmptyDirs = 16
	// MaxConfigFiles bounds the config files of one container.
	MaxConfigFiles = 64
	// MaxConfigBytes bounds the content of a pod's config files in all:
	// they live in its record.
	MaxConfigBytes = 1 << 20
	// DefaultConfigMode is a config file's mode unless mode is set.
	DefaultConfigMode = 0o644

	// EmptyDirDisk and EmptyDirMemory are the media of an empty_dir.
	EmptyDirDisk   = "disk"
	EmptyDirMemory = "memory"
)

// VolumeNamespace is a volume spec's namespace, defaulted.
func VolumeNamespace(s *herdv1.VolumeSpec) string {
	return cmpOr(s.GetNamespace(), DefaultVolumeNamespace)
}

// ParseVolumeSize parses a volume size: a byte quantity from MinVolumeBytes
// to MaxVolumeBytes.
func ParseVolumeSize(q string) (int64, error) {
	if q == "" {
		return 0, fmt.Errorf("is required (a quantity such as \"10Gi\")")
	}
	b, err := ParseMemory(q)
	if err != nil {
		return 0, fmt.Errorf("%s", strings.Replace(err.Error(), "memory quantity", "size", 1))
	}
	switch {
	case b < MinVolumeBytes:
		return 0, fmt.Errorf("size %q is below the minimum of 1Mi", q)
	case b > MaxVolumeBytes:
		return 0, fmt.Errorf("size %q is above the maximum of 64Ti", q)
	}
	return b, nil
}

// ValidateVolume checks a volume spec.
func ValidateVolume(s *herdv1.VolumeSpec) FieldErrors {
	var errs FieldErrors
	if s == nil {
		errs.add(nil, "spec is required")
		return errs
	}
	if err := ValidateName(s.GetName()); err != nil {
		errs.add(Path{}.Field("name"), "%v", err)
	}
	if ns := s.GetNamespace(); ns != "" {
		if err := ValidateName(ns); err != nil {
			errs.add(Path{}.Field("namespace"), "%v", err)
		}
	}
	if _, err := ParseVolumeSize(s.GetSize()); err != nil {
		errs.add(Path{}.Field("size"), "%v", err)
	}
	return errs
}

// CheckVolumeResize refuses shrinking: ext4 can shrink only unmounted and
// offline, and a smaller size could cut off data.
func CheckVolumeResize(from, to int64, fromQ, toQ string) error {
	if to < from {
		return fmt.Errorf("a volume cannot shrink (from %s to %s): create a new volume, copy the data (herdctl volume backup and restore), then delete this one", fromQ, toQ)
	}
	return nil
}

// ValidateContainerPath checks a path a mount or a config file takes in a
// container: absolute, clean, not "/", not in /proc, /sys or /dev, and
// not /etc/resolv.conf or a directory above it (agentd mounts that file).
func ValidateContainerPath(p string) error { return ValidateSecretMountPath(p) }

// ValidateSubPath checks a volume mount's sub_path: empty, or relative and
// clean with no ".." element.
func ValidateSubPath(p string) error {
	switch {
	case p == "":
		return nil
	case len(p) > maxMountPathLength:
		return fmt.Errorf("must be at most %d characters", maxMountPathLength)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("must not contain NUL bytes")
	case path.IsAbs(p):
		return fmt.Errorf("must be a relative path inside the volume, got %q", p)
	case path.Clean(p) != p:
		return fmt.Errorf("must be a clean path (no '.', '//' or trailing '/'), got %q", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("must not leave the volume (no \"..\"), got %q", p)
	}
	return nil
}

// EmptyDirMedium is an empty_dir's medium, defaulted.
func EmptyDirMedium(d *herdv1.EmptyDir) string { return cmpOr(d.GetMedium(), EmptyDirDisk) }

// ConfigFileMode is a config file's mode: mode, or DefaultConfigMode.
func ConfigFileMode(f *herdv1.ConfigFile) uint32 {
	if f.Mode != nil {
		return f.GetMode()
	}
	return DefaultConfigMode
}

// ConfigDirs groups config files by directory, in the order the
// directories first appear: each directory is one mount.
func ConfigDirs(list []*herdv1.ConfigFile) (dirs []string, files map[string][]*herdv1.ConfigFile) {
	files = map[string][]*herdv1.ConfigFile{}
	for _, f := range list {
		d := path.Dir(f.GetPath())
		if _, ok := files[d]; !ok {
			dirs = append(dirs, d)
		}
		files[d] = append(files[d], f)
	}
	return dirs, files
}

// validateEmptyDirs checks a pod's empty_dirs and returns them by name.
func validateEmptyDirs(s *herdv1.PodSpec) (map[string]*herdv1.EmptyDir, FieldErrors) {
	var errs FieldErrors
	byName := map[string]*herdv1.EmptyDir{}
	dp := Path{}.Field("empty_dirs")
	if n := len(s.GetEmptyDirs()); n > MaxEmptyDirs {
		errs.add(dp, "at most %d empty_dirs, got %d", MaxEmptyDirs, n)
	}
	seen := map[string]int{}
	for i, d := range s.GetEmptyDirs() {
		ip := dp.Index(i)
		if d == nil {
			errs.add(ip, "empty_dir is empty")
			continue
		}
		if err := ValidateName(d.GetName()); err != nil {
			errs.add(ip.Field("name"), "%v", err)
		} else if j, dup := seen[d.GetName()]; dup {
			errs.add(ip.Field("name"), "duplicate empty_dir name %q (also empty_dirs[%d])", d.GetName(), j)
		} else {
			seen[d.GetName()] = i
			byName[d.GetName()] = d
		}
		medium := EmptyDirMedium(d)
		if medium != EmptyDirDisk && medium != EmptyDirMemory {
			errs.add(ip.Field("medium"), "must be %q or %q, got %q", EmptyDirDisk, EmptyDirMemory, d.GetMedium())
		}
		switch q := d.GetSizeLimit(); {
		case q == "" && medium == EmptyDirMemory:
			errs.add(ip.Field("size_limit"), "is required for a memory empty_dir (the size of its tmpfs)")
		case q != "":
			if _, err := ParseVolumeSize(q); err != nil {
				errs.add(ip.Field("size_limit"), "%v", err)
			}
		}
	}
	return byName, errs
}

// containerMount is one path a container gets from its spec.
type containerMount struct {
	path string
	at   Path
	what string
}

// validateContainerVolumes checks a container's volume_mounts and
// config_files, and that no path the container gets (those and its secret
// mounts) is another's or lies inside another's.
func validateContainerVolumes(p Path, c *herdv1.ContainerSpec, dirs map[string]*herdv1.EmptyDir) FieldErrors {
	var errs FieldErrors
	var mounts []containerMount
	vp := p.Field("volume_mounts")
	if n := len(c.GetVolumeMounts()); n > MaxVolumeMounts {
		errs.add(vp, "at most %d volume mounts, got %d", MaxVolumeMounts, n)
	}
	for i, m := range c.GetVolumeMounts() {
		ip := vp.Index(i)
		if m == nil {
			errs.add(ip, "volume mount is empty")
			continue
		}
		switch {
		case m.GetVolume() == "" && m.GetEmptyDir() == "":
			errs.add(ip, "one of volume and empty_dir is required")
		case m.GetVolume() != "" && m.GetEmptyDir() != "":
			errs.add(ip, "only one of volume and empty_dir may be set")
		case m.GetVolume() != "":
			if err := ValidateName(m.GetVolume()); err != nil {
				errs.add(ip.Field("volume"), "%v (a volume of the pod's namespace, by name)", err)
			}
		default:
			if dirs[m.GetEmptyDir()] == nil {
				errs.add(ip.Field("empty_dir"), "the pod has no empty_dir %q", m.GetEmptyDir())
			}
			if m.GetReadOnly() {
				errs.add(ip.Field("read_only"), "an empty_dir is the pod's own scratch space: mount it read-write")
			}
		}
		if err := ValidateSubPath(m.GetSubPath()); err != nil {
			errs.add(ip.Field("sub_path"), "%v", err)
		}
		if err := ValidateContainerPath(m.GetPath()); err != nil {
			errs.add(ip.Field("path"), "%v", err)
			continue
		}
		mounts = append(mounts, containerMount{m.GetPath(), ip.Field("path"), fmt.Sprintf("volume_mounts[%d]", i)})
	}
	fp := p.Field("config_files")
	if n := len(c.GetConfigFiles()); n > MaxConfigFiles {
		errs.add(fp, "at most %d config files, got %d", MaxConfigFiles, n)
	}
	seenFile := map[string]int{}
	for i, f := range c.GetConfigFiles() {
		ip := fp.Index(i)
		if f == nil {
			errs.add(ip, "config file is empty")
			continue
		}
		if err := ValidateContainerPath(f.GetPath()); err != nil {
			errs.add(ip.Field("path"), "%v", err)
			continue
		}
		dir, base := path.Split(f.GetPath())
		dir = path.Clean(dir)
		switch {
		case dir == "/":
			errs.add(ip.Field("path"), "must be in a directory of its own, not in /: the file's directory becomes a read-only mount holding only config files")
			continue
		case strings.HasPrefix(base, ".."):
			errs.add(ip.Field("path"), "the file name must not start with \"..\" (reserved for the mount's own entries)")
			continue
		}
		if err := ValidateContainerPath(dir); err != nil {
			errs.add(ip.Field("path"), "directory %v", err)
			continue
		}
		if j, dup := seenFile[f.GetPath()]; dup {
			errs.add(ip.Field("path"), "duplicate config file %s (also config_files[%d])", f.GetPath(), j)
			continue
		}
		seenFile[f.GetPath()] = i
		if f.Mode != nil && f.GetMode() > MaxSecretMode {
			errs.add(ip.Field("mode"), "must be at most 0777 (no setuid, setgid or sticky bit), got %#o", f.GetMode())
		}
	}
	cdirs, _ := ConfigDirs(c.GetConfigFiles())
	for _, d := range cdirs {
		if d == "/" || ValidateContainerPath(d) != nil {
			continue
		}
		for i, f := range c.GetConfigFiles() {
			if f != nil && path.Dir(f.GetPath()) == d {
				mounts = append(mounts, containerMount{d, fp.Index(i).Field("path"), fmt.Sprintf("the directory of config_files[%d]", i)})
				break
			}
		}
	}
	for i, sm := range c.GetSecretMounts() {
		if sm == nil {
			continue
		}
		if t := SecretMountPath(sm); t != "" && ValidateContainerPath(t) == nil {
			mounts = append(mounts, containerMount{t, p.Field("secret_mounts").Index(i).Field("path"), fmt.Sprintf("secret_mounts[%d]", i)})
		}
	}
	// Secret mounts among themselves are ValidateSecretMounts' to check.
	for i, a := range mounts {
		for _, b := range mounts[:i] {
			if strings.HasPrefix(a.what, "secret_mounts") && strings.HasPrefix(b.what, "secret_mounts") {
				continue
			}
			switch {
			case a.path == b.path:
				errs.add(a.at, "%s is also the path of %s", a.path, b.what)
			case within(a.path, b.path):
				errs.add(a.at, "%s is inside %s, the path of %s", a.path, b.path, b.what)
			case within(b.path, a.path):
				errs.add(a.at, "%s contains %s, the path of %s", a.path, b.path, b.what)
			}
		}
	}
	return errs
}

// ValidatePodVolumes checks a pod's empty_dirs and its containers'
// volume_mounts and config_files (ValidatePod calls it).
func ValidatePodVolumes(s *herdv1.PodSpec) FieldErrors {
	dirs, errs := validateEmptyDirs(s)
	total := 0
	for i, c := range s.GetContainers() {
		if c == nil {
			continue
		}
		errs = append(errs, validateContainerVolumes(Path{}.Field("containers").Index(i), c, dirs)...)
		for _, f := range c.GetConfigFiles() {
			total += len(f.GetContent())
		}
	}
	if total > MaxConfigBytes {
		errs.add(Path{}.Field("containers"), "config file content is %d bytes in all: at most 1 MiB per pod", total)
	}
	return errs
}

// PodVolumes lists the persistent volumes a pod mounts: by name, whether
// some container mounts it read-write.
func PodVolumes(s *herdv1.PodSpec) map[string]bool {
	out := map[string]bool{}
	for _, c := range s.GetContainers() {
		for _, m := range c.GetVolumeMounts() {
			if v := m.GetVolume(); v != "" {
				out[v] = out[v] || !m.GetReadOnly()
			}
		}
	}
	return out
}

// ConfigOnlyChange reports whether b differs from a in the content or mode
// of config files alone (the same paths): such a change updates the files
// of the running pod in place instead of replacing it.
func ConfigOnlyChange(a, b *herdv1.PodSpec) bool {
	return proto.Equal(withoutConfigContent(a), withoutConfigContent(b))
}

func withoutConfigContent(s *herdv1.PodSpec) *herdv1.PodSpec {
	d := Defaulted(s)
	for _, c := range d.GetContainers() {
		for _, f := range c.GetConfigFiles() {
			f.Content, f.Mode = "", nil
		}
	}
	return d
}
