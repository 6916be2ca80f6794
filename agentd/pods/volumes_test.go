package pods

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// dirVolumes is a VolumeSource over plain directories: the pod manager's
// side of volumes (admission, one writer, bind mounts) without the loop
// devices, which agentd/volumes tests on their own and the agentd tests
// together.
type dirVolumes struct {
	root string
	mu   sync.RWMutex
}

func (v *dirVolumes) MountPath(_ context.Context, ns, name string) (string, error) {
	p := filepath.Join(v.root, ns, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no volume %s/%s", ns, name)
	}
	return p, nil
}

func (v *dirVolumes) Bind() func() { v.mu.RLock(); return v.mu.RUnlock }

// CheckWrite admits every writer: backups are agentd/volumes' own.
func (v *dirVolumes) CheckWrite(string, string) error { return nil }

func (v *dirVolumes) add(t *testing.T, ns, name string) string {
	p := filepath.Join(v.root, ns, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// scratchEnv is an env and a Manager with dirVolumes; mutate changes the
// Manager's config further.
func scratchEnv(t *testing.T, mutate ...func(*Config)) (*env, *Manager, *dirVolumes) {
	e := newEnv(t)
	vols := &dirVolumes{root: t.TempDir()}
	t.Cleanup(func() { _ = acctest.UnmountUnder(filepath.Join(e.stateDir(), "scratch")) })
	m := e.manager(t, append([]func(*Config){func(c *Config) { c.Volumes = vols; c.NodeName = "n1" }}, mutate...)...)
	return e, m, vols
}

func TestVolumeMountsAndOneWriter(t *testing.T) {
	t.Parallel()
	e, m, vols := scratchEnv(t)
	ctx := testContext(t)
	host := vols.add(t, "default", "data")
	if err := os.WriteFile(filepath.Join(host, "seed"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	writer := e.pod("writer", "Always", "sleep", "3600")
	writer.Containers[0].VolumeMounts = []*herdv1.VolumeMount{
		{Volume: "data", Path: "/data"},
		{Volume: "data", Path: "/logs", SubPath: "app/logs"},
	}
	if _, _, err := m.Apply(ctx, writer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "writer", "running", allRunning)
	if got := shellIn(t, e, "writer", "main", "cat /data/seed && echo one > /data/out && echo two > /logs/l"); got != "from the host" {
		t.Errorf("the volume's file in the container = %q", got)
	}
	for file, want := range map[string]string{"out": "one\n", "app/logs/l": "two\n"} {
		if b, err := os.ReadFile(filepath.Join(host, file)); err != nil || string(b) != want {
			t.Errorf("%s on the volume = %q, %v; want %q", file, b, err, want)
		}
	}

	// A second writer is refused with the holder's name; nothing is left.
	second := e.pod("second", "Always", "sleep", "3600")
	second.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}}
	_, _, err := m.Apply(ctx, second)
	if !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), "writer") {
		t.Fatalf("second writer: %v, want ErrVolumeInUse naming pod writer", err)
	}
	if _, err := m.Get(ctx, "second"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused pod exists: %v", err)
	}
	// A reader may share it, read-only.
	reader := e.pod("reader", "Always", "sleep", "3600")
	reader.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data", ReadOnly: true}}
	if _, _, err := m.Apply(ctx, reader); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "reader", "running", allRunning)
	if got := shellIn(t, e, "reader", "main", "cat /data/out; (echo x > /data/y) 2>/dev/null || echo refused"); got != "one\nrefused" {
		t.Errorf("reader: %q, want the file and a refused write", got)
	}
	if rw, ro := m.VolumeUsers("default", "data"); rw != "writer" || len(ro) != 1 || ro[0] != "reader" {
		t.Errorf("VolumeUsers = %q, %v", rw, ro)
	}
	// A missing volume, or one of another namespace, is refused.
	lost := e.pod("lost", "Always", "sleep", "3600")
	lost.Namespace = "other"
	lost.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}}
	if _, _, err := m.Apply(ctx, lost); !errors.Is(err, ErrVolumeUnavailable) || !strings.Contains(err.Error(), "other/data") {
		t.Errorf("volume of another namespace: %v, want ErrVolumeUnavailable", err)
	}

	// Once the writer is deleted, another pod may write. Its sub_path pin
	// and scratch directory are gone with it.
	var zero time.Duration
	writerPod, err := m.Get(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	scratch := m.scratchDir("writer", writerPod.GetUid())
	if _, err := os.Stat(filepath.Join(scratch, subpathSubdir, "main.1")); err != nil {
		t.Errorf("the sub_path pin: %v", err)
	}
	if _, err := m.DeleteWith(ctx, "writer", DeleteOptions{Grace: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(scratch); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the writer's scratch dir after its deletion: %v", err)
	}
	if _, _, err := m.Apply(ctx, second); err != nil {
		t.Fatalf("a writer after the first was deleted: %v", err)
	}
	waitFor(t, m, "second", "running", allRunning)
	if got := shellIn(t, e, "second", "main", "cat /data/out"); got != "one" {
		t.Errorf("the data after the writer's deletion = %q", got)
	}
}

// A symlink planted in a volume does not steer a sub_path mount out of it.
func TestVolumeSubPathSymlinkRefused(t *testing.T) {
	t.Parallel()
	e, m, vols := scratchEnv(t)
	ctx := testContext(t)
	host := vols.add(t, "default", "data")
	if err := os.Symlink("/etc", filepath.Join(host, "escape")); err != nil {
		t.Fatal(err)
	}
	p := e.pod("sub", "Always", "sleep", "3600")
	p.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data", SubPath: "escape"}}
	if _, _, err := m.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	pod := waitFor(t, m, "sub", "refused", func(p *herdv1.Pod) bool {
		return p.GetStatus().GetContainers()[0].GetReason() == ReasonCreateContainerConfigError
	})
	if msg := pod.GetStatus().GetContainers()[0].GetMessage(); !strings.Contains(msg, "symlinks are refused") {
		t.Errorf("status message = %q", msg)
	}
}

func TestEmptyDirsSharedAndRemoved(t *testing.T) {
	t.Parallel()
	e, m, _ := scratchEnv(t)
	ctx := testContext(t)
	p := e.pod("scratch", "Always", "sleep", "3600")
	p.EmptyDirs = []*herdv1.EmptyDir{{Name: "work"}, {Name: "fast", Medium: "memory", SizeLimit: "4Mi"}}
	p.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{EmptyDir: "work", Path: "/work"}, {EmptyDir: "fast", Path: "/fast"}}
	p.Containers = append(p.Containers, &herdv1.ContainerSpec{Name: "side", Image: e.ref, Command: []string{"sleep", "3600"},
		VolumeMounts: []*herdv1.VolumeMount{{EmptyDir: "work", Path: "/shared"}, {EmptyDir: "fast", Path: "/fast"}}})
	pod, _, err := m.Apply(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "scratch", "running", allRunning)
	shellIn(t, e, "scratch", "main", "echo hello > /work/f && echo quick > /fast/g")
	if got := shellIn(t, e, "scratch", "side", "cat /shared/f /fast/g"); got != "hello\nquick" {
		t.Errorf("the other container sees %q", got)
	}
	// The memory one is a tmpfs of its size: 5 MiB do not fit.
	out := shellIn(t, e, "scratch", "side", "dd if=/dev/zero of=/fast/big bs=1M count=5 2>&1; echo rc=$?")
	if !strings.Contains(out, "No space left on device") {
		t.Errorf("writing 5 MiB into a 4Mi memory empty_dir: %q, want ENOSPC", out)
	}
	dir := m.scratchDir("scratch", pod.GetUid())
	if _, err := os.Stat(filepath.Join(dir, "empty", "work", "f")); err != nil {
		t.Errorf("the disk empty_dir on the host: %v", err)
	}
	var zero time.Duration
	if _, err := m.DeleteWith(ctx, "scratch", DeleteOptions{Grace: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pod's scratch dir after deletion: %v, want gone", err)
	}
	if err := checkNoMounts(dir); err != nil {
		t.Errorf("after deletion: %v", err)
	}
}

// A config file change reaches the running container without a restart,
// and a reader never sees a half-written file.
func TestConfigFileUpdateInPlace(t *testing.T) {
	t.Parallel()
	e, m, _ := scratchEnv(t)
	ctx := testContext(t)
	v1 := strings.Repeat("a", 64<<10)
	v2 := strings.Repeat("b", 64<<10)
	spec := func(content string) *herdv1.PodSpec {
		// The reader counts what it saw that is neither whole version.
		p := e.pod("cfg", "Always", "sh", "-c", `while true; do c=$(cat /etc/app/app.conf); `+
			`case "$c" in *a*b*|*b*a*) echo torn >> /tmp/torn;; esac; done`)
		p.Containers[0].ConfigFiles = []*herdv1.ConfigFile{{Path: "/etc/app/app.conf", Content: content}, {Path: "/etc/app/other", Content: "x"}}
		return p
	}
	first, _, err := m.Apply(ctx, spec(v1))
	if err != nil {
		t.Fatal(err)
	}
	running := waitFor(t, m, "cfg", "running", allRunning)
	started := running.GetStatus().GetContainers()[0].GetStartedAt().AsTime()
	if got := shellIn(t, e, "cfg", "main", "head -c 3 /etc/app/app.conf; stat -L -c %a /etc/app/other"); got != "aaa644" {
		t.Errorf("first config = %q", got)
	}
	for i := range 20 {
		content := v2
		if i%2 == 1 {
			content = v1
		}
		updated, created, err := m.Apply(ctx, spec(content))
		if err != nil || created {
			t.Fatalf("config update %d: created=%v, %v", i, created, err)
		}
		if updated.GetUid() != first.GetUid() {
			t.Fatalf("the config update replaced the pod (uid %s, was %s)", updated.GetUid(), first.GetUid())
		}
	}
	if got := shellIn(t, e, "cfg", "main", "head -c 3 /etc/app/app.conf; cat /tmp/torn 2>/dev/null | wc -l"); got != "aaa0" {
		t.Errorf("after the updates: %q, want the last content and no torn read", got)
	}
	now, err := m.Get(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	cs := now.GetStatus().GetContainers()[0]
	if cs.GetRestartCount() != 0 || !cs.GetStartedAt().AsTime().Equal(started) {
		t.Errorf("the container restarted: count %d, started %v (was %v)", cs.GetRestartCount(), cs.GetStartedAt().AsTime(), started)
	}
	if c := now.GetSpec().GetContainers()[0].GetConfigFiles()[0].GetContent(); c != v1 {
		t.Errorf("the recorded spec has the old content (%q...)", c[:3])
	}
	// Another change than config content is still a conflict.
	other := spec(v1)
	other.Containers[0].ConfigFiles[1].Path = "/etc/app/renamed"
	if _, _, err := m.Apply(ctx, other); !errors.Is(err, ErrConflict) {
		t.Errorf("a config path change: %v, want ErrConflict", err)
	}
}

// imageScratch gives size-limited disk empty_dirs agentd/volumes' real
// ext4 images on loop devices, as agentd does.
type imageScratch struct{}

func (imageScratch) Create(ctx context.Context, img string, size int64) error {
	return volumes.CreateImage(ctx, img, size)
}

func (imageScratch) Mount(ctx context.Context, img, mnt string) error {
	return volumes.Mount(ctx, img, mnt)
}

func (imageScratch) Unmount(ctx context.Context, img, mnt string) error {
	return volumes.Unmount(ctx, img, mnt)
}

// loopsOf lists the loop devices losetup reports backed by img.
func loopsOf(t *testing.T, img string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-n", "-O", "NAME", "-j", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -j %s: %v: %s", img, err, out)
	}
	return strings.Fields(string(out))
}

// loopBacks reports whether loop device dev is still attached to img, by
// the kernel's record (which names a deleted file "<img> (deleted)", and
// which losetup -j may then not match).
func loopBacks(dev, img string) bool {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), img)
}

// A disk empty_dir with a size_limit is an ext4 image of that size: a
// container cannot write more, and deleting the pod unmounts and detaches
// it and removes its scratch directory.
func TestSizeLimitedEmptyDir(t *testing.T) {
	t.Parallel()
	e, m, _ := scratchEnv(t, func(c *Config) { c.Images = imageScratch{} })
	ctx := testContext(t)
	var zero time.Duration
	p := e.pod("sized", "Always", "sleep", "3600")
	p.EmptyDirs = []*herdv1.EmptyDir{{Name: "work", SizeLimit: "8Mi"}}
	p.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{EmptyDir: "work", Path: "/work"}}
	pod, _, err := m.Apply(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	dir := m.scratchDir("sized", pod.GetUid())
	img := filepath.Join(dir, emptySubdir, ".work.img")
	var devs []string
	// Whatever fails, no pod, mount or loop device outlives the test.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := m.DeleteWith(ctx, "sized", DeleteOptions{Grace: &zero}); err != nil && !errors.Is(err, ErrNotFound) {
			t.Logf("cleanup: delete pod: %v", err)
		}
		_ = acctest.UnmountUnder(dir)
		out, _ := exec.Command("losetup", "-n", "-O", "NAME", "-j", img).Output()
		for _, d := range append(devs, strings.Fields(string(out))...) {
			if loopBacks(d, img) {
				if out, err := exec.Command("losetup", "-d", d).CombinedOutput(); err != nil {
					t.Logf("cleanup: losetup -d %s: %v: %s", d, err, out)
				}
			}
		}
	})
	waitFor(t, m, "sized", "running", allRunning)
	if devs = loopsOf(t, img); len(devs) != 1 {
		t.Fatalf("loop devices of %s: %v, want one", img, devs)
	}

	// The container's directory is the image: ext4 of at most 8 MiB.
	host := filepath.Join(dir, emptySubdir, "work")
	var st unix.Statfs_t
	if err := unix.Statfs(host, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.EXT4_SUPER_MAGIC || st.Blocks*uint64(st.Bsize) > 8<<20 {
		t.Errorf("the empty_dir on the host: filesystem %#x of %d bytes, want ext4 of at most 8 MiB", st.Type, st.Blocks*uint64(st.Bsize))
	}
	shellIn(t, e, "sized", "main", "dd if=/dev/zero of=/work/small bs=1M count=1 2>/dev/null")
	if fi, err := os.Stat(filepath.Join(host, "small")); err != nil || fi.Size() != 1<<20 {
		t.Errorf("1 MiB written in the container, on the host: %v, %v", fi, err)
	}
	out := shellIn(t, e, "sized", "main", "dd if=/dev/zero of=/work/big bs=1M count=16 2>&1; echo rc=$?")
	if !strings.Contains(out, "No space left on device") || strings.HasSuffix(out, "rc=0") {
		t.Errorf("writing 16 MiB into an 8Mi empty_dir: %q, want ENOSPC", out)
	}

	if _, err := m.DeleteWith(ctx, "sized", DeleteOptions{Grace: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pod's scratch dir after deletion: %v, want gone", err)
	}
	if err := checkNoMounts(dir); err != nil {
		t.Errorf("after deletion: %v", err)
	}
	if left := loopsOf(t, img); len(left) != 0 {
		t.Errorf("losetup -j %s after deletion: %v, want none", img, left)
	}
	for _, d := range devs {
		if loopBacks(d, img) {
			t.Errorf("%s is still attached to the deleted image after the pod's deletion", d)
		}
	}
}
