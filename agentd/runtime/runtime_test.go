package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// testEnv is a private containerd, a registry holding busybox and a
// Runtime that may pull from it over plain HTTP.
type testEnv struct {
	ctd *acctest.Containerd
	reg *acctest.Registry
	ref string // busybox in reg
	rt  *Runtime
}

func newTestEnv(t *testing.T, regOpts ...acctest.RegistryOption) *testEnv {
	t.Helper()
	e := &testEnv{ctd: acctest.ContainerdForTest(t), reg: acctest.RegistryForTest(t, regOpts...)}
	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.ref, err = e.reg.Push(ctx, "herd/busybox", "1.35", img); err != nil {
		t.Fatal(err)
	}
	user, pass := e.reg.Credentials()
	cfg := e.config()
	if user != "" {
		cfg.Registry.Auth = map[string]Credentials{e.reg.Host(): {Username: user, Password: pass}}
	}
	e.rt = e.newRuntime(t, cfg)
	return e
}

// config is a Runtime config for the env's containerd, trusting the
// registry over plain HTTP, without credentials.
func (e *testEnv) config() Config {
	return Config{
		Address:        e.ctd.Address,
		Namespace:      e.ctd.Namespace,
		RuntimeOptions: &options.Options{Root: e.ctd.RuncRoot()},
		Registry:       RegistryConfig{Insecure: []string{e.reg.Host()}},
	}
}

func (e *testEnv) newRuntime(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// run creates a container from cs, runs it to completion and returns its
// exit code and log.
func (e *testEnv) run(t *testing.T, pod string, cs *herdv1.ContainerSpec) (uint32, string) {
	t.Helper()
	ctx := testContext(t)
	img, _, err := e.rt.EnsureImage(ctx, cs.Image)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.rt.CreateContainer(ctx, ContainerConfig{Pod: pod, PodUID: "uid-" + pod, Spec: cs, Image: img})
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "out.log")
	task, err := c.NewTask(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	exit := <-exited
	if exit.Err != nil {
		t.Fatal(exit.Err)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	return exit.Code, string(out)
}

func TestContainerID(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		pod, ctr, want string
	}{
		{"web", "nginx", "herd-web-nginx"},
		{"a-b", "c", "herd-a-b-c"},
		{long, "c", ""},
		{"my--pod", "c", ""},
		{long, long, ""},
	} {
		got := ContainerID(tc.pod, tc.ctr)
		if tc.want != "" && got != tc.want {
			t.Errorf("ContainerID(%q, %q) = %q, want %q", tc.pod, tc.ctr, got, tc.want)
		}
		if !strings.HasPrefix(got, IDPrefix) || len(got) > maxIDLength || strings.Contains(got, "--") {
			t.Errorf("ContainerID(%q, %q) = %q: not a valid herd ID", tc.pod, tc.ctr, got)
		}
	}
	if ContainerID(long, "c") == ContainerID(long, "d") {
		t.Error("hashed IDs of different containers are equal")
	}
}

func TestProcessArgs(t *testing.T) {
	ep, cmd := []string{"/entry"}, []string{"default"}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/entry", "default"}},
		{"command replaces entrypoint and cmd", []string{"/bin/x"}, nil, []string{"/bin/x"}},
		{"args replace cmd", nil, []string{"a", "b"}, []string{"/entry", "a", "b"}},
		{"command and args", []string{"/bin/x"}, []string{"a"}, []string{"/bin/x", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := processArgs(ep, cmd, tc.command, tc.args); !slices.Equal(got, tc.want) {
				t.Errorf("processArgs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCPULimits(t *testing.T) {
	for _, tc := range []struct {
		millis int64
		quota  int64
		shares uint64
	}{
		{1, 1000, 2}, {250, 25000, 256}, {500, 50000, 512}, {1000, 100000, 1024}, {2500, 250000, 2560},
	} {
		q, s := cpuLimits(tc.millis)
		if q != tc.quota || s != tc.shares {
			t.Errorf("cpuLimits(%d) = %d, %d; want %d, %d", tc.millis, q, s, tc.quota, tc.shares)
		}
	}
}

func TestNormalizeImage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"127.0.0.1:5000/herd/busybox:1", "127.0.0.1:5000/herd/busybox:1"},
		{"ghcr.io/x/y@sha256:" + strings.Repeat("a", 64), "ghcr.io/x/y@sha256:" + strings.Repeat("a", 64)},
	} {
		got, err := NormalizeImage(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeImage(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", " busybox", "Busy Box", "busybox:bad tag", "x@sha256:short"} {
		if _, err := NormalizeImage(bad); err == nil {
			t.Errorf("NormalizeImage(%q) succeeded", bad)
		}
	}
}

// TestProcessSpec checks that command, args, env, working_dir and the
// hostname reach the process, and that CPU and memory limits are visible
// from inside the container.
func TestProcessSpec(t *testing.T) {
	e := newTestEnv(t)
	script := `echo "args=$0 $*"; echo "FOO=$FOO"; echo "PATH=$PATH"; echo "pwd=$(pwd)"; echo "host=$(hostname)"; ` +
		`echo "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"; ` +
		`echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"; echo "period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; ` +
		`echo "shares=$(cat /sys/fs/cgroup/cpu/cpu.shares)"`
	code, out := e.run(t, "spec", &herdv1.ContainerSpec{
		Name:       "main",
		Image:      e.ref,
		Command:    []string{"sh", "-c", script},
		Args:       []string{"zero", "one", "two"},
		Env:        map[string]string{"FOO": "bar baz"},
		WorkingDir: "/tmp",
		Cpu:        "250m",
		Memory:     "64Mi",
	})
	if code != 0 {
		t.Fatalf("exit code %d, output:\n%s", code, out)
	}
	for _, want := range []string{
		"args=zero one two",
		"FOO=bar baz",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", // from the image
		"pwd=/tmp",
		"host=spec",
		"mem=67108864",
		"quota=25000",
		"period=100000",
		"shares=256",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A request below the limit: the quota follows the limit, the shares
	// the request.
	code, out = e.run(t, "request", &herdv1.ContainerSpec{
		Name:       "main",
		Image:      e.ref,
		Command:    []string{"sh", "-c", `echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"; echo "shares=$(cat /sys/fs/cgroup/cpu/cpu.shares)"`},
		Cpu:        "1",
		CpuRequest: "250m",
	})
	if code != 0 {
		t.Fatalf("exit code %d, output:\n%s", code, out)
	}
	for _, want := range []string{"quota=100000", "shares=256"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("with a request: output lacks %q:\n%s", want, out)
		}
	}
}

func TestImageDefaultsAndExitCode(t *testing.T) {
	e := newTestEnv(t)
	// No command: the image's cmd is "sh", which reads an empty stdin and
	// exits 0. The image has no entrypoint, so args replace the whole
	// command line.
	code, _ := e.run(t, "defaults", &herdv1.ContainerSpec{Name: "main", Image: e.ref})
	if code != 0 {
		t.Errorf("image default cmd: exit code %d, want 0", code)
	}
	code, _ = e.run(t, "args", &herdv1.ContainerSpec{Name: "main", Image: e.ref, Args: []string{"sh", "-c", "exit 7"}})
	if code != 7 {
		t.Errorf("args: exit code %d, want 7", code)
	}
}

func TestPullFastPathAndLabels(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	img, pulled, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	if !pulled {
		t.Error("first EnsureImage did not pull")
	}
	if img.Ref != e.ref || !strings.HasPrefix(img.Digest, "sha256:") {
		t.Errorf("image = %+v", img)
	}
	if managed, err := e.rt.ImageManaged(ctx, e.ref); err != nil || !managed {
		t.Errorf("pulled image managed = %v, %v; want labeled", managed, err)
	}
	// Layer snapshots carry the marker too.
	snaps, err := e.rt.ListManagedSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) == 0 {
		t.Error("no managed layer snapshot after unpack")
	}
	// A second call finds it, even after the registry went away.
	if err := e.reg.Close(); err != nil {
		t.Fatal(err)
	}
	img2, pulled, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil || pulled || img2.Digest != img.Digest {
		t.Fatalf("EnsureImage of a present image = %v, pulled %v, %v", img2, pulled, err)
	}
	// So does a fresh Runtime (no cache).
	rt2 := e.newRuntime(t, e.config())
	if _, pulled, err := rt2.EnsureImage(ctx, e.ref); err != nil || pulled {
		t.Fatalf("fresh runtime: pulled %v, %v", pulled, err)
	}
}

func TestPullAuth(t *testing.T) {
	e := newTestEnv(t, acctest.WithBasicAuth("herd", "s3cret"))
	ctx := testContext(t)
	user, pass := e.reg.Credentials()
	for _, tc := range []struct {
		name    string
		auth    map[string]Credentials
		wantErr string
	}{
		{"no credentials", nil, "no credentials are configured for registry " + e.reg.Host()},
		{"wrong password", map[string]Credentials{e.reg.Host(): {Username: user, Password: "wrong"}}, "were refused"},
		{"other host's credentials", map[string]Credentials{"example.com": {Username: user, Password: pass}}, "no credentials"},
		{"right credentials", map[string]Credentials{e.reg.Host(): {Username: user, Password: pass}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config()
			cfg.Registry.Auth = tc.auth
			rt := e.newRuntime(t, cfg)
			_, pulled, err := rt.EnsureImage(ctx, e.ref)
			if tc.wantErr == "" {
				if err != nil || !pulled {
					t.Fatalf("EnsureImage = pulled %v, %v", pulled, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("EnsureImage error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestPlainHTTPOnlyForInsecureHosts(t *testing.T) {
	e := newTestEnv(t)
	cfg := e.config()
	cfg.Registry.Insecure = []string{"127.0.0.1:1"} // some other host
	rt := e.newRuntime(t, cfg)
	_, _, err := rt.EnsureImage(testContext(t), e.ref)
	if err == nil {
		t.Fatal("pulled over plain HTTP from a host not listed as insecure")
	}
	if !strings.Contains(err.Error(), "over HTTPS because it is not listed as an insecure registry") {
		t.Errorf("error does not explain the HTTPS refusal: %v", err)
	}
}

// foreign creates, with the bare containerd client, a container without
// the marker, running sleep, with snapshot key snapKey.
func (e *testEnv) foreign(t *testing.T, id, snapKey string) client.Task {
	t.Helper()
	ctx := e.rt.Context(testContext(t))
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	cl := e.rt.Client()
	c, err := cl.NewContainer(ctx, id,
		client.WithSnapshotter(DefaultSnapshotter),
		client.WithNewSnapshot(snapKey, img.img, snapshots.WithLabels(map[string]string{"owner": "someone-else"})),
		e.ctd.RuntimeOpt(),
		client.WithNewSpec(oci.WithImageConfig(img.img), oci.WithProcessArgs("sleep", "300")),
		client.WithContainerLabels(map[string]string{LabelPod: "x", LabelContainer: "y"}), // looks like ours, lacks the marker
	)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return task
}

func TestSafetyMarker(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	// A foreign container with a herd-looking ID and another with its
	// snapshot under a herd-looking key.
	task := e.foreign(t, "herd-x-y", "herd-x-y")
	e.foreign(t, "someone-else", "herd-q-r")

	checks := []struct {
		name string
		err  error
	}{
		{"LoadContainer", func() error { _, err := e.rt.LoadContainer(ctx, "herd-x-y"); return err }()},
		{"RemoveContainer", e.rt.RemoveContainer(ctx, "herd-x-y")},
		{"KillTask", e.rt.KillTask(ctx, "herd-x-y", syscall.SIGKILL)},
		{"CheckAvailable(container)", e.rt.CheckAvailable(ctx, "herd-x-y")},
		{"CheckAvailable(snapshot)", e.rt.CheckAvailable(ctx, "herd-q-r")},
		{"RemoveSnapshot", e.rt.RemoveSnapshot(ctx, "herd-q-r")},
		{"RemoveContainer(leftover snapshot)", e.rt.RemoveContainer(ctx, "herd-q-r")},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrForeign) {
			t.Errorf("%s: error = %v, want ErrForeign", c.name, c.err)
		} else if !strings.Contains(c.err.Error(), "herd-") {
			t.Errorf("%s: error %q does not name the object", c.name, c.err)
		}
	}
	if err := e.rt.CheckAvailable(ctx, "herd-free-id"); err != nil {
		t.Errorf("CheckAvailable(free id) = %v", err)
	}
	// Creating our container over the foreign one fails without harm.
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.CreateContainer(ctx, ContainerConfig{Pod: "x", PodUID: "u", Image: img,
		Spec: &herdv1.ContainerSpec{Name: "y", Image: e.ref, Command: []string{"true"}}}); err == nil {
		t.Error("CreateContainer over a foreign container succeeded")
	}

	managed, err := e.rt.ListManaged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(managed) != 0 {
		t.Errorf("ListManaged = %v, want none", managed)
	}
	snaps, err := e.rt.ListManagedSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if s.Key == "herd-x-y" || s.Key == "herd-q-r" {
			t.Errorf("foreign snapshot %s listed as managed", s.Key)
		}
	}
	st, err := task.Status(ctx)
	if err != nil || st.Status != client.Running {
		t.Errorf("foreign task status = %v, %v; want running", st.Status, err)
	}
	if !acctest.ProcessAlive(int(task.Pid())) {
		t.Error("foreign task's process is gone")
	}
}

func TestReattachAndRemove(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.rt.CreateContainer(ctx, ContainerConfig{Pod: "p", PodUID: "u1", Image: img,
		Spec: &herdv1.ContainerSpec{Name: "c", Image: e.ref, Command: []string{"sh", "-c", "echo started; sleep 300"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() != "herd-p-c" || c.Pod() != "p" || c.Name() != "c" || c.PodUID() != "u1" || c.SnapshotKey() != "herd-p-c" {
		t.Errorf("container = %s %v snapshot %s", c.ID(), c.Labels(), c.SnapshotKey())
	}
	logPath := filepath.Join(t.TempDir(), "c.log")
	task, err := c.NewTask(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := task.PID()

	// A new Runtime (agentd restarted) re-attaches without restarting.
	rt2 := e.newRuntime(t, e.config())
	c2, err := rt2.LoadContainer(ctx, "herd-p-c")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := c2.Task(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2.PID() != pid {
		t.Errorf("re-attached PID %d, want %d", t2.PID(), pid)
	}
	if st, err := t2.Status(ctx); err != nil || st.State != "running" {
		t.Errorf("status = %+v, %v", st, err)
	}
	// Managed objects are listed.
	list, err := rt2.ListManaged(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "herd-p-c" || list[0].Pod() != "p" || list[0].PodUID() != "u1" {
		t.Errorf("ListManaged = %+v, %v", list, err)
	}
	exited, err := t2.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// sh is PID 1 of the container: it ignores SIGTERM without a trap.
	if err := t2.Kill(rt2.Context(ctx), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exit := <-exited; exit.Err != nil || exit.Code != 128+uint32(syscall.SIGKILL) {
		t.Errorf("exit = %+v, want code 137", exit)
	}
	if err := rt2.RemoveContainer(ctx, "herd-p-c"); err != nil {
		t.Fatal(err)
	}
	if _, err := rt2.LoadContainer(ctx, "herd-p-c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after remove: %v, want ErrNotFound", err)
	}
	if _, err := rt2.Client().SnapshotService(DefaultSnapshotter).Stat(rt2.Context(ctx), "herd-p-c"); err == nil {
		t.Error("snapshot survived RemoveContainer")
	}
	if err := rt2.RemoveContainer(ctx, "herd-p-c"); err != nil {
		t.Errorf("second RemoveContainer = %v, want nil", err)
	}
	out, _ := os.ReadFile(logPath)
	if string(out) != "started\n" {
		t.Errorf("log = %q", out)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1", "B=2"}, []string{"A=x", "C=3", "B", "NOPE"})
	if want := []string{"PATH=/bin", "A=x", "C=3"}; !slices.Equal(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
}

// TestCachedImageConfig checks that the second container of an image,
// which reuses the user resolved for the first, gets exactly the process
// oci.WithImageConfig gives.
func TestCachedImageConfig(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	cs := &herdv1.ContainerSpec{Name: "c", Image: e.ref, Env: map[string]string{"X": "1"}}
	var procs []*specs.Process
	for _, pod := range []string{"first", "second"} {
		c, err := e.rt.CreateContainer(ctx, ContainerConfig{Pod: pod, PodUID: "u", Spec: cs, Image: img})
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.c.Spec(e.rt.Context(ctx))
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, s.Process)
	}
	if _, ok := e.rt.users.get(img.Digest); !ok {
		t.Fatal("the user was not cached")
	}
	// The reference: containerd's own WithImageConfig, then the same env.
	ref, err := e.rt.Client().NewContainer(e.rt.Context(ctx), "reference",
		client.WithSnapshotter(DefaultSnapshotter),
		client.WithNewSnapshot("reference", img.img),
		client.WithNewSpec(oci.WithImageConfig(img.img), oci.WithEnv([]string{"X=1"})))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Spec(e.rt.Context(ctx))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range procs {
		if !slices.Equal(p.Env, want.Process.Env) || !slices.Equal(p.Args, want.Process.Args) || p.Cwd != want.Process.Cwd ||
			p.User.UID != want.Process.User.UID || p.User.GID != want.Process.User.GID || !slices.Equal(p.User.AdditionalGids, want.Process.User.AdditionalGids) {
			t.Errorf("container %d process = env %q args %q cwd %q user %+v; want env %q args %q cwd %q user %+v",
				i, p.Env, p.Args, p.Cwd, p.User, want.Process.Env, want.Process.Args, want.Process.Cwd, want.Process.User)
		}
	}
}

// TestLogKeepsLateStderr: output to stderr right before the exit reaches
// the log (cio.LogFile loses it when the shim's stdout copier closes the
// shared file first; see logFile).
func TestLogKeepsLateStderr(t *testing.T) {
	e := newTestEnv(t)
	for i := 0; i < 5; i++ {
		code, out := e.run(t, fmt.Sprintf("late-%d", i), &herdv1.ContainerSpec{
			Name: "main", Image: e.ref,
			Command: []string{"sh", "-c", "echo out; echo last words >&2; exit 2"},
		})
		if code != 2 || !strings.Contains(out, "out\n") || !strings.Contains(out, "last words\n") {
			t.Fatalf("run %d: exit %d, log %q", i, code, out)
		}
	}
}

func TestPullCredentialsPerPull(t *testing.T) {
	e := newTestEnv(t, acctest.WithBasicAuth("herd", "s3cret"))
	ctx := testContext(t)
	user, pass := e.reg.Credentials()
	host := e.reg.Host()
	if h, err := ImageHost(e.ref); err != nil || h != host {
		t.Fatalf("ImageHost = %q, %v; want %q", h, err, host)
	}
	if h, _ := ImageHost("busybox"); h != "docker.io" || !SameRegistryHost("index.docker.io", h) || SameRegistryHost("a", "b") {
		t.Errorf("ImageHost(busybox) = %q / SameRegistryHost wrong", h)
	}
	// The node has no credentials: only the pull's own count, for their
	// host only.
	rt := e.newRuntime(t, e.config())
	for _, tc := range []struct {
		name    string
		opts    []PullOption
		wantErr string
	}{
		{"none", nil, "no credentials are configured for registry " + host},
		{"for another host", []PullOption{WithPullCredentials("example.com", Credentials{user, pass})}, "no credentials are configured"},
		{"wrong", []PullOption{WithPullCredentials(host, Credentials{user, "wrong"})}, "image pull secret's credentials for registry " + host + " were refused"},
		{"right", []PullOption{WithPullCredentials(host, Credentials{user, pass})}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rt.PullImage(ctx, e.ref, tc.opts...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("PullImage = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("PullImage error = %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), pass) || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error carries a password: %v", err)
			}
		})
	}
	// Present now: EnsureImage without credentials uses it (IfNotPresent).
	if _, pulled, err := rt.EnsureImage(ctx, e.ref); err != nil || pulled {
		t.Errorf("EnsureImage of the present image = pulled %v, %v", pulled, err)
	}
}

func TestBindMountsAndExtraEnv(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `cat /mnt/x/f; echo "A=$A B=$B"; touch /mnt/x/g 2>/dev/null && echo writable || echo read-only; ` +
		`grep ' /mnt/x ' /proc/mounts | grep -q 'ro,nosuid,nodev,noexec' && echo opts-ok`
	img, _, err := e.rt.EnsureImage(testContext(t), e.ref)
	if err != nil {
		t.Fatal(err)
	}
	cs := &herdv1.ContainerSpec{Name: "main", Image: e.ref, Command: []string{"sh", "-c", script}, Env: map[string]string{"A": "plain"}}
	code, out := e.run2(t, ContainerConfig{
		Pod: "mounts", PodUID: "u", Spec: cs, Image: img,
		Mounts:   []BindMount{{Source: dir, Destination: "/mnt/x"}},
		ExtraEnv: map[string]string{"B": "from secret"},
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"content", "A=plain B=from secret", "read-only", "opts-ok"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A name in both is refused, naming the variable only.
	_, err = e.rt.CreateContainer(testContext(t), ContainerConfig{Pod: "clash", PodUID: "u", Spec: cs, Image: img, ExtraEnv: map[string]string{"A": "hidden-value"}})
	if err == nil || !strings.Contains(err.Error(), "variable A") || strings.Contains(err.Error(), "hidden-value") {
		t.Errorf("env clash = %v", err)
	}
}

// run2 is run with a whole ContainerConfig.
func (e *testEnv) run2(t *testing.T, cfg ContainerConfig) (uint32, string) {
	t.Helper()
	ctx := testContext(t)
	c, err := e.rt.CreateContainer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Remove(ctx) }()
	logPath := filepath.Join(t.TempDir(), "out.log")
	task, err := c.NewTask(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	exit := <-exited
	if exit.Err != nil {
		t.Fatal(exit.Err)
	}
	out, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	return exit.Code, string(out)
}
