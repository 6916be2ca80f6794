package volumes

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Backups are tar streams (PAX) of a volume's regular files, directories
// and symlinks with their mode, owner and modification time; the root
// directory is the entry "./" and lost+found is left out. Hard links are
// archived as separate files; other file types (sockets, FIFOs, device
// nodes, which a nodev volume cannot use) are skipped.
//
// Both directions go through an os.Root of the mounted filesystem, so no
// path, and no symlink in the volume, reaches outside it.

const lostFound = "lost+found"

// Backup writes a tar of the volume's files to w. It is refused (ErrInUse)
// while a pod mounts the volume read-write: the copy would not be
// consistent. Readers may keep running.
func (m *Manager) Backup(ctx context.Context, ns, name string, w io.Writer) error {
	ns = defaultNS(ns)
	what := key(ns, name)
	v, err := m.lookup(ns, name)
	if err != nil {
		return err
	}
	// Under the write side of the bind lock no pod is being admitted, so
	// one that mounts it read-write either shows in Users or comes after
	// and finds a backup running (which it may: a backup is a read).
	m.bindMu.Lock()
	err = inUse(what, m.usersOf, ns, name, true)
	if err == nil {
		m.mu.Lock()
		switch {
		case v.gone:
			err = newError(ErrNotFound, "volume %s not found on this node", what)
		case v.restoring:
			err = newError(ErrInUse, "volume %s is being restored", what)
		default:
			v.backups++
		}
		m.mu.Unlock()
	}
	m.bindMu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		m.mu.Lock()
		v.backups--
		m.mu.Unlock()
	}()
	root, err := m.openMounted(ctx, v)
	if err != nil {
		return fmt.Errorf("back up volume %s: %w", what, err)
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	if err := backupDir(ctx, root, tw, "."); err != nil {
		return fmt.Errorf("back up volume %s: %w", what, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("back up volume %s: %w", what, err)
	}
	return nil
}

// openMounted mounts v if needed and opens its filesystem root, checked
// to be a mount (not the empty mount point below it).
func (m *Manager) openMounted(ctx context.Context, v *volume) (*os.Root, error) {
	v.op.Lock()
	mnt, err := m.mountLocked(ctx, v)
	v.op.Unlock()
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(mnt)
	if err != nil {
		return nil, err
	}
	var st, parent unix.Stat_t
	f, err := root.Open(".")
	if err == nil {
		err = unix.Fstat(int(f.Fd()), &st)
		f.Close()
	}
	if err == nil {
		err = unix.Stat(v.dir, &parent)
	}
	if err == nil && st.Dev == parent.Dev {
		err = fmt.Errorf("%s is not mounted", mnt)
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

func backupDir(ctx context.Context, root *os.Root, tw *tar.Writer, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is no longer a directory", rel)
	}
	name := rel + "/"
	if rel == "." {
		name = "./"
	}
	if err := tw.WriteHeader(header(fi, name, tar.TypeDir)); err != nil {
		return err
	}
	d, err := root.Open(rel)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, err)
	}
	slices.Sort(names)
	for _, n := range names {
		if rel == "." && n == lostFound {
			continue
		}
		p := n
		if rel != "." {
			p = rel + "/" + n
		}
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		switch fi.Mode().Type() {
		case fs.ModeDir:
			if err := backupDir(ctx, root, tw, p); err != nil {
				return err
			}
		case fs.ModeSymlink:
			target, err := root.Readlink(p)
			if err != nil {
				return err
			}
			h := header(fi, p, tar.TypeSymlink)
			h.Linkname = target
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		case 0:
			if err := backupFile(root, tw, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func backupFile(root *os.Root, tw *tar.Writer, p string) error {
	// O_NOFOLLOW: what was a file at Lstat is not followed if it became a
	// symlink since; the header comes from the open file itself.
	f, err := root.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	h := header(fi, p, tar.TypeReg)
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, h.Size); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}

// header is the tar header of fi, with the numeric owner only (the names
// of the host's users mean nothing inside a volume).
func header(fi fs.FileInfo, name string, typ byte) *tar.Header {
	h := &tar.Header{Typeflag: typ, Name: name, ModTime: fi.ModTime(), Format: tar.FormatPAX}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Mode = int64(st.Mode & 0o7777)
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
	}
	return h
}

// Restore replaces the volume's files (all but lost+found) with those of
// the tar r, keeping their mode, owner and modification time. It is
// refused (ErrInUse) while any pod mounts the volume, and pods cannot
// mount it until it is done. Names that are absolute or contain "..", and
// entries under a symlink, are refused; only regular files, directories
// and symlinks are restored. It returns the bytes of file content written
// and the entries restored. On error the volume holds what was extracted
// until then.
func (m *Manager) Restore(ctx context.Context, ns, name string, r io.Reader) (bytes, files int64, err error) {
	ns = defaultNS(ns)
	what := key(ns, name)
	v, err := m.lookup(ns, name)
	if err != nil {
		return 0, 0, err
	}
	// The write side of the bind lock only for the check: once restoring
	// is set, MountPath refuses the volume, so a pod admitted meanwhile
	// waits for the restore instead of holding up every admission.
	m.bindMu.Lock()
	err = inUse(what, m.usersOf, ns, name, false)
	if err == nil {
		m.mu.Lock()
		switch {
		case v.gone:
			err = newError(ErrNotFound, "volume %s not found on this node", what)
		case v.restoring:
			err = newError(ErrInUse, "volume %s is being restored", what)
		case v.backups > 0:
			err = newError(ErrInUse, "volume %s is being backed up", what)
		}
		m.mu.Unlock()
	}
	var root *os.Root
	if err == nil {
		// Mount before setting restoring (mountLocked refuses a volume
		// being restored).
		root, err = m.openMounted(ctx, v)
	}
	if err == nil {
		m.mu.Lock()
		v.restoring = true
		m.mu.Unlock()
	}
	m.bindMu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		root.Close()
		m.mu.Lock()
		v.restoring = false
		m.mu.Unlock()
	}()
	m.mu.Lock()
	size := v.rec.Size
	m.mu.Unlock()
	bytes, files, err = restore(ctx, root, r)
	if err == nil {
		err = syncfs(root)
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return bytes, files, fmt.Errorf("restore volume %s: the volume is full (size %s): %w", what, size, err)
		}
		return bytes, files, fmt.Errorf("restore volume %s: %w", what, err)
	}
	m.log.Info("volume restored", "volume", what, "bytes", bytes, "files", files)
	return bytes, files, nil
}

func syncfs(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// emptyRoot removes everything in root but lost+found.
func emptyRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == lostFound {
			continue
		}
		if err := root.RemoveAll(n); err != nil {
			return fmt.Errorf("empty the volume: %w", err)
		}
	}
	return nil
}

// entryName checks a tar entry's name and returns it cleaned ("." for
// the root).
func entryName(n string) (string, error) {
	switch {
	case n == "":
		return "", fmt.Errorf("an entry has no name")
	case strings.ContainsRune(n, 0):
		return "", fmt.Errorf("entry %q: NUL in the name", n)
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("entry %q: absolute names are refused", n)
	}
	for _, e := range strings.Split(n, "/") {
		if e == ".." {
			return "", fmt.Errorf("entry %q: names with \"..\" are refused", n)
		}
	}
	return path.Clean(n), nil
}

type dirMeta struct {
	name     string
	mode     os.FileMode
	uid, gid int
	mtime    time.Time
}

func restore(ctx context.Context, root *os.Root, r io.Reader) (bytes, files int64, err error) {
	if err := emptyRoot(root); err != nil {
		return 0, 0, err
	}
	tr := tar.NewReader(r)
	var dirs []dirMeta
	for {
		if err := ctx.Err(); err != nil {
			return bytes, files, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bytes, files, fmt.Errorf("read the archive: %w", err)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return bytes, files, err
		}
		if name == lostFound || strings.HasPrefix(name, lostFound+"/") {
			continue
		}
		mode := os.FileMode(h.Mode & 0o777)
		if h.Mode&0o4000 != 0 {
			mode |= os.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			mode |= os.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		if name == "." {
			if h.Typeflag != tar.TypeDir {
				return bytes, files, fmt.Errorf("entry %q: the root must be a directory", h.Name)
			}
			dirs = append(dirs, dirMeta{".", mode, h.Uid, h.Gid, h.ModTime})
			continue
		}
		if err := parents(root, name); err != nil {
			return bytes, files, err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err := root.Mkdir(name, 0o700)
			if errors.Is(err, fs.ErrExist) {
				if fi, lerr := root.Lstat(name); lerr != nil || !fi.IsDir() {
					err = fmt.Errorf("entry %s: not a directory in the volume", name)
				} else {
					err = nil
				}
			}
			if err != nil {
				return bytes, files, err
			}
			dirs = append(dirs, dirMeta{name, mode, h.Uid, h.Gid, h.ModTime})
		case tar.TypeReg:
			if err := replaceable(root, name); err != nil {
				return bytes, files, err
			}
			n, err := restoreFile(root, name, tr, h, mode)
			bytes += n
			if err != nil {
				return bytes, files, err
			}
		case tar.TypeSymlink:
			if err := replaceable(root, name); err != nil {
				return bytes, files, err
			}
			if err := restoreSymlink(root, name, h); err != nil {
				return bytes, files, err
			}
		default:
			return bytes, files, fmt.Errorf("entry %s: type %q is not supported (regular files, directories and symlinks only)", name, h.Typeflag)
		}
		files++
	}
	// Directories last, deepest first: writing their entries changed
	// their mtime, and a read-only mode would have been in the way.
	for _, d := range slices.Backward(dirs) {
		err := root.Lchown(d.name, d.uid, d.gid)
		if err == nil {
			err = root.Chmod(d.name, d.mode)
		}
		if err == nil {
			err = root.Chtimes(d.name, d.mtime, d.mtime)
		}
		if err != nil {
			return bytes, files, fmt.Errorf("entry %s: %w", d.name, err)
		}
	}
	return bytes, files, nil
}

// parents makes sure every directory above name is a real directory (not
// a symlink), creating missing ones: nothing is written through a
// symlink, even one that stays inside the volume.
func parents(root *os.Root, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	p := ""
	for _, e := range strings.Split(dir, "/") {
		p = path.Join(p, e)
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if err := root.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("entry %s: %w", name, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("entry %s: %w", name, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("entry %s: %s is not a directory (writes through symlinks are refused)", name, p)
		}
	}
	return nil
}

// replaceable removes a non-directory at name (an earlier entry of the
// same name); a directory there is an error.
func replaceable(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("entry %s: %w", name, err)
	case fi.IsDir():
		return fmt.Errorf("entry %s: a directory of that name is in the archive too", name)
	}
	if err := root.Remove(name); err != nil {
		return fmt.Errorf("entry %s: %w", name, err)
	}
	return nil
}

func restoreFile(root *os.Root, name string, r io.Reader, h *tar.Header, mode os.FileMode) (int64, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("entry %s: %w", name, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Chown(h.Uid, h.Gid)
	}
	if err == nil {
		err = f.Chmod(mode) // after chown, which clears setuid
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chtimes(name, h.ModTime, h.ModTime)
	}
	if err != nil {
		return n, fmt.Errorf("entry %s: %w", name, err)
	}
	return n, nil
}

func restoreSymlink(root *os.Root, name string, h *tar.Header) error {
	if err := root.Symlink(h.Linkname, name); err != nil {
		return fmt.Errorf("entry %s: %w", name, err)
	}
	err := root.Lchown(name, h.Uid, h.Gid)
	if err == nil {
		// os.Root has no Lchtimes: set the link's own time relative to a
		// handle of its (checked) parent directory.
		var d *os.File
		if d, err = root.Open(filepath.Dir(name)); err == nil {
			ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
			err = unix.UtimesNanoAt(int(d.Fd()), filepath.Base(name), ts, unix.AT_SYMLINK_NOFOLLOW)
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("entry %s: %w", name, err)
	}
	return nil
}
