package volumes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// An image is an ext4 filesystem in a sparse file, attached to a loop
// device and mounted nodev,nosuid. The functions here are stateless: what
// is attached and mounted is read back from the kernel (losetup -j and
// /proc/self/mountinfo) each time, so they are idempotent and pick up
// after a restart of agentd (still mounted) or of the machine (nothing
// attached).

// mountFlags are the flags of every image mount: a volume holds a
// container's data, never device nodes or setuid programs for the host.
const mountFlags = unix.MS_NODEV | unix.MS_NOSUID

// CreateImage creates a sparse file of size bytes at img and makes an ext4
// filesystem in it, with no blocks reserved for root (the container gets
// the whole size). img must not exist. On failure nothing is left behind.
func CreateImage(ctx context.Context, img string, size int64) (err error) {
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(img)
		}
	}()
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size image %s to %d bytes: %w", img, size, err)
	}
	// 4 KiB blocks whatever the size, so that a small volume can still
	// grow far (ext4 with 1 KiB blocks stops at 4 TiB); lazy init keeps
	// the file sparse and mkfs fast.
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", img); err != nil {
		return fmt.Errorf("make filesystem in %s: %w", img, err)
	}
	return nil
}

// Mount attaches img to a loop device and mounts it at mnt (an existing
// directory). It is idempotent: a loop device already backed by img is
// reused, and a mount of that device at mnt is kept. Anything else
// mounted at mnt is an error and is left alone.
func Mount(ctx context.Context, img, mnt string) error {
	mnt, err := canonical(mnt)
	if err != nil {
		return err
	}
	devs, err := loopDevices(ctx, img)
	if err != nil {
		return err
	}
	top, err := topMount(mnt)
	if err != nil {
		return err
	}
	if top != nil {
		if owns(devs, top) {
			return nil
		}
		return fmt.Errorf("%s has %s (%s) mounted, not the image %s: not touching it", mnt, top.source, top.fstype, img)
	}
	var attached string
	if len(devs) == 0 {
		// Direct I/O: the volume's pages are cached once (by the ext4
		// inside), not twice; losetup falls back where the file system
		// under the image cannot do it.
		out, err := output(ctx, "losetup", "--find", "--show", "--direct-io=on", img)
		if err != nil {
			return fmt.Errorf("attach %s to a loop device: %w", img, err)
		}
		attached = strings.TrimSpace(out)
		devs = []loopDev{{path: attached}}
	}
	if err := unix.Mount(devs[0].path, mnt, "ext4", mountFlags, ""); err != nil {
		if attached != "" {
			_ = run(context.WithoutCancel(ctx), "losetup", "-d", attached)
		}
		return fmt.Errorf("mount %s (%s) at %s: %w", img, devs[0].path, mnt, err)
	}
	return nil
}

// Unmount unmounts img from mnt (if it is mounted there) and detaches
// every loop device backed by img. Anything else mounted at mnt is an
// error and is left alone.
func Unmount(ctx context.Context, img, mnt string) error {
	mnt, err := canonical(mnt)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	devs, err := loopDevices(ctx, img)
	if err != nil {
		return err
	}
	if mnt != "" {
		// A mount may be stacked on itself (mounted twice): unmount
		// until mnt has none of ours left.
		for range 16 {
			top, err := topMount(mnt)
			if err != nil {
				return err
			}
			if top == nil {
				break
			}
			if !owns(devs, top) {
				return fmt.Errorf("%s has %s (%s) mounted, not the image %s: not touching it", mnt, top.source, top.fstype, img)
			}
			if err := unix.Unmount(mnt, 0); err != nil {
				return fmt.Errorf("unmount %s: %w", mnt, err)
			}
		}
	}
	for _, d := range devs {
		// A device still held (a container's copy of the mount) is
		// marked autoclear by the kernel and goes with its last user.
		if err := run(ctx, "losetup", "-d", d.path); err != nil {
			return fmt.Errorf("detach %s from %s: %w", d.path, img, err)
		}
	}
	return nil
}

// Grow grows img to newSize bytes and its filesystem with it: online when
// it is mounted at mnt, else offline (after a forced check). Growing to
// the current size finishes an interrupted grow; shrinking is an error.
// Online growth needs CAP_SYS_RESOURCE: without it a mounted image is
// refused with ErrNoOnlineGrow before anything changes.
func Grow(ctx context.Context, img, mnt string, newSize int64) error {
	st, err := os.Stat(img)
	if err != nil {
		return fmt.Errorf("grow image: %w", err)
	}
	if newSize < st.Size() {
		return fmt.Errorf("grow image %s: %d bytes is smaller than its %d", img, newSize, st.Size())
	}
	var top *mountEntry
	if c, err := canonical(mnt); err == nil {
		if top, err = topMount(c); err != nil {
			return err
		}
	}
	if top != nil && !canGrowOnline() {
		return fmt.Errorf("grow image %s: %w", img, ErrNoOnlineGrow)
	}
	if newSize > st.Size() {
		if err := os.Truncate(img, newSize); err != nil {
			return fmt.Errorf("grow image %s: %w", img, err)
		}
	}
	devs, err := loopDevices(ctx, img)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if err := run(ctx, "losetup", "-c", d.path); err != nil {
			return fmt.Errorf("set the capacity of %s: %w", d.path, err)
		}
	}
	if top != nil && owns(devs, top) {
		if err := run(ctx, "resize2fs", devFor(devs, top)); err != nil {
			return fmt.Errorf("grow the filesystem of %s online: %w", img, err)
		}
		return nil
	}
	// Offline: a loop device still attached means the filesystem lives on
	// in some other mount namespace (a copy taken while it was mounted),
	// which may still write it; checking or resizing under it would
	// corrupt it. Such copies go soon, and their device with them.
	if err := waitDetached(ctx, img); err != nil {
		return err
	}
	if err := fsck(ctx, img); err != nil {
		return err
	}
	if err := run(ctx, "resize2fs", img); err != nil {
		return fmt.Errorf("grow the filesystem of %s: %w", img, err)
	}
	return nil
}

// detachWait is how long an offline change waits for the image's loop
// devices to go with their last user.
var detachWait = 10 * time.Second

// waitDetached waits until no loop device is backed by img.
func waitDetached(ctx context.Context, img string) error {
	ctx, cancel := context.WithTimeout(ctx, detachWait)
	defer cancel()
	for {
		devs, err := loopDevices(ctx, img)
		if err != nil {
			return err
		}
		if len(devs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("grow image %s offline: it is still attached to %s (a mount of it lives on elsewhere)",
				img, devs[0].path)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ErrNoOnlineGrow: the image is mounted, and this process lacks
// CAP_SYS_RESOURCE, which ext4's online resize requires. Nothing was
// changed; the image can be grown unmounted.
var ErrNoOnlineGrow = errors.New("growing a mounted ext4 filesystem needs CAP_SYS_RESOURCE, which agentd does not have")

// canGrowOnline reports whether the process has CAP_SYS_RESOURCE.
func canGrowOnline() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true // let resize2fs tell
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return true
}

// fsck runs a forced e2fsck -y; exit codes 1 and 2 mean errors were
// corrected, which is fine before a resize.
func fsck(ctx context.Context, img string) error {
	err := run(ctx, "e2fsck", "-f", "-y", img)
	var ee *exitError
	if errors.As(err, &ee) && (ee.code == 1 || ee.code == 2) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the filesystem of %s: %w", img, err)
	}
	return nil
}

// Mounted reports whether anything is mounted at mnt.
func Mounted(mnt string) (bool, error) {
	mnt, err := canonical(mnt)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	top, err := topMount(mnt)
	return top != nil, err
}

// canonical is mnt as /proc/self/mountinfo spells it.
func canonical(mnt string) (string, error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", mnt, err)
	}
	p, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", mnt, err)
	}
	return p, nil
}

type loopDev struct {
	path string
	dev  uint64 // its device number
}

// loopDevices lists the loop devices backed by img.
func loopDevices(ctx context.Context, img string) ([]loopDev, error) {
	out, err := output(ctx, "losetup", "-n", "-O", "NAME", "-j", img)
	if err != nil {
		return nil, fmt.Errorf("find the loop devices of %s: %w", img, err)
	}
	var devs []loopDev
	for _, line := range strings.Fields(out) {
		var st unix.Stat_t
		if err := unix.Stat(line, &st); err != nil {
			return nil, fmt.Errorf("find the loop devices of %s: %w", img, err)
		}
		devs = append(devs, loopDev{path: line, dev: st.Rdev})
	}
	return devs, nil
}

// owns reports whether the mount is of one of devs.
func owns(devs []loopDev, m *mountEntry) bool { return devFor(devs, m) != "" }

func devFor(devs []loopDev, m *mountEntry) string {
	for _, d := range devs {
		if d.dev == m.dev {
			return d.path
		}
	}
	return ""
}

type mountEntry struct {
	dev    uint64
	point  string
	fstype string
	source string
}

// readMounts parses /proc/self/mountinfo, in mount order.
func readMounts() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source super
		f := strings.Fields(sc.Text())
		sep := -1
		for i, s := range f {
			if s == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || len(f) < sep+3 {
			continue
		}
		maj, mnr, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(mnr, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, mountEntry{
			dev:    unix.Mkdev(uint32(ma), uint32(mi)),
			point:  unescape(f[4]),
			fstype: f[sep+1],
			source: unescape(f[sep+2]),
		})
	}
	return out, sc.Err()
}

// topMount is the last (visible) mount at mnt, or nil.
func topMount(mnt string) (*mountEntry, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].point == mnt {
			return &ms[i], nil
		}
	}
	return nil, nil
}

// MountsUnder reports whether anything is mounted at dir or below it.
func MountsUnder(dir string) (bool, error) {
	dir, err := canonical(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ms, err := readMounts()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			return true, nil
		}
	}
	return false, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// exitError is a tool's failure: its exit code and what it wrote to
// stderr.
type exitError struct {
	tool   string
	code   int
	stderr string
}

func (e *exitError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s exited with status %d", e.tool, e.code)
	}
	return fmt.Sprintf("%s exited with status %d: %s", e.tool, e.code, e.stderr)
}

func run(ctx context.Context, tool string, args ...string) error {
	_, err := output(ctx, tool, args...)
	return err
}

func output(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%s: %w", tool, ctx.Err())
		}
		return "", &exitError{tool: tool, code: ee.ExitCode(), stderr: strings.TrimSpace(stderr.String())}
	}
	if err != nil {
		return "", fmt.Errorf("run %s: %w", tool, err)
	}
	return stdout.String(), nil
}
