package pods

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// A pod's storage other than secrets: persistent volumes (the node's
// volume manager mounts them; a pod bind-mounts their root or a sub_path),
// and per incarnation, under ScratchDir/<pod>_<uid> (marked like the
// secret tmpfs, so garbage collection removes only what is ours):
//
//	.herd-scratch         the marker: "<pod>_<uid>"
//	empty/<name>/         an empty_dir: a directory, a tmpfs (memory), or
//	                      a mounted ext4 image empty/.<name>.img (disk
//	                      with a size_limit)
//	config/<container>.<n>/  the n-th config directory of a container,
//	                      written like secret files (atomic ..data swap)

// VolumeSource gives pods the node's persistent volumes (agentd/volumes).
type VolumeSource interface {
	// MountPath is the host directory of the volume's mounted filesystem;
	// an error when there is no such volume on this node or it is not
	// usable.
	MountPath(ctx context.Context, namespace, name string) (string, error)
	// Bind holds off volume deletes, restores and the start of backups
	// while a pod that mounts volumes is admitted and recorded.
	Bind() (release func())
	// CheckWrite refuses a new writer of the volume (one being backed up,
	// say).
	CheckWrite(namespace, name string) error
}

// ScratchImages makes the size-limited filesystems of disk empty_dirs
// (agentd/volumes' loop-mounted ext4 images).
type ScratchImages interface {
	Create(ctx context.Context, img string, size int64) error
	Mount(ctx context.Context, img, mnt string) error
	Unmount(ctx context.Context, img, mnt string) error
}

const (
	scratchMarker = ".herd-scratch"
	emptySubdir   = "empty"
	configSubdir  = "config"
	subpathSubdir = "subpath"
)

// checkVolumes admits a pod's persistent volumes: each exists on this node,
// and none is mounted read-write by another pod while this one would write
// it. Callers hold applyMu; release is called once the pod is recorded (or
// refused).
func (m *Manager) checkVolumes(ctx context.Context, d *herdv1.PodSpec) (release func(), err error) {
	vols := spec.PodVolumes(d)
	if len(vols) == 0 {
		return func() {}, nil
	}
	ns := spec.PodNamespace(d)
	if m.cfg.Volumes == nil {
		return nil, fmt.Errorf("%w: pod %s mounts volumes, and node %s has none (agentd runs without a volume directory)", ErrVolumeUnavailable, d.GetName(), m.cfg.NodeName)
	}
	release = m.cfg.Volumes.Bind()
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range vols {
			if !yield(k) {
				return
			}
		}
	}) {
		if _, err := m.cfg.Volumes.MountPath(ctx, ns, name); err != nil {
			release()
			return nil, fmt.Errorf("%w: pod %s: volume %s/%s: %w (volumes are node-local: a pod runs on its volume's node)", ErrVolumeUnavailable, d.GetName(), ns, name, err)
		}
		if !vols[name] {
			continue
		}
		rw, _ := m.VolumeUsers(ns, name)
		if rw != "" && rw != d.GetName() {
			release()
			return nil, fmt.Errorf("%w: volume %s/%s is mounted read-write by pod %s: a volume has one writer at a time (mount it read_only, or delete that pod first)", ErrVolumeInUse, ns, name, rw)
		}
		if rw == "" {
			if err := m.cfg.Volumes.CheckWrite(ns, name); err != nil {
				release()
				return nil, fmt.Errorf("%w: pod %s: %w", ErrVolumeInUse, d.GetName(), err)
			}
		}
	}
	return release, nil
}

// VolumeUsers reports which pods mount a volume: the one that writes it
// (empty when none) and those that only read it. Pods being created or
// deleted count: their containers may be running.
func (m *Manager) VolumeUsers(namespace, name string) (rw string, ro []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.pods {
		if e.gone || spec.PodNamespace(e.spec) != namespace {
			continue
		}
		writes, ok := e.volumes[name]
		switch {
		case !ok:
		case writes:
			rw = e.name
		default:
			ro = append(ro, e.name)
		}
	}
	slices.Sort(ro)
	return rw, ro
}

// scratchDir is the directory of a pod incarnation's empty_dirs and config
// files.
func (m *Manager) scratchDir(name, uid string) string {
	return filepath.Join(m.cfg.ScratchDir, name+"_"+uid)
}

func needsScratch(s *herdv1.PodSpec) bool {
	if len(s.GetEmptyDirs()) > 0 {
		return true
	}
	for _, c := range s.GetContainers() {
		if len(c.GetConfigFiles()) > 0 {
			return true
		}
		for _, vm := range c.GetVolumeMounts() {
			if vm.GetSubPath() != "" {
				return true // pinned under subpath/
			}
		}
	}
	return false
}

// openScratch makes (or opens) the incarnation's marked directory. A
// directory there without our marker for this very incarnation is refused.
func (m *Manager) openScratch(e *podEntry) (*os.Root, error) {
	dir := m.scratchDir(e.name, e.uid)
	marker := e.name + "_" + e.uid
	if err := os.MkdirAll(m.cfg.ScratchDir, 0o711); err != nil {
		return nil, fmt.Errorf("make scratch dir: %w", err)
	}
	switch err := os.Mkdir(dir, 0o711); {
	case err == nil:
		if err := os.WriteFile(filepath.Join(dir, scratchMarker), []byte(marker), 0o600); err != nil {
			return nil, fmt.Errorf("mark scratch dir: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("make scratch dir: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open scratch dir: %w", err)
	}
	got, err := r.ReadFile(scratchMarker)
	if err != nil || string(got) != marker {
		r.Close()
		return nil, fmt.Errorf("%s is not this pod's scratch directory (no herd marker for %s): refusing to use it", dir, marker)
	}
	return r, nil
}

// storageBinds prepares container c's volume mounts and config files and
// returns their bind mounts, in spec order: volume_mounts, then config
// directories.
func (m *Manager) storageBinds(ctx context.Context, e *podEntry, c *ctr) ([]runtime.BindMount, error) {
	cs := c.spec
	if len(cs.GetVolumeMounts()) == 0 && len(c.configFiles) == 0 {
		return nil, nil
	}
	e.storageMu.Lock()
	defer e.storageMu.Unlock()
	var binds []runtime.BindMount
	var root *os.Root
	if needsScratch(e.spec) {
		r, err := m.openScratch(e)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		root = r
	}
	ns := spec.PodNamespace(e.spec)
	for i, vm := range cs.GetVolumeMounts() {
		var src string
		switch {
		case vm.GetVolume() != "":
			if m.cfg.Volumes == nil {
				return nil, fmt.Errorf("volume_mounts[%d]: node %s has no volumes", i, m.cfg.NodeName)
			}
			p, err := m.cfg.Volumes.MountPath(ctx, ns, vm.GetVolume())
			if err != nil {
				return nil, fmt.Errorf("volume %s/%s: %w", ns, vm.GetVolume(), err)
			}
			src = p
		default:
			p, err := m.ensureEmptyDir(ctx, e, root, vm.GetEmptyDir())
			if err != nil {
				return nil, fmt.Errorf("empty_dir %s: %w", vm.GetEmptyDir(), err)
			}
			src = p
		}
		if sub := vm.GetSubPath(); sub != "" {
			pinned, err := m.pinSubDir(e, c, i, src, sub)
			if err != nil {
				return nil, fmt.Errorf("volume_mounts[%d]: %w", i, err)
			}
			src = pinned
		}
		binds = append(binds, runtime.BindMount{Source: src, Destination: vm.GetPath(), Writable: !vm.GetReadOnly()})
	}
	if len(c.configFiles) > 0 {
		cb, err := m.writeConfig(root, e, c)
		if err != nil {
			return nil, err
		}
		binds = append(binds, cb...)
	}
	return binds, nil
}

// subDir opens sub inside dir, making missing directories (0755). Every
// element must be a directory, not a symlink, and the directory opened is
// inside dir however the volume changes meanwhile (os.Root resolves inside
// it): a container that writes the volume must not steer a later mount
// elsewhere on the host.
func subDir(dir, sub string) (*os.File, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("sub_path %q: %w", sub, err)
	}
	defer r.Close()
	cur := ""
	for _, part := range strings.Split(sub, "/") {
		cur = path.Join(cur, part)
		fi, err := r.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			if err := r.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("sub_path %q: make %s: %w", sub, cur, err)
			}
			fi, err = r.Lstat(cur)
		}
		if err != nil {
			return nil, fmt.Errorf("sub_path %q: %w", sub, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("sub_path %q: %s is not a directory (symlinks are refused)", sub, cur)
		}
	}
	f, err := r.Open(sub)
	if err != nil {
		return nil, fmt.Errorf("sub_path %q: %w", sub, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("sub_path %q: not a directory", sub)
	}
	return f, nil
}

// pinSubDir bind-mounts the sub_path sub of dir, as opened by subDir, at
// <scratch>/subpath/<container>.<i> and returns that path, which runc then
// mounts: the directory is fixed when it is checked, so swapping a
// directory of the volume for a symlink in between changes nothing.
// Callers hold e.storageMu and have checked the scratch directory's
// marker (openScratch).
func (m *Manager) pinSubDir(e *podEntry, c *ctr, i int, dir, sub string) (string, error) {
	f, err := subDir(dir, sub)
	if err != nil {
		return "", err
	}
	defer f.Close()
	pins := filepath.Join(m.scratchDir(e.name, e.uid), subpathSubdir)
	if err := os.MkdirAll(pins, 0o700); err != nil {
		return "", fmt.Errorf("sub_path %q: %w", sub, err)
	}
	target := filepath.Join(pins, fmt.Sprintf("%s.%d", c.spec.GetName(), i))
	// A pin of the container's previous run goes: the sub_path is resolved
	// again for each start, as the volume may have changed.
	if err := unpin(target); err != nil {
		return "", fmt.Errorf("sub_path %q: %w", sub, err)
	}
	if err := pinDir(f, target); err != nil {
		return "", fmt.Errorf("sub_path %q: %w", sub, err)
	}
	return target, nil
}

// pinDir bind-mounts the directory f is open on at target (made if
// missing): the mount is of that very directory, whatever its path leads
// to by now.
func pinDir(f *os.File, target string) error {
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin %s: %w", target, err)
	}
	return nil
}

// unpin unmounts a sub_path pin if one is there.
func unpin(target string) error {
	for {
		err := unix.Unmount(target, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue // a pin stacked on another
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not a mount point (any more)
		default:
			return fmt.Errorf("unpin %s: %w", target, err)
		}
	}
}

// ensureEmptyDir makes the pod's empty_dir name (idempotent) and returns
// its host path.
func (m *Manager) ensureEmptyDir(ctx context.Context, e *podEntry, root *os.Root, name string) (string, error) {
	var d *herdv1.EmptyDir
	for _, ed := range e.spec.GetEmptyDirs() {
		if ed.GetName() == name {
			d = ed
		}
	}
	if d == nil || root == nil {
		return "", fmt.Errorf("the pod has no empty_dir %q", name) // validated: a bug
	}
	if err := root.Mkdir(emptySubdir, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	rel := emptySubdir + "/" + name
	if err := root.Mkdir(rel, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	dir := filepath.Join(m.scratchDir(e.name, e.uid), emptySubdir, name)
	var size int64
	if q := d.GetSizeLimit(); q != "" {
		b, err := spec.ParseVolumeSize(q)
		if err != nil {
			return "", err
		}
		size = b
	}
	switch spec.EmptyDirMedium(d) {
	case spec.EmptyDirMemory:
		mounted, err := isMountOf(dir, unix.TMPFS_MAGIC)
		if err != nil {
			return "", err
		}
		if !mounted {
			opts := "size=" + strconv.FormatInt(size, 10) + ",mode=0777"
			if err := unix.Mount("herd-empty-dir", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				return "", fmt.Errorf("mount tmpfs: %w", err)
			}
		}
	default:
		if size == 0 {
			break
		}
		if m.cfg.Images == nil {
			return "", fmt.Errorf("a size_limit on a disk empty_dir needs the node's volume support (agentd with --volume-dir)")
		}
		img := filepath.Join(m.scratchDir(e.name, e.uid), emptySubdir, "."+name+".img")
		if _, err := os.Stat(img); errors.Is(err, fs.ErrNotExist) {
			if err := m.cfg.Images.Create(ctx, img, size); err != nil {
				return "", err
			}
		}
		if err := m.cfg.Images.Mount(ctx, img, dir); err != nil {
			return "", err
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// isMountOf reports whether dir is the root of a mount of the given
// filesystem type (a device of its own, unlike its parent).
func isMountOf(dir string, magic int64) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type != magic {
		return false, nil
	}
	var a, b unix.Stat_t
	if err := unix.Stat(dir, &a); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &b); err != nil {
		return false, err
	}
	return a.Dev != b.Dev, nil
}

// configMounts is a container's config files as mountFiles, one per
// directory, in spec order.
func configMounts(container string, list []*herdv1.ConfigFile) (dirs []string, mounts []mountFiles) {
	dirs, files := spec.ConfigDirs(list)
	for i, d := range dirs {
		mf := mountFiles{subdir: container + "." + strconv.Itoa(i), files: map[string][]byte{}, modes: map[string]os.FileMode{}, mode: spec.DefaultConfigMode}
		for _, f := range files[d] {
			base := path.Base(f.GetPath())
			mf.files[base] = []byte(f.GetContent())
			mf.modes[base] = os.FileMode(spec.ConfigFileMode(f))
		}
		mounts = append(mounts, mf)
	}
	return dirs, mounts
}

// writeConfig writes container c's config directories and returns their
// read-only bind mounts.
func (m *Manager) writeConfig(root *os.Root, e *podEntry, c *ctr) ([]runtime.BindMount, error) {
	if root == nil {
		return nil, fmt.Errorf("pod %s has no scratch directory", e.name) // a bug
	}
	if err := root.Mkdir(configSubdir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	sub, err := root.OpenRoot(configSubdir)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	dirs, mounts := configMounts(c.spec.GetName(), c.configFiles)
	binds := make([]runtime.BindMount, 0, len(dirs))
	for i, mf := range mounts {
		if err := writeAtomic(sub, mf); err != nil {
			return nil, fmt.Errorf("write config files of %s: %w", dirs[i], err)
		}
		binds = append(binds, runtime.BindMount{
			Source:      filepath.Join(m.scratchDir(e.name, e.uid), configSubdir, mf.subdir),
			Destination: dirs[i],
		})
	}
	return binds, nil
}

// removeScratch removes a pod incarnation's scratch directory: empty_dir
// mounts (tmpfs, images) first. Only a directory carrying the marker of
// that incarnation is touched.
func (m *Manager) removeScratch(ctx context.Context, dir, marker string) error {
	got, err := os.ReadFile(filepath.Join(dir, scratchMarker))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
	}
	if err != nil || string(got) != marker {
		return fmt.Errorf("%s carries no herd marker for %s: left alone", dir, marker)
	}
	empty := filepath.Join(dir, emptySubdir)
	entries, err := os.ReadDir(empty)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, de := range entries {
		p := filepath.Join(empty, de.Name())
		if !de.IsDir() {
			continue
		}
		img := filepath.Join(empty, "."+de.Name()+".img")
		if _, err := os.Stat(img); err == nil && m.cfg.Images != nil {
			if err := m.cfg.Images.Unmount(ctx, img, p); err != nil {
				return fmt.Errorf("unmount empty_dir %s: %w", de.Name(), err)
			}
			continue
		}
		if mounted, err := isMountOf(p, unix.TMPFS_MAGIC); err == nil && mounted {
			if err := unix.Unmount(p, 0); err != nil {
				// Still in use by a leftover container mount: detach.
				if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
					return fmt.Errorf("unmount empty_dir %s: %w", de.Name(), err)
				}
			}
		}
	}
	pins, err := os.ReadDir(filepath.Join(dir, subpathSubdir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, de := range pins {
		if err := unpin(filepath.Join(dir, subpathSubdir, de.Name())); err != nil {
			return err
		}
	}
	// Nothing may be mounted below any more: RemoveAll would go through.
	if err := checkNoMounts(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// checkNoMounts refuses when something is still mounted at or below dir.
func checkNoMounts(dir string) error {
	busy, err := volumes.MountsUnder(dir)
	if err != nil {
		return err
	}
	if busy {
		return fmt.Errorf("something is still mounted in %s: not removing it", dir)
	}
	return nil
}
