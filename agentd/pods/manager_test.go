package pods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func TestEchoAndLogs(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	pod, created, err := m.Apply(ctx, e.pod("echo", spec.RestartNever, "sh", "-c", "echo hello; for i in 1 2 3 4 5; do echo line $i; done; sleep 0.1; echo to stderr >&2"))
	if err != nil || !created {
		t.Fatalf("Apply = %v, created %v", err, created)
	}
	if pod.GetStatus().GetPhase() == "" || pod.GetUid() == "" || pod.GetCreatedAt() == nil {
		t.Errorf("Apply returned %v", pod)
	}
	if pod.GetSpec().GetRestartPolicy() != spec.RestartNever || pod.GetSpec().GetTerminationGracePeriodSeconds() != 30 {
		t.Errorf("stored spec not defaulted: %v", pod.GetSpec())
	}
	pod = waitFor(t, m, "echo", "Succeeded", phaseIs(PhaseSucceeded))
	cs := pod.GetStatus().GetContainers()[0]
	if cs.GetState() != StateTerminated || cs.GetReason() != ReasonCompleted || cs.LastExitCode == nil || cs.GetLastExitCode() != 0 ||
		cs.GetRestartCount() != 0 || cs.GetStartedAt() == nil || cs.GetFinishedAt() == nil || cs.GetContainerId() != "herd-echo-main" ||
		!strings.HasPrefix(cs.GetImageDigest(), "sha256:") {
		t.Errorf("container status = %v", cs)
	}
	if pod.GetStatus().GetStartTime() == nil {
		t.Error("no start_time")
	}
	// stdout and stderr go to the same file (the shim copies each pipe on
	// its own, so only the order within a stream is guaranteed).
	want := "hello\nline 1\nline 2\nline 3\nline 4\nline 5\nto stderr\n"
	if got := logs(t, m, "echo", "", 0); got != want {
		t.Errorf("logs = %q, want %q", got, want)
	}
	if got := logs(t, m, "echo", "main", 2); got != "line 5\nto stderr\n" {
		t.Errorf("tail 2 = %q", got)
	}
	if got := logs(t, m, "echo", "main", 100); got != want {
		t.Errorf("tail 100 = %q", got)
	}
	err = m.Logs(ctx, "echo", "nope", false, 0, func(string, []byte) error { return nil })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Logs of a missing container = %v, want ErrNotFound", err)
	}
	err = m.Logs(ctx, "nope", "", false, 0, func(string, []byte) error { return nil })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Logs of a missing pod = %v, want ErrNotFound", err)
	}
	// The status is persisted (right after it is published).
	eventually(t, "the stored phase is Succeeded", func() bool {
		stored, err := e.st.GetPod("echo")
		return err == nil && stored.GetStatus().GetPhase() == PhaseSucceeded
	})
}

func TestProcessSpecAndLimits(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	script := `echo "args=$0 $*"; echo "FOO=$FOO"; echo "pwd=$(pwd)"; echo "host=$(hostname)"; ` +
		`echo "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"; ` +
		`echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)/$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"`
	s := &herdv1.PodSpec{
		Name:          "spec",
		RestartPolicy: spec.RestartNever,
		Containers: []*herdv1.ContainerSpec{{
			Name:       "main",
			Image:      e.ref,
			Command:    []string{"sh", "-c", script},
			Args:       []string{"a0", "a1", "a2"},
			Env:        map[string]string{"FOO": "from spec", "PATH": "/bin"},
			WorkingDir: "/root",
			Cpu:        "1.5",
			Memory:     "100Mi",
		}},
	}
	if _, _, err := m.Apply(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "spec", "Succeeded", phaseIs(PhaseSucceeded))
	out := logs(t, m, "spec", "main", 0)
	for _, want := range []string{"args=a0 a1 a2", "FOO=from spec", "pwd=/root", "host=spec", "mem=104857600", "quota=150000/100000"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestValidationAndIDClash(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	_, _, err := m.Apply(ctx, &herdv1.PodSpec{Name: "Bad_Name", Containers: []*herdv1.ContainerSpec{{Name: "c", Image: ""}}})
	var fe spec.FieldErrors
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "name") || !strings.Contains(err.Error(), "containers[0].image") {
		t.Errorf("Apply of an invalid spec = %v, want FieldErrors naming the fields", err)
	}
	ab := &herdv1.PodSpec{Name: "a-b", Containers: []*herdv1.ContainerSpec{{Name: "c", Image: e.ref, Command: []string{"sleep", "60"}}}}
	if _, _, err := m.Apply(ctx, ab); err != nil {
		t.Fatal(err)
	}
	a := &herdv1.PodSpec{Name: "a", Containers: []*herdv1.ContainerSpec{{Name: "b-c", Image: e.ref, Command: []string{"sleep", "60"}}}}
	if _, _, err := m.Apply(ctx, a); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "herd-a-b-c") {
		t.Errorf("Apply of a clashing container ID = %v, want ErrConflict", err)
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	s := e.pod("web", "", "sleep", "300")
	first, created, err := m.Apply(ctx, s)
	if err != nil || !created {
		t.Fatalf("Apply = %v, %v", err, created)
	}
	running := waitFor(t, m, "web", "running", allRunning)
	// The same spec, also spelled with its defaults, is no change.
	explicit := e.pod("web", spec.RestartAlways, "sleep", "300")
	g := int64(spec.DefaultGracePeriod)
	explicit.TerminationGracePeriodSeconds = &g
	for _, again := range []*herdv1.PodSpec{s, explicit} {
		pod, created, err := m.Apply(ctx, again)
		if err != nil || created {
			t.Fatalf("second Apply = %v, created %v", err, created)
		}
		if pod.GetUid() != first.GetUid() || pod.GetSpecHash() != first.GetSpecHash() {
			t.Errorf("second Apply returned uid %s, want %s", pod.GetUid(), first.GetUid())
		}
		if got := pod.GetStatus().GetContainers()[0]; got.GetPid() != running.GetStatus().GetContainers()[0].GetPid() || got.GetRestartCount() != 0 {
			t.Errorf("second Apply changed the container: %v", got)
		}
	}
	other := e.pod("web", "", "sleep", "301")
	_, _, err = m.Apply(ctx, other)
	if !errors.Is(err, ErrConflict) || err.Error() != "pod web exists with a different spec; delete it first" {
		t.Errorf("Apply of a different spec = %v, want ErrConflict", err)
	}
	list, err := m.List(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Errorf("List = %v, %v", list, err)
	}
}

func TestListSelector(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	for _, p := range []struct {
		name   string
		labels map[string]string
	}{
		{"a", map[string]string{"app": "web", "tier": "front"}},
		{"b", map[string]string{"app": "web"}},
		{"c", nil},
	} {
		s := e.pod(p.name, spec.RestartNever, "true")
		s.Labels = p.labels
		if _, _, err := m.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		selector map[string]string
		want     string
	}{
		{nil, "a,b,c"},
		{map[string]string{"app": "web"}, "a,b"},
		{map[string]string{"app": "web", "tier": "front"}, "a"},
		{map[string]string{"app": "db"}, ""},
	} {
		list, err := m.List(ctx, tc.selector)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range list {
			names = append(names, p.GetSpec().GetName())
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("List(%v) = %s, want %s", tc.selector, got, tc.want)
		}
	}
}

func TestRestartPolicies(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)

	t.Run("Always crash loop backs off", func(t *testing.T) {
		began := time.Now()
		if _, _, err := m.Apply(ctx, e.pod("crash", spec.RestartAlways, "sh", "-c", "exit 3")); err != nil {
			t.Fatal(err)
		}
		pod := waitFor(t, m, "crash", "in CrashLoopBackOff", func(p *herdv1.Pod) bool {
			c := p.GetStatus().GetContainers()[0]
			return c.GetReason() == ReasonCrashLoopBackOff && c.GetRestartCount() >= 1
		})
		c := pod.GetStatus().GetContainers()[0]
		if c.GetState() != StateWaiting || c.GetLastExitCode() != 3 || c.GetNextRestartAt() == nil || pod.GetStatus().GetPhase() != PhaseRunning {
			t.Errorf("in back-off: phase %s, container %v", pod.GetStatus().GetPhase(), c)
		}
		if !strings.Contains(c.GetMessage(), "back-off") {
			t.Errorf("message = %q", c.GetMessage())
		}
		// Delays: 0, 200ms, 400ms, 800ms, then capped at 1s.
		waitFor(t, m, "crash", "restarted 4 times", func(p *herdv1.Pod) bool {
			return p.GetStatus().GetContainers()[0].GetRestartCount() >= 4
		})
		// A lower bound only: a slow machine makes restarts later, never
		// earlier. That the back-off ends at all is waitFor's to check.
		took := time.Since(began)
		if took < 1400*time.Millisecond {
			t.Errorf("4 restarts took %s: no back-off", took)
		}
		t.Logf("4 restarts took %s", took)
		// The restart count is persisted.
		eventually(t, "the stored restart count is at least 4", func() bool {
			stored, err := e.st.GetPod("crash")
			return err == nil && stored.GetStatus().GetContainers()[0].GetRestartCount() >= 4
		})
	})

	t.Run("OnFailure stops after success", func(t *testing.T) {
		// Fails until a deadline 1.5 s away, then succeeds. (A restart gets
		// a fresh root filesystem, so the clock is the only state.)
		deadline := time.Now().Add(1500 * time.Millisecond).Unix()
		script := fmt.Sprintf(`[ "$(date +%%s)" -ge %d ] && exit 0; exit 1`, deadline+1)
		if _, _, err := m.Apply(ctx, e.pod("flaky", spec.RestartOnFailure, "sh", "-c", script)); err != nil {
			t.Fatal(err)
		}
		pod := waitFor(t, m, "flaky", "Succeeded", phaseIs(PhaseSucceeded))
		c := pod.GetStatus().GetContainers()[0]
		if c.GetRestartCount() < 1 || c.GetLastExitCode() != 0 || c.GetState() != StateTerminated || c.GetReason() != ReasonCompleted {
			t.Errorf("container = %v", c)
		}
		count := c.GetRestartCount()
		time.Sleep(1500 * time.Millisecond)
		if p, _ := m.Get(ctx, "flaky"); p.GetStatus().GetContainers()[0].GetRestartCount() != count {
			t.Errorf("restarted after success: %v", p.GetStatus())
		}
	})

	t.Run("Never fails with the exit code", func(t *testing.T) {
		if _, _, err := m.Apply(ctx, e.pod("never", spec.RestartNever, "sh", "-c", "exit 3")); err != nil {
			t.Fatal(err)
		}
		pod := waitFor(t, m, "never", "Failed", phaseIs(PhaseFailed))
		c := pod.GetStatus().GetContainers()[0]
		if c.GetRestartCount() != 0 || c.GetLastExitCode() != 3 || c.GetState() != StateTerminated || c.GetReason() != ReasonError {
			t.Errorf("container = %v", c)
		}
		if !strings.Contains(pod.GetStatus().GetMessage(), "main") {
			t.Errorf("pod message = %q", pod.GetStatus().GetMessage())
		}
	})

	t.Run("Never with a command that cannot start", func(t *testing.T) {
		if _, _, err := m.Apply(ctx, e.pod("nocmd", spec.RestartNever, "/no/such/binary")); err != nil {
			t.Fatal(err)
		}
		pod := waitFor(t, m, "nocmd", "Failed", phaseIs(PhaseFailed))
		if c := pod.GetStatus().GetContainers()[0]; c.GetReason() != ReasonStartError || !strings.Contains(c.GetMessage(), "/no/such/binary") {
			t.Errorf("container = %v", c)
		}
	})

	t.Run("two containers, one done", func(t *testing.T) {
		s := &herdv1.PodSpec{Name: "mixed", RestartPolicy: spec.RestartOnFailure, Containers: []*herdv1.ContainerSpec{
			{Name: "job", Image: e.ref, Command: []string{"true"}},
			{Name: "server", Image: e.ref, Command: []string{"sleep", "300"}},
		}}
		if _, _, err := m.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
		pod := waitFor(t, m, "mixed", "job done, server running", func(p *herdv1.Pod) bool {
			cs := p.GetStatus().GetContainers()
			return cs[0].GetState() == StateTerminated && cs[1].GetState() == StateRunning
		})
		if pod.GetStatus().GetPhase() != PhaseRunning {
			t.Errorf("phase = %s, want Running", pod.GetStatus().GetPhase())
		}
	})
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	// tmpfs pages count against the memory limit and cannot be reclaimed
	// without swap: the OOM killer kills dd, the container's PID 1.
	s := e.pod("oom", spec.RestartNever, "sh", "-c", "exec dd if=/dev/zero of=/dev/shm/fill bs=1M count=60")
	s.Containers[0].Memory = "16Mi"
	if _, _, err := m.Apply(testContext(t), s); err != nil {
		t.Fatal(err)
	}
	pod := waitFor(t, m, "oom", "done", func(p *herdv1.Pod) bool {
		return p.GetStatus().GetPhase() == PhaseFailed || p.GetStatus().GetPhase() == PhaseSucceeded
	})
	c := pod.GetStatus().GetContainers()[0]
	if pod.GetStatus().GetPhase() != PhaseFailed || c.GetReason() != ReasonOOMKilled || c.GetLastExitCode() != 137 {
		t.Errorf("container = %v, want OOMKilled with code 137; log: %s", c, logs(t, m, "oom", "", 0))
	}
}

// gone checks that nothing of pod incarnation (name, uid) is left.
func gone(t *testing.T, e *env, m *Manager, name, uid string, containers ...string) {
	t.Helper()
	ctx := testContext(t)
	if _, err := m.Get(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete = %v, want ErrNotFound", err)
	}
	if _, err := e.st.GetPod(name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("store after delete = %v, want ErrNotFound", err)
	}
	for _, c := range containers {
		id := runtime.ContainerID(name, c)
		if _, err := e.rt.LoadContainer(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("container %s after delete: %v", id, err)
		}
		if _, err := e.rt.Client().SnapshotService(e.rt.Snapshotter()).Stat(e.rt.Context(ctx), id); err == nil {
			t.Errorf("snapshot %s survived the delete", id)
		}
	}
	if _, err := os.Stat(m.podLogDir(name, uid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log dir after delete: %v", err)
	}
}

func TestDeleteGracePeriod(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	// The polite pod's grace period is far longer than the Delete below may
	// take: its Delete returning at all shows it ended with the container,
	// not with the grace period. The stubborn one's is short: it must last.
	long, short := int64(600), int64(2)
	polite := e.pod("polite", "", "sh", "-c", `trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done`)
	polite.TerminationGracePeriodSeconds = &long
	stubborn := e.pod("stubborn", "", "sh", "-c", `trap '' TERM; echo ready; while true; do sleep 0.1; done`)
	stubborn.TerminationGracePeriodSeconds = &short
	var uids = map[string]string{}
	for _, s := range []*herdv1.PodSpec{polite, stubborn} {
		pod, _, err := m.Apply(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		uids[s.Name] = pod.GetUid()
	}
	for _, name := range []string{"polite", "stubborn"} {
		waitFor(t, m, name, "running", allRunning)
		// Wait until the trap is installed.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs(t, m, name, "", 0), "ready") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}

	for _, tc := range []struct {
		name    string
		min     time.Duration // the grace period a Delete must honour
		wantLog string
	}{
		{"polite", 0, "got TERM"},
		{"stubborn", 2 * time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Follow the log during the delete: the follower ends with the pod.
			var mu sync.Mutex
			var followed bytes.Buffer
			followDone := make(chan error, 1)
			go func() {
				followDone <- m.Logs(ctx, tc.name, "", true, 0, func(_ string, b []byte) error {
					mu.Lock()
					defer mu.Unlock()
					followed.Write(b)
					return nil
				})
			}()
			time.Sleep(200 * time.Millisecond)
			// A minute is far less than polite's grace period and far
			// more than any Delete needs.
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			began := time.Now()
			existed, err := m.Delete(dctx, tc.name, nil)
			took := time.Since(began)
			if err != nil || !existed {
				t.Fatalf("Delete = %v, %v (after %s)", existed, err, took)
			}
			if took < tc.min {
				t.Errorf("Delete took %s, before the %s grace period was over", took, tc.min)
			}
			t.Logf("Delete took %s", took)
			select {
			case err := <-followDone:
				if err != nil {
					t.Errorf("follow ended with %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("follow did not end after the pod was deleted")
			}
			mu.Lock()
			if !strings.Contains(followed.String(), tc.wantLog) {
				t.Errorf("followed log %q lacks %q", followed.String(), tc.wantLog)
			}
			mu.Unlock()
			gone(t, e, m, tc.name, uids[tc.name], "main")
			existed, err = m.Delete(ctx, tc.name, nil)
			if err != nil || existed {
				t.Errorf("second Delete = %v, %v; want false, nil", existed, err)
			}
		})
	}

	t.Run("grace override", func(t *testing.T) {
		s := e.pod("override", "", "sh", "-c", `trap '' TERM; while true; do sleep 0.1; done`)
		long := int64(600)
		s.TerminationGracePeriodSeconds = &long
		pod, _, err := m.Apply(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, m, "override", "running", allRunning)
		// As above: the Delete returns long before the spec's 600 s.
		zero := time.Duration(0)
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		began := time.Now()
		if _, err := m.Delete(dctx, "override", &zero); err != nil {
			t.Fatalf("Delete with grace 0: %v after %s", err, time.Since(began))
		}
		t.Logf("Delete with grace 0 took %s", time.Since(began))
		gone(t, e, m, "override", pod.GetUid(), "main")
	})
}

func TestDeleteDuringBackoffAndRecreate(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(c *Config) { c.BackoffBase = 5 * time.Second; c.BackoffMax = 5 * time.Second })
	ctx := testContext(t)
	first, _, err := m.Apply(ctx, e.pod("loop", spec.RestartAlways, "sh", "-c", "exit 1"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "loop", "in back-off", func(p *herdv1.Pod) bool {
		return p.GetStatus().GetContainers()[0].GetReason() == ReasonCrashLoopBackOff
	})
	if _, err := m.Delete(ctx, "loop", nil); err != nil {
		t.Fatal(err)
	}
	gone(t, e, m, "loop", first.GetUid(), "main")
	// The worker is gone: nothing comes back after the back-off.
	time.Sleep(500 * time.Millisecond)
	if list, _ := e.rt.ListManaged(ctx); len(list) != 0 {
		t.Errorf("containers after delete: %v", list)
	}
	// Same name, new incarnation.
	second, created, err := m.Apply(ctx, e.pod("loop", spec.RestartAlways, "sleep", "300"))
	if err != nil || !created || second.GetUid() == first.GetUid() {
		t.Fatalf("re-Apply = %v, created %v, uid %s", err, created, second.GetUid())
	}
	waitFor(t, m, "loop", "running", allRunning)
}

func TestReadoption(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	// steady keeps running; dies exits while agentd is down (Never);
	// crashes exits while agentd is down (Always); vanishes is removed
	// behind agentd's back.
	for _, s := range []*herdv1.PodSpec{
		e.pod("steady", "", "sleep", "300"),
		e.pod("dies", spec.RestartNever, "sh", "-c", "sleep 1; exit 4"),
		e.pod("crashes", spec.RestartAlways, "sh", "-c", "sleep 1; exit 5"),
		e.pod("vanishes", spec.RestartAlways, "sleep", "300"),
	} {
		if _, _, err := m.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]*herdv1.ContainerStatus{}
	for _, name := range []string{"steady", "dies", "crashes", "vanishes"} {
		before[name] = waitFor(t, m, name, "running", allRunning).GetStatus().GetContainers()[0]
	}
	// Give the steady one a restart first, so that "unchanged" means
	// something: kill it, wait for the restart.
	if err := e.rt.KillTask(ctx, "herd-steady-main", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	steady := waitFor(t, m, "steady", "restarted", func(p *herdv1.Pod) bool {
		c := p.GetStatus().GetContainers()[0]
		return c.GetRestartCount() == 1 && c.GetState() == StateRunning
	}).GetStatus().GetContainers()[0]

	m.Close() // agentd dies
	if err := e.rt.RemoveContainer(ctx, "herd-vanishes-main"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dies", "crashes"} {
		for acctest.ProcessAlive(int(before[name].GetPid())) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !acctest.ProcessAlive(int(steady.GetPid())) {
		t.Fatal("the steady container died with the manager")
	}

	m2 := e.manager(t)
	pod := waitFor(t, m2, "steady", "running", allRunning)
	c := pod.GetStatus().GetContainers()[0]
	if c.GetPid() != steady.GetPid() || c.GetRestartCount() != 1 || !c.GetStartedAt().AsTime().Equal(steady.GetStartedAt().AsTime()) {
		t.Errorf("re-adopted container = %v, want pid %d, restart count 1, same start", c, steady.GetPid())
	}
	pod = waitFor(t, m2, "dies", "Failed", phaseIs(PhaseFailed))
	if c := pod.GetStatus().GetContainers()[0]; c.GetLastExitCode() != 4 || c.GetRestartCount() != 0 {
		t.Errorf("dies = %v", c)
	}
	pod = waitFor(t, m2, "crashes", "restarted", func(p *herdv1.Pod) bool {
		c := p.GetStatus().GetContainers()[0]
		return c.GetRestartCount() >= 1 && c.LastExitCode != nil
	})
	if c := pod.GetStatus().GetContainers()[0]; c.GetLastExitCode() != 5 {
		t.Errorf("crashes = %v", c)
	}
	pod = waitFor(t, m2, "vanishes", "restarted", func(p *herdv1.Pod) bool {
		c := p.GetStatus().GetContainers()[0]
		return c.GetRestartCount() == 1 && c.GetState() == StateRunning
	})
	if c := pod.GetStatus().GetContainers()[0]; c.GetPid() == before["vanishes"].GetPid() {
		t.Errorf("vanishes = %v", c)
	}
	// The steady one is still the same process a moment later.
	time.Sleep(300 * time.Millisecond)
	if p, _ := m2.Get(ctx, "steady"); p.GetStatus().GetContainers()[0].GetPid() != steady.GetPid() {
		t.Errorf("steady was restarted: %v", p.GetStatus())
	}
}

// foreign creates a container without the marker with the bare client, in
// herd's namespace, running sleep.
func foreign(t *testing.T, e *env, id string) client.Task {
	t.Helper()
	ctx := e.rt.Context(testContext(t))
	cl := e.rt.Client()
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cl.GetImage(ctx, img.Ref)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cl.NewContainer(ctx, id,
		client.WithSnapshotter(e.rt.Snapshotter()),
		client.WithNewSnapshot(id, ci, snapshots.WithLabels(map[string]string{"owner": "someone-else"})),
		e.ctd.RuntimeOpt(),
		client.WithNewSpec(oci.WithImageConfig(ci), oci.WithProcessArgs("sleep", "300")),
		client.WithContainerLabels(map[string]string{runtime.LabelPod: "x"}),
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

func TestForeignObjectsAreNeverTouched(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	herdLooking := foreign(t, e, "herd-x-y")
	other := foreign(t, e, "someone-elses")

	// Apply that would have to create over a foreign container is refused.
	_, _, err := m.Apply(ctx, &herdv1.PodSpec{Name: "x", Containers: []*herdv1.ContainerSpec{{Name: "y", Image: e.ref, Command: []string{"true"}}}})
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "herd-x-y") {
		t.Errorf("Apply over a foreign container = %v, want ErrForeign naming it", err)
	}
	if _, err := m.Get(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused pod was recorded: %v", err)
	}

	// A pod whose container ID a foreign container takes over while the
	// pod has no container (it completed): Delete is refused.
	if _, _, err := m.Apply(ctx, e.pod("z", spec.RestartNever, "true")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "z", "Succeeded", phaseIs(PhaseSucceeded))
	squatter := foreign(t, e, "herd-z-main")
	_, err = m.Delete(ctx, "z", nil)
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "herd-z-main") {
		t.Errorf("Delete of a pod whose container ID is foreign = %v, want ErrForeign", err)
	}
	if _, err := m.Get(ctx, "z"); err != nil {
		t.Errorf("pod z after a refused delete: %v", err)
	}

	// Normal pods come and go around the foreign ones; GC leaves them be.
	if _, _, err := m.Apply(ctx, e.pod("web", "", "sleep", "300")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "web", "running", allRunning)
	zero := time.Duration(0)
	if _, err := m.Delete(ctx, "web", &zero); err != nil {
		t.Fatal(err)
	}
	if err := m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	for _, task := range []client.Task{herdLooking, other, squatter} {
		st, err := task.Status(e.rt.Context(ctx))
		if err != nil || st.Status != client.Running || !acctest.ProcessAlive(int(task.Pid())) {
			t.Errorf("foreign task %s: status %v, %v", task.ID(), st.Status, err)
		}
		if _, err := e.rt.Client().SnapshotService(e.rt.Snapshotter()).Stat(e.rt.Context(ctx), task.ID()); err != nil {
			t.Errorf("foreign snapshot %s: %v", task.ID(), err)
		}
	}

	// Once the squatter is gone, the delete goes through.
	if err := herdLooking.Kill(e.rt.Context(ctx), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sq, err := e.rt.Client().LoadContainer(e.rt.Context(ctx), "herd-z-main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := squatter.Delete(e.rt.Context(ctx), client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if err := sq.Delete(e.rt.Context(ctx), client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Delete(ctx, "z", nil); err != nil {
		t.Errorf("Delete after the squatter left: %v", err)
	}
}

func TestGarbageCollection(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
	ctx := testContext(t)
	live, _, err := m.Apply(ctx, e.pod("live", "", "sleep", "300"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "live", "running", allRunning)

	// Leftovers of pods the store does not have: a running container of a
	// "ghost" pod, a container of an older "live" incarnation under another
	// ID, a bare snapshot, a log dir.
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := e.rt.CreateContainer(ctx, runtime.ContainerConfig{Pod: "ghost", PodUID: "dead-beef", Image: img,
		Spec: &herdv1.ContainerSpec{Name: "c", Image: e.ref, Command: []string{"sleep", "300"}}})
	if err != nil {
		t.Fatal(err)
	}
	task, err := ghost.NewTask(ctx, filepath.Join(e.logDir, "ghost_dead-beef", "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := e.rt.CreateContainer(ctx, runtime.ContainerConfig{Pod: "live", PodUID: "older-uid", Image: img,
		Spec: &herdv1.ContainerSpec{Name: "sidecar", Image: e.ref, Command: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.logDir, "ghost2_0000"), 0o700); err != nil {
		t.Fatal(err)
	}
	unrelated := filepath.Join(e.logDir, "not-a-pod-dir")
	if err := os.WriteFile(unrelated, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreignTask := foreign(t, e, "herd-ghost-d")
	// The leftovers are of incarnations the manager deleted: only those
	// are collected (unknown ones never are, see readopt_test.go).
	for _, inc := range []incarnation{{"ghost", "dead-beef"}, {"live", "older-uid"}, {"ghost2", "0000"}} {
		if err := m.addTombstone(inc.pod, inc.uid); err != nil {
			t.Fatal(err)
		}
	}

	if err := m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ghost.ID(), old.ID()} {
		if _, err := e.rt.LoadContainer(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("container %s after GC: %v", id, err)
		}
	}
	if acctest.ProcessAlive(int(task.PID())) {
		t.Error("ghost task still running after GC")
	}
	for _, dir := range []string{"ghost_dead-beef", "ghost2_0000"} {
		if _, err := os.Stat(filepath.Join(e.logDir, dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("log dir %s after GC: %v", dir, err)
		}
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Errorf("GC removed an unrelated file: %v", err)
	}
	if _, err := os.Stat(m.podLogDir("live", live.GetUid())); err != nil {
		t.Errorf("GC removed a live pod's logs: %v", err)
	}
	// The live pod is untouched, and so is the foreign container.
	pod, _ := m.Get(ctx, "live")
	if c := pod.GetStatus().GetContainers()[0]; c.GetRestartCount() != 0 || c.GetState() != StateRunning {
		t.Errorf("live pod after GC: %v", c)
	}
	if _, err := e.rt.LoadContainer(ctx, "herd-live-main"); err != nil {
		t.Errorf("live container after GC: %v", err)
	}
	if st, err := foreignTask.Status(e.rt.Context(ctx)); err != nil || st.Status != client.Running {
		t.Errorf("foreign task after GC: %v, %v", st.Status, err)
	}
}

func TestImagePull(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(e *env, r *runtime.RegistryConfig)
		wantMsg string
	}{
		{"with credentials", func(*env, *runtime.RegistryConfig) {}, ""},
		{"without credentials", func(_ *env, r *runtime.RegistryConfig) { r.Auth = nil }, "no credentials are configured"},
		{"wrong password", func(e *env, r *runtime.RegistryConfig) {
			r.Auth = map[string]runtime.Credentials{e.reg.Host(): {Username: "herd", Password: "wrong"}}
		}, "were refused"},
		{"not insecure", func(_ *env, r *runtime.RegistryConfig) { r.Insecure = nil }, "not listed as an insecure registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A containerd of its own: no image is present yet.
			e := newEnv(t, acctest.WithBasicAuth("herd", "pa55"))
			ctx := testContext(t)
			cfg := e.runtimeConfig()
			cfg.Registry.Auth = map[string]runtime.Credentials{e.reg.Host(): {Username: "herd", Password: "pa55"}}
			tc.mutate(e, &cfg.Registry)
			rt := e.newRuntime(t, cfg)
			m := e.manager(t, func(c *Config) { c.Runtime = rt })
			if _, _, err := m.Apply(ctx, e.pod("pull", "", "sleep", "300")); err != nil {
				t.Fatal(err)
			}
			if tc.wantMsg == "" {
				waitFor(t, m, "pull", "running", allRunning)
				if managed, err := rt.ImageManaged(ctx, e.ref); err != nil || !managed {
					t.Errorf("pulled image managed = %v, %v", managed, err)
				}
				return
			}
			pod := waitFor(t, m, "pull", "in ImagePullBackOff", func(p *herdv1.Pod) bool {
				return p.GetStatus().GetContainers()[0].GetReason() == ReasonImagePullBackOff
			})
			c := pod.GetStatus().GetContainers()[0]
			if c.GetState() != StateWaiting || !strings.Contains(c.GetMessage(), tc.wantMsg) || pod.GetStatus().GetPhase() != PhasePending {
				t.Errorf("phase %s, container %v; want a message containing %q", pod.GetStatus().GetPhase(), c, tc.wantMsg)
			}
			if !strings.Contains(pod.GetStatus().GetMessage(), ReasonImagePullBackOff) {
				t.Errorf("pod message = %q", pod.GetStatus().GetMessage())
			}
		})
	}
}

func TestLogSizeCap(t *testing.T) {
	e := newEnv(t)
	const capBytes = 64 << 10
	m := e.manager(t, func(c *Config) { c.LogMaxBytes = capBytes; c.LogCheckInterval = 50 * time.Millisecond })
	ctx := testContext(t)
	// About 390 KB of numbered lines, a pause for the rotation, then a
	// marker (it must land at the start of the truncated file: O_APPEND).
	script := `i=0; while [ $i -lt 30000 ]; do echo "line $i"; i=$((i+1)); done; sleep 1; echo after-rotation; sleep 300`
	pod, _, err := m.Apply(ctx, e.pod("chatty", "", "sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		out = logs(t, m, "chatty", "", 0)
		if strings.Contains(out, "after-rotation") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasSuffix(out, "line 29999\nafter-rotation\n") {
		t.Fatalf("log does not end with the newest lines: ...%q", out[max(0, len(out)-200):])
	}
	if len(out) > capBytes {
		t.Errorf("kept %d bytes, cap %d", len(out), capBytes)
	}
	if len(out) < capBytes/4 {
		t.Errorf("kept only %d bytes", len(out))
	}
	if strings.Contains(out, "line 0\n") || strings.Contains(out, "\x00") {
		t.Error("oldest lines kept, or NUL bytes (a sparse hole after truncation)")
	}
	// Lines are whole: the kept part starts at a line boundary.
	if !strings.HasPrefix(out, "line ") {
		t.Errorf("log starts mid-line: %q", out[:20])
	}
	cur, err := os.ReadFile(m.logPath("chatty", pod.GetUid(), "main"))
	if err != nil {
		t.Fatal(err)
	}
	if string(cur) != "after-rotation\n" && !strings.HasSuffix(string(cur), "\nafter-rotation\n") {
		t.Errorf("current log file = %q...", cur[:min(len(cur), 100)])
	}
	var total int64
	for _, suffix := range []string{"", ".1"} {
		if fi, err := os.Stat(m.logPath("chatty", pod.GetUid(), "main") + suffix); err == nil {
			total += fi.Size()
		}
	}
	if total > capBytes {
		t.Errorf("log files take %d bytes on disk, cap %d", total, capBytes)
	}
}

func TestLogsFollowUntilTerminated(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	if _, _, err := m.Apply(ctx, e.pod("ticker", spec.RestartNever, "sh", "-c", `for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.1; done`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "ticker", "started", func(p *herdv1.Pod) bool { return p.GetStatus().GetContainers()[0].GetStartedAt() != nil })
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- m.Logs(ctx, "ticker", "main", true, 0, func(c string, b []byte) error {
			if c != "main" {
				return fmt.Errorf("container %q", c)
			}
			got.Write(b)
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not end when the container terminated")
	}
	want := ""
	for i := 1; i <= 8; i++ {
		want += fmt.Sprintf("tick %d\n", i)
	}
	if got.String() != want {
		t.Errorf("followed %q, want %q", got.String(), want)
	}
	// A follower stops when its context ends.
	if _, _, err := m.Apply(ctx, e.pod("quiet", "", "sleep", "300")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "quiet", "running", allRunning)
	fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := m.Logs(fctx, "quiet", "", true, 0, func(string, []byte) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("follow with an expiring context = %v", err)
	}
}

func TestNotStarted(t *testing.T) {
	e := newEnv(t)
	m, err := New(e.config(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Apply(context.Background(), e.pod("x", "", "true")); !errors.Is(err, ErrNotReady) {
		t.Errorf("Apply before Start = %v", err)
	}
	m.Close()
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int64
		want string
	}{
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 5, "a\nb\nc\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\nc", 2, "b\nc"},
		{"", 3, ""},
		{"\n\n", 1, "\n"},
	} {
		if got := string(tail([]byte(tc.in), tc.n)); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestApplyRollsBackWhenTheRecordFails: the worker starts while Apply
// writes the record; when the write fails, nothing may remain.
func TestApplyRollsBackWhenTheRecordFails(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	// Pull first, so that the worker races the failing write for real.
	if _, _, err := e.rt.EnsureImage(ctx, e.ref); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err := m.Apply(ctx, &herdv1.PodSpec{Name: "doomed", Containers: []*herdv1.ContainerSpec{
		{Name: "a", Image: e.ref, Command: []string{"sleep", "300"}},
		{Name: "b", Image: e.ref, Command: []string{"sleep", "300"}},
	}})
	if err == nil || !strings.Contains(err.Error(), "record desired state") {
		t.Fatalf("Apply with a closed store = %v", err)
	}
	if _, err := m.Get(ctx, "doomed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a failed Apply = %v", err)
	}
	if list, err := e.rt.ListManaged(ctx); err != nil || len(list) != 0 {
		t.Errorf("containers after a failed Apply: %v, %v", list, err)
	}
	if entries, _ := os.ReadDir(e.logDir); len(entries) != 0 {
		t.Errorf("log dirs after a failed Apply: %v", entries)
	}
}
