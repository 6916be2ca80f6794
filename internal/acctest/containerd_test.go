package acctest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/go-digest"
)

// pushBusybox pushes the busybox image to r as repo:tag and returns the
// reference.
func pushBusybox(t *testing.T, r *Registry, repo string) string {
	t.Helper()
	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	ref, err := r.Push(ctx, repo, "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s in %s", ref, since(began))
	return ref
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// startContainerd starts a private containerd the way ContainerdForTest
// does, but leaves the explicit Stop (and its assertions) to the test; the
// cleanup is only a safety net.
func startContainerd(t *testing.T) *Containerd {
	t.Helper()
	RequireContainerd(t)
	dir, err := ShortTempDir("herd-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	c, err := StartContainerd(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("containerd pid %d serving at %s after %s", c.PID(), c.Address, since(began))
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// assertGone checks that Stop left nothing behind.
func assertGone(t *testing.T, c *Containerd, containerPIDs ...int) {
	t.Helper()
	if ProcessAlive(c.PID()) {
		t.Errorf("containerd pid %d still alive after Stop", c.PID())
	}
	shims, err := ShimProcesses(c.Address)
	if err != nil {
		t.Fatal(err)
	}
	if len(shims) > 0 {
		t.Errorf("shims for %s still alive after Stop: %v", c.Address, shims)
	}
	for _, pid := range containerPIDs {
		if ProcessAlive(pid) {
			t.Errorf("container process %d still alive after Stop", pid)
		}
	}
	mounts, err := mountsUnder(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) > 0 {
		t.Errorf("still mounted under %s after Stop: %v", c.Dir, mounts)
	}
	if cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", c.Namespace)); len(cgroups) > 0 {
		t.Errorf("cgroups of namespace %s left behind: %v", c.Namespace, cgroups)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("dir %s still exists after Stop (stat: %v)", c.Dir, err)
	}
}

// TestContainerdEndToEnd is the harness's proof: a private containerd pulls
// the busybox image from the in-process registry (anonymous and with basic
// auth), runs `echo hello-herd` with its output in a log file, and Stop
// tears everything down, including a task left running.
func TestContainerdEndToEnd(t *testing.T) {
	t.Parallel()
	c := startContainerd(t)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(c.Context(context.Background()), 2*time.Minute)
	defer cancel()

	open := RegistryForTest(t)
	locked := RegistryForTest(t, WithBasicAuth("herd", "s3cret"))
	openRef := pushBusybox(t, open, "herd/busybox")
	lockedRef := pushBusybox(t, locked, "herd/busybox")

	want, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, err := want.Digest()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pull without credentials from an auth registry fails", func(t *testing.T) {
		_, err := PullImage(ctx, cl, lockedRef, NewResolver(locked.Host(), "", ""))
		if err == nil {
			t.Fatal("pull without credentials succeeded")
		}
		if !strings.Contains(err.Error(), "401") {
			t.Errorf("want a 401 error, got: %v", err)
		}
		t.Logf("as expected: %v", err)
	})
	t.Run("pull with wrong credentials fails", func(t *testing.T) {
		_, err := PullImage(ctx, cl, lockedRef, NewResolver(locked.Host(), "herd", "wrong"))
		if err == nil {
			t.Fatal("pull with a wrong password succeeded")
		}
		t.Logf("as expected: %v", err)
	})

	for _, tc := range []struct {
		name string
		ref  string
		reg  *Registry
	}{
		{name: "basic-auth", ref: lockedRef, reg: locked},
		{name: "anonymous", ref: openRef, reg: open},
	} {
		t.Run("pull and run "+tc.name, func(t *testing.T) {
			began := time.Now()
			user, pass := tc.reg.Credentials()
			img, err := PullImage(ctx, cl, tc.ref, NewResolver(tc.reg.Host(), user, pass))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("pulled and unpacked %s in %s", tc.ref, since(began))
			if got := img.Target().Digest.String(); got != wantDigest.String() {
				t.Errorf("pulled digest %s, pushed %s", got, wantDigest)
			}
			unpacked, err := img.IsUnpacked(ctx, Snapshotter)
			if err != nil || !unpacked {
				t.Fatalf("image not unpacked into %s: %v, %v", Snapshotter, unpacked, err)
			}

			logPath := filepath.Join(t.TempDir(), "hello.log")
			began = time.Now()
			code, err := c.RunContainer(ctx, img, "hello-"+tc.name, logPath, "echo", "hello-herd")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("ran echo hello-herd in %s", since(began))
			if code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			out, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "hello-herd") {
				t.Errorf("log %s = %q, want it to contain hello-herd", logPath, out)
			}
			// RunContainer cleaned up after itself.
			if _, err := cl.LoadContainer(ctx, "hello-"+tc.name); err == nil {
				t.Errorf("container hello-%s still exists after RunContainer", tc.name)
			}
			// Both registries serve the same digests: delete the image and
			// let the GC drop its content, so that the next pull fetches
			// every blob again instead of finding it in the content store.
			if err := cl.ImageService().Delete(ctx, img.Name(), images.SynchronousDelete()); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.ContentStore().Info(ctx, digest.Digest(wantDigest.String())); err == nil {
				t.Errorf("manifest %s still in the content store after the image was deleted", wantDigest)
			}
		})
	}

	t.Run("nonzero exit code and image config", func(t *testing.T) {
		img, err := PullImage(ctx, cl, openRef, open.Resolver())
		if err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(t.TempDir(), "env.log")
		// PATH comes from the image config; /tmp must be sticky and
		// world-writable; nobody must resolve through /etc/passwd.
		code, err := c.RunContainer(ctx, img, "env", logPath, "sh", "-c",
			`echo "path=$PATH"; stat -c "tmp=%a" /tmp; id nobody; exit 3`)
		if err != nil {
			t.Fatal(err)
		}
		if code != 3 {
			t.Errorf("exit code %d, want 3", code)
		}
		out, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"path=/usr/sbin:/usr/bin:/sbin:/bin", "tmp=1777", "uid=65534(nobody)"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output %q lacks %q", out, want)
			}
		}
	})

	// Leave a task running and check that Stop kills it, its shim and
	// everything else.
	containerPID := startSleeper(ctx, t, c, "sleeper", openRef, open.Resolver())
	if !ProcessAlive(containerPID) {
		t.Fatalf("container process %d not running", containerPID)
	}
	shims, err := ShimProcesses(c.Address)
	if err != nil {
		t.Fatal(err)
	}
	if len(shims) == 0 {
		t.Fatal("no shim found for a running task: ShimProcesses is broken")
	}
	t.Logf("running task pid %d, shims %v", containerPID, shims)
	// runc keeps its state in the instance's RuncRoot, not in the host-wide
	// /run/containerd/runc.
	if _, err := os.Stat(filepath.Join(c.RuncRoot(), c.Namespace, "sleeper", "state.json")); err != nil {
		t.Errorf("runc state not under RuncRoot: %v", err)
	}

	began := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", since(began))
	assertGone(t, c, append(shims, containerPID)...)
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestContainerdStopAfterCrash kills the daemon behind the harness's back
// while a task runs: Stop must still find and kill the shim and the
// container process through /proc.
func TestContainerdStopAfterCrash(t *testing.T) {
	t.Parallel()
	c := startContainerd(t)
	ctx, cancel := context.WithTimeout(c.Context(context.Background()), 2*time.Minute)
	defer cancel()

	reg := RegistryForTest(t)
	ref := pushBusybox(t, reg, "crash/busybox")
	containerPID := startSleeper(ctx, t, c, "orphan", ref, reg.Resolver())
	shims, err := ShimProcesses(c.Address)
	if err != nil || len(shims) == 0 {
		t.Fatalf("want a shim, got %v, %v", shims, err)
	}

	if err := syscall.Kill(c.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	if !ProcessAlive(containerPID) {
		t.Fatalf("container process %d died with containerd; the crash path is not exercised", containerPID)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, c, append(shims, containerPID)...)
}

func TestContainerdForTest(t *testing.T) {
	t.Parallel()
	c := ContainerdForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serving, err := c.Client().IsServing(ctx)
	if err != nil || !serving {
		t.Fatalf("IsServing = %v, %v", serving, err)
	}
	v, err := c.Client().Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon version %s", v.Version)
	for _, sub := range []string{"config.toml", "containerd.log", "root", "state"} {
		if _, err := os.Stat(filepath.Join(c.Dir, sub)); err != nil {
			t.Errorf("instance dir lacks %s: %v", sub, err)
		}
	}
	// The CRI plugin is disabled, overlayfs is there.
	plugins, err := c.Client().IntrospectionService().Plugins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var haveOverlay bool
	for _, p := range plugins.Plugins {
		if p.Type == "io.containerd.grpc.v1" && p.ID == "cri" {
			t.Error("CRI plugin is loaded")
		}
		if p.Type == "io.containerd.snapshotter.v1" && p.ID == Snapshotter && p.InitErr == nil {
			haveOverlay = true
		}
	}
	if !haveOverlay {
		t.Errorf("snapshotter %s not available", Snapshotter)
	}
	if ns, _ := namespaces.Namespace(c.Context(ctx)); ns != c.Namespace {
		t.Errorf("Context carries namespace %q, want %q", ns, c.Namespace)
	}
	other := namespaces.WithNamespace(ctx, "other")
	if ns, _ := namespaces.Namespace(c.Context(other)); ns != "other" {
		t.Errorf("Context replaced an explicit namespace with %q", ns)
	}
}

func TestStartContainerdRejectsBadDirs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	long := "/tmp/" + strings.Repeat("x", 100)
	if _, err := StartContainerd(ctx, long); err == nil || !strings.Contains(err.Error(), "shorter dir") {
		t.Errorf("long dir: want a socket path error, got %v", err)
	}
	if _, err := os.Stat(long); !os.IsNotExist(err) {
		t.Errorf("long dir was created: %v", err)
	}

	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "precious"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := StartContainerd(ctx, full); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty dir: want a refusal, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(full, "precious")); err != nil {
		t.Errorf("StartContainerd touched a non-empty dir: %v", err)
	}
}

// startSleeper pulls ref and runs "sleep 1000" from it as a task of
// container id, returning the container process's pid.
func startSleeper(ctx context.Context, t *testing.T, c *Containerd, id, ref string, resolver remotes.Resolver) int {
	t.Helper()
	img, err := PullImage(ctx, c.Client(), ref, resolver)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := c.NewContainer(ctx, id, img, oci.WithProcessArgs("sleep", "1000"))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return int(task.Pid())
}
