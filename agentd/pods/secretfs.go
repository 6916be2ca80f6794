package pods

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Secret files live on one tmpfs per pod incarnation that mounts secrets,
// SecretsDir/<pod>_<uid> (mode 0700, noexec, nosuid, nodev, and noswap
// where the kernel has it), never on a disk: every write goes through a
// handle of the mount point that was checked to be a tmpfs mount (fstatfs
// TMPFS_MAGIC and a device of its own) and to carry herd's marker file, so
// a missing mount is refused instead of written through to the disk below.
//
// Inside, each secret mount of a container has a directory
// "<container>.<index>" laid out like the kubelet's atomic writer:
//
//	..2025_01_02_15_04_05.123456789.<rand>/  the files (mode, uid, gid)
//	..data -> ..2025_01_02_...               swapped by rename(2)
//	<key>  -> ..data/<key>                   stable per-key links
//
// The container gets a read-only bind mount of that directory, so an
// update (new timestamped directory, then an atomic rename of a temporary
// "..data" link over the old one, then the key links, then the old
// directory goes) is seen at once and never half-written.
const (
	secretFSSource  = "herd-secrets" // the mount's source, in /proc/mounts
	secretMarker    = ".herd-secrets"
	dataLink        = "..data"
	dataLinkTmp     = "..data_tmp"
	tmpfsPage       = 4096
	tmpfsSlackBytes = 256 << 10
	// minTmpfsBytes is the smallest tmpfs (1 MiB): a maximal secret.
	minTmpfsBytes = 1 << 20
)

// secretVolume is the tmpfs of one pod incarnation. Its mutex serializes
// the container starts that write their mounts and SecretChanged.
type secretVolume struct {
	mu     sync.Mutex
	log    *slog.Logger // may be nil
	dir    string
	marker string            // the marker file's content: <pod>_<uid>
	closed bool              // removed for good (the pod is deleted)
	sizes  map[string]int64  // bytes on the tmpfs, by mount directory
	sums   map[string]string // checksum written, by mount directory
}

func newSecretVolume(dir, marker string) *secretVolume {
	return &secretVolume{dir: dir, marker: marker, sizes: map[string]int64{}, sums: map[string]string{}}
}

// mountFiles is what one secret mount's directory holds.
type mountFiles struct {
	subdir   string // "<container>.<index>"
	files    map[string][]byte
	mode     os.FileMode
	modes    map[string]os.FileMode // per file, over mode (config files)
	uid, gid int
	checksum string
}

// tmpfsBytes is the space files take on a tmpfs: at least a page each.
func tmpfsBytes(files map[string][]byte) int64 {
	var n int64
	for _, v := range files {
		n += max(tmpfsPage, (int64(len(v))+tmpfsPage-1)/tmpfsPage*tmpfsPage)
	}
	return n
}

// wantSize sizes the tmpfs from its content: room for everything twice
// (an update writes the new version before the old one goes) plus slack,
// at least minTmpfsBytes.
func wantSize(total int64) int64 {
	return max(minTmpfsBytes, 2*total+tmpfsSlackBytes)
}

// write writes the mounts (creating and mounting the tmpfs first if
// needed). A mount whose checksum is already there is left as it is
// unless force is set.
func (v *secretVolume) write(mounts []mountFiles, force bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return fmt.Errorf("the pod's secret volume was removed")
	}
	sizes := maps.Clone(v.sizes)
	for _, mf := range mounts {
		sizes[mf.subdir] = tmpfsBytes(mf.files)
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	root, err := v.ensure(wantSize(total))
	if err != nil {
		return err
	}
	defer root.Close()
	for _, mf := range mounts {
		if !force && v.sums[mf.subdir] == mf.checksum && exists(root, mf.subdir+"/"+dataLink) {
			continue
		}
		if err := writeAtomic(root, mf); err != nil {
			return fmt.Errorf("write secret files: %w", err)
		}
		v.sizes[mf.subdir] = sizes[mf.subdir]
		v.sums[mf.subdir] = mf.checksum
	}
	return nil
}

// update rewrites mounts that were set up already (their directory
// exists); it never mounts the tmpfs (a pod not started yet writes its
// files when its containers start).
func (v *secretVolume) update(mounts []mountFiles) error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	root, err := v.open()
	if err != nil {
		v.mu.Unlock()
		if errors.Is(err, errNotMounted) {
			return nil
		}
		return err
	}
	var present []mountFiles
	for _, mf := range mounts {
		if exists(root, mf.subdir+"/"+dataLink) {
			present = append(present, mf)
		}
	}
	root.Close()
	v.mu.Unlock()
	if len(present) == 0 {
		return nil
	}
	return v.write(present, false)
}

func exists(root *os.Root, name string) bool {
	_, err := root.Lstat(name)
	return err == nil
}

var errNotMounted = errors.New("secret tmpfs is not mounted")

// open returns a handle of the mounted tmpfs after checking that it is
// one, ours, and a mount of its own. Callers hold v.mu.
func (v *secretVolume) open() (*os.Root, error) {
	root, err := os.OpenRoot(v.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errNotMounted
		}
		return nil, fmt.Errorf("open secret tmpfs: %w", err)
	}
	if err := checkOurTmpfs(root, v.dir, v.marker); err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// checkOurTmpfs verifies that root (opened at dir) is a tmpfs mount point
// whose marker file says marker. errNotMounted when dir is no mount point.
func checkOurTmpfs(root *os.Root, dir, marker string) error {
	f, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("open secret tmpfs: %w", err)
	}
	defer f.Close()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	var st, parent unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	if st.Dev == parent.Dev {
		return errNotMounted
	}
	if sfs.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s is a mount of filesystem type %#x, not a tmpfs: herd writes secrets to a tmpfs only", dir, sfs.Type)
	}
	got, err := root.ReadFile(secretMarker)
	if err != nil || strings.TrimSpace(string(got)) != marker {
		return fmt.Errorf("%s is a tmpfs without herd's marker for this pod: not touching it", dir)
	}
	return nil
}

// ensure mounts the tmpfs if it is not mounted, grows it to at least size
// and returns a checked handle. Callers hold v.mu.
func (v *secretVolume) ensure(size int64) (*os.Root, error) {
	root, err := v.open()
	switch {
	case err == nil:
		var sfs unix.Statfs_t
		if err := unix.Statfs(v.dir, &sfs); err == nil && int64(sfs.Blocks)*sfs.Bsize < size {
			if err := unix.Mount(secretFSSource, v.dir, "tmpfs", unix.MS_REMOUNT|tmpfsFlags, fmt.Sprintf("mode=0700,size=%d", size)); err != nil {
				root.Close()
				return nil, fmt.Errorf("grow secret tmpfs %s to %d bytes: %w", v.dir, size, err)
			}
		}
		return root, nil
	case !errors.Is(err, errNotMounted):
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(v.dir), 0o700); err != nil {
		return nil, fmt.Errorf("create secrets dir: %w", err)
	}
	if err := os.Mkdir(v.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create secret mount point: %w", err)
	}
	if err := secretTmpfs.mountSecret(v.dir, size, v.log); err != nil {
		return nil, fmt.Errorf("mount secret tmpfs on %s: %w", v.dir, err)
	}
	// The marker goes through a handle of the new mount, checked first.
	root, err = os.OpenRoot(v.dir)
	if err == nil {
		err = checkTmpfs(root, v.dir)
	}
	if err == nil {
		err = root.WriteFile(secretMarker, []byte(v.marker+"\n"), 0o600)
	}
	if err == nil {
		err = checkOurTmpfs(root, v.dir, v.marker)
	}
	if err != nil {
		if root != nil {
			root.Close()
		}
		_ = unix.Unmount(v.dir, unix.MNT_DETACH)
		return nil, fmt.Errorf("set up secret tmpfs on %s: %w", v.dir, err)
	}
	return root, nil
}

const tmpfsFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// tmpfsMounter mounts secret tmpfs with noswap where the kernel has it
// (Linux 6.4 and later), so that secrets never reach a swap device.
type tmpfsMounter struct {
	mount func(source, target, fstype string, flags uintptr, data string) error
	// noswap is what the first mount learned: 0 until then.
	noswap  atomic.Int32
	logOnce sync.Once
}

const (
	noswapOn int32 = iota + 1
	noswapUnsupported
)

// secretTmpfs is the process's mounter: what the kernel supports is the
// same for every pod.
var secretTmpfs = &tmpfsMounter{mount: unix.Mount}

// mountSecret mounts a secret tmpfs of size bytes on dir. An older kernel
// refuses noswap with EINVAL: the mount is made without it, and later
// mounts do not try again. Which one is used is logged once. A remount
// (ensure's growth) keeps noswap without naming it; naming it on a mount
// made without it would fail.
func (t *tmpfsMounter) mountSecret(dir string, size int64, log *slog.Logger) error {
	opts := fmt.Sprintf("mode=0700,size=%d", size)
	if t.noswap.Load() != noswapUnsupported {
		err := t.mount(secretFSSource, dir, "tmpfs", tmpfsFlags, opts+",noswap")
		if !errors.Is(err, unix.EINVAL) {
			if err == nil {
				t.noswap.Store(noswapOn)
				t.logOnce.Do(func() {
					if log != nil {
						log.Info("secret tmpfs mounted with noswap: secrets never reach swap")
					}
				})
			}
			return err
		}
	}
	if err := t.mount(secretFSSource, dir, "tmpfs", tmpfsFlags, opts); err != nil {
		return err
	}
	t.noswap.Store(noswapUnsupported)
	t.logOnce.Do(func() {
		if log != nil {
			log.Info("secret tmpfs mounted without noswap: the kernel does not support it (Linux 6.4 and later do); secrets may be swapped out where swap is enabled")
		}
	})
	return nil
}

// checkTmpfs is checkOurTmpfs without the marker (before it is written).
func checkTmpfs(root *os.Root, dir string) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return err
	}
	if sfs.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s is not a tmpfs after mounting one", dir)
	}
	return nil
}

// remove unmounts the tmpfs and removes its mount point, for good. A
// mount point that is not a mount is removed only when empty; a tmpfs
// without the marker is left alone (error).
func (v *secretVolume) remove() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	return removeSecretDir(v.dir, v.marker)
}

func removeSecretDir(dir, marker string) error {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	err = checkOurTmpfs(root, dir, marker)
	root.Close()
	switch {
	case errors.Is(err, errNotMounted):
	case err != nil:
		return err
	default:
		if err := unix.Unmount(dir, 0); err != nil {
			if !errors.Is(err, syscall.EBUSY) {
				return fmt.Errorf("unmount secret tmpfs %s: %w", dir, err)
			}
			// Still in use by a leftover container mount: detach; the
			// kernel frees it with its last user.
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount secret tmpfs %s: %w", dir, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove secret mount point: %w", err)
	}
	return nil
}

// writeAtomic writes one mount's directory the kubelet's way (see the top
// of this file).
func writeAtomic(root *os.Root, mf mountFiles) error {
	if err := root.Mkdir(mf.subdir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := root.Chmod(mf.subdir, 0o755); err != nil {
		return err
	}
	ts := newTimestampDir()
	tsPath := mf.subdir + "/" + ts
	if err := root.Mkdir(tsPath, 0o755); err != nil {
		return err
	}
	if err := root.Chmod(tsPath, 0o755); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(mf.files))
	for _, k := range keys {
		if err := writeFile(root, tsPath+"/"+k, mf); err != nil {
			_ = root.RemoveAll(tsPath)
			return err
		}
	}
	tmp := mf.subdir + "/" + dataLinkTmp
	_ = root.Remove(tmp)
	if err := root.Symlink(ts, tmp); err != nil {
		_ = root.RemoveAll(tsPath)
		return err
	}
	if err := root.Rename(tmp, mf.subdir+"/"+dataLink); err != nil {
		_ = root.Remove(tmp)
		_ = root.RemoveAll(tsPath)
		return err
	}
	// The key links, after the swap, then what is stale.
	for _, k := range keys {
		link, target := mf.subdir+"/"+k, dataLink+"/"+k
		if got, err := root.Readlink(link); err == nil && got == target {
			continue
		}
		_ = root.Remove(link)
		if err := root.Symlink(target, link); err != nil {
			return err
		}
	}
	d, err := root.Open(mf.subdir)
	if err != nil {
		return err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	var errs []error
	for _, de := range entries {
		n := de.Name()
		switch {
		case n == dataLink || n == ts:
		case strings.HasPrefix(n, ".."):
			errs = append(errs, root.RemoveAll(mf.subdir+"/"+n))
		case de.Type()&fs.ModeSymlink != 0:
			if _, ok := mf.files[n]; !ok {
				errs = append(errs, root.Remove(mf.subdir+"/"+n))
			}
		}
	}
	return errors.Join(errs...)
}

func writeFile(root *os.Root, name string, mf mountFiles) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(mf.files[filepath.Base(name)])
	if err == nil {
		err = f.Chown(mf.uid, mf.gid)
	}
	if err == nil {
		mode := mf.mode
		if m, ok := mf.modes[filepath.Base(name)]; ok {
			mode = m
		}
		err = f.Chmod(mode) // after chown, which may clear mode bits
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func newTimestampDir() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return ".." + time.Now().UTC().Format("2006_01_02_15_04_05.000000000") + "." + hex.EncodeToString(b[:])
}
