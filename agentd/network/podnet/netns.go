//go:build linux

package podnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// createNetns creates a new network namespace and bind-mounts it at path.
//
// The namespace is created by unshare(CLONE_NEWNET) on a fresh goroutine that
// locks its OS thread. Afterwards the thread goes back to its original
// namespace and is unlocked; if it cannot go back, it stays locked and the Go
// runtime discards it when the goroutine exits, so a namespace change never
// leaks into another goroutine. The bind mount keeps the namespace alive.
func createNetns(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns mount point: %w", err)
	}
	_ = f.Close()

	err = onNetnsThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount netns: %w", err)
		}
		return nil
	})
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// removeNetns unmounts and removes a netns bind mount. A missing path is not
// an error.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// isNetnsMount reports whether path is a mounted network namespace.
func isNetnsMount(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// restore moves the locked calling thread back to orig and unlocks it. On
// failure the thread stays locked, so the runtime discards it (or, for the
// main thread, parks it for good) when its goroutine exits.
func restore(orig netns.NsHandle) {
	if err := netns.Set(orig); err == nil {
		runtime.UnlockOSThread()
	}
}

// inNetns runs fn on a dedicated OS thread that has joined the network
// namespace at path ("" = the caller's current one, i.e. no switch). fn must
// not start goroutines that depend on the namespace. Processes exec'd by fn
// (CNI plugins) inherit the namespace. See createNetns for how the thread is
// returned.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return onNetnsThread(func() error {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("open netns %s: %w", path, err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return fn()
	})
}

// onNetnsThread runs fn on a fresh goroutine locked to its OS thread. fn may
// move the thread into another network namespace; afterwards the thread goes
// back to the one it started in and is unlocked, or, if it cannot go back,
// stays locked so that the runtime discards it (restore).
func onNetnsThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		defer restore(orig)
		errc <- fn()
	}()
	return <-errc
}
