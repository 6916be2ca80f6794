package volumes

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

const mi = 1 << 20

// requireLoop skips unless the test can attach loop devices and mount.
func requireLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices and mounts)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "resize2fs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("needs /dev/loop-control")
	}
}

// testDir is a volume dir whose mounts and loop devices are gone after the
// test, whatever it left.
func testDir(t *testing.T) string {
	t.Helper()
	requireLoop(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanupDir(t, dir) })
	return dir
}

func cleanupDir(t *testing.T, dir string) {
	ms, err := readMounts()
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, m := range slices.Backward(ms) {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			if err := unix.Unmount(m.point, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Errorf("cleanup: unmount %s: %v", m.point, err)
			}
		}
	}
	var imgs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".img") {
			imgs = append(imgs, p)
		}
		return nil
	})
	for _, img := range imgs {
		for _, d := range testLoops(t, img) {
			if out, err := exec.Command("losetup", "-d", d).CombinedOutput(); err != nil {
				t.Errorf("cleanup: losetup -d %s: %v: %s", d, err, out)
			}
		}
	}
}

// testLoops is what losetup -j reports for img.
func testLoops(t *testing.T, img string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-n", "-O", "NAME", "-j", img).Output()
	if err != nil {
		t.Fatalf("losetup -j %s: %v", img, err)
	}
	return strings.Fields(string(out))
}

// mountsAt counts the mounts at p.
func mountsAt(t *testing.T, p string) int {
	t.Helper()
	ms, err := readMounts()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.point == p {
			n++
		}
	}
	return n
}

// fakeUsers is a Users hook the test sets.
type fakeUsers struct {
	mu sync.Mutex
	rw map[string]string
	ro map[string][]string
}

func (u *fakeUsers) set(ns, name, rw string, ro ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rw == nil {
		u.rw, u.ro = map[string]string{}, map[string][]string{}
	}
	u.rw[key(ns, name)], u.ro[key(ns, name)] = rw, ro
}

func (u *fakeUsers) users(ns, name string) (string, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rw[key(ns, name)], slices.Clone(u.ro[key(ns, name)])
}

// logBuffer collects a manager's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startManager(t *testing.T, dir string, w io.Writer) *Manager {
	t.Helper()
	if w == nil {
		w = t.Output()
	}
	m, err := New(dir, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

func apply(t *testing.T, m *Manager, name, size string, protect bool) *herdv1.Volume {
	t.Helper()
	v, _, err := m.Apply(t.Context(), &herdv1.VolumeSpec{Name: name, Size: size, DeletionProtection: protect})
	if err != nil {
		t.Fatalf("apply volume %s: %v", name, err)
	}
	return v
}

func mountPath(t *testing.T, m *Manager, name string) string {
	t.Helper()
	p, err := m.MountPath(t.Context(), "", name)
	if err != nil {
		t.Fatalf("mount path of %s: %v", name, err)
	}
	return p
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func capacity(t *testing.T, p string) int64 {
	t.Helper()
	var s unix.Statfs_t
	if err := unix.Statfs(p, &s); err != nil {
		t.Fatal(err)
	}
	return int64(s.Blocks) * s.Bsize
}

// imageOf is the image file of a volume mounted at mnt.
func imageOf(mnt string) string { return filepath.Join(filepath.Dir(mnt), imageFile) }
