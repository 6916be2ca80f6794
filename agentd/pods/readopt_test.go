package pods

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// counterArgs prints a growing counter: its log keeps growing while it
// runs.
var counterArgs = []string{"sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"}

// taskPID returns the pid of the running task of container id, or fails.
func taskPID(t *testing.T, e *env, id string) uint32 {
	t.Helper()
	ctx := testContext(t)
	c, err := e.rt.LoadContainer(ctx, id)
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	task, err := c.Task(ctx)
	if err != nil {
		t.Fatalf("task of %s: %v", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil || st.State != "running" || !acctest.ProcessAlive(int(task.PID())) {
		t.Fatalf("task of %s: state %q (%v), pid %d alive %v", id, st.State, err, task.PID(), acctest.ProcessAlive(int(task.PID())))
	}
	return task.PID()
}

// logGrows checks that the log file at path gets longer than it is now.
func logGrows(t *testing.T, path string) {
	t.Helper()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	before := size()
	eventually(t, "the log "+path+" grows", func() bool { return size() > before && before >= 0 })
}

// freshStore opens an empty store in a new directory (agentd's state was
// lost or replaced).
func freshStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "agentd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestReadoptAfterStoreLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, e *env)
	}{
		{"store replaced by an empty one", func(t *testing.T, e *env) { e.st = freshStore(t) }},
		{"pod records wiped", func(t *testing.T, e *env) {
			pods, err := e.st.ListPods()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods {
				if err := e.st.DeletePod(p.GetSpec().GetName()); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
			ctx := testContext(t)
			s := e.pod("web", "", counterArgs...)
			s.Labels = map[string]string{"app": "web"}
			created, _, err := m.Apply(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, m, "web", "running", allRunning)
			pid := taskPID(t, e, "herd-web-main")
			logPath := m.logPath("web", created.GetUid(), "main")
			m.Close() // agentd stops; its store goes
			tc.lose(t, e)

			m2 := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
			if err := m2.GC(ctx); err != nil {
				t.Fatal(err)
			}
			// The container is the same process, still running and
			// writing its log.
			if got := taskPID(t, e, "herd-web-main"); got != pid {
				t.Errorf("task pid after re-adoption = %d, want %d (restarted)", got, pid)
			}
			logGrows(t, logPath)
			// The pod is back, with its uid, spec and labels, and stored.
			pods, err := m2.List(ctx, map[string]string{"app": "web"})
			if err != nil || len(pods) != 1 {
				t.Fatalf("List after re-adoption = %v, %v; want pod web", pods, err)
			}
			got := pods[0]
			if got.GetUid() != created.GetUid() || got.GetSpecHash() != created.GetSpecHash() || !proto.Equal(got.GetSpec(), created.GetSpec()) {
				t.Errorf("re-adopted pod = uid %s hash %s spec %v; want uid %s hash %s spec %v",
					got.GetUid(), got.GetSpecHash(), got.GetSpec(), created.GetUid(), created.GetSpecHash(), created.GetSpec())
			}
			running := waitFor(t, m2, "web", "running", allRunning).GetStatus().GetContainers()[0]
			if running.GetPid() != pid || running.GetRestartCount() != 0 {
				t.Errorf("re-adopted container status: pid %d (want %d), restarts %d", running.GetPid(), pid, running.GetRestartCount())
			}
			stored, err := e.st.GetPod("web")
			if err != nil || stored.GetUid() != created.GetUid() {
				t.Errorf("stored record after re-adoption: %v, %v", stored, err)
			}
			// The manager keeps managing it: a delete removes it.
			zero := time.Duration(0)
			if existed, err := m2.Delete(ctx, "web", &zero); err != nil || !existed {
				t.Fatalf("Delete of the re-adopted pod = %v, %v", existed, err)
			}
			if _, err := e.rt.LoadContainer(ctx, "herd-web-main"); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("container after deleting the re-adopted pod: %v", err)
			}
			if acctest.ProcessAlive(int(pid)) {
				t.Error("process still alive after deleting the re-adopted pod")
			}
		})
	}
}

func TestGCCollectsDeletedIncarnations(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stop ends the first agentd: it deletes the pod, or simulates a
		// crash part way through a deletion.
		stop func(t *testing.T, e *env, m *Manager, uid string)
		// kept: the pod survives (its record was never deleted).
		kept bool
	}{
		{"deleted by the manager", func(t *testing.T, _ *env, m *Manager, _ string) {
			zero := time.Duration(0)
			if _, err := m.Delete(testContext(t), "web", &zero); err != nil {
				t.Fatal(err)
			}
			m.Close()
		}, false},
		{"crash after the record was deleted, before the objects were", func(t *testing.T, e *env, m *Manager, uid string) {
			m.Close()
			if err := saveTombstones(e.st, map[string]tombstone{incarnationKey("web", uid): {Pod: "web", UID: uid, At: time.Now()}}); err != nil {
				t.Fatal(err)
			}
			if err := e.st.DeletePod("web"); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"crash after the tombstone, before the record was deleted", func(t *testing.T, e *env, m *Manager, uid string) {
			m.Close()
			if err := saveTombstones(e.st, map[string]tombstone{incarnationKey("web", uid): {Pod: "web", UID: uid, At: time.Now()}}); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
			ctx := testContext(t)
			created, _, err := m.Apply(ctx, e.pod("web", "", counterArgs...))
			if err != nil {
				t.Fatal(err)
			}
			uid := created.GetUid()
			waitFor(t, m, "web", "running", allRunning)
			pid := taskPID(t, e, "herd-web-main")
			tc.stop(t, e, m, uid)

			m2 := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
			if err := m2.GC(ctx); err != nil {
				t.Fatal(err)
			}
			_, getErr := m2.Get(ctx, "web")
			_, ctrErr := e.rt.LoadContainer(ctx, "herd-web-main")
			_, logErr := os.Stat(m2.podLogDir("web", uid))
			if tc.kept {
				if getErr != nil || ctrErr != nil || logErr != nil {
					t.Fatalf("pod whose record survived: Get %v, container %v, log dir %v", getErr, ctrErr, logErr)
				}
				if got := taskPID(t, e, "herd-web-main"); got != pid {
					t.Errorf("task pid = %d, want %d", got, pid)
				}
			} else {
				if !errors.Is(getErr, ErrNotFound) {
					t.Errorf("deleted pod is listed again: %v", getErr)
				}
				if !errors.Is(ctrErr, runtime.ErrNotFound) {
					t.Errorf("container of the deleted incarnation after GC: %v", ctrErr)
				}
				if acctest.ProcessAlive(int(pid)) {
					t.Error("process of the deleted incarnation alive after GC")
				}
				if !errors.Is(logErr, os.ErrNotExist) {
					t.Errorf("log dir of the deleted incarnation after GC: %v", logErr)
				}
			}
			// Either way the tombstone is gone: collected, or dropped
			// because the pod stayed.
			if ts, err := loadTombstones(e.st); err != nil || len(ts) != 0 {
				t.Errorf("tombstones after GC = %v, %v; want none", ts, err)
			}
		})
	}
}

// lockedBuffer is a log sink tests read.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) count(subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(b.buf.String(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func TestGCLeavesUnknownIncarnations(t *testing.T) {
	for _, tc := range []struct {
		name, pod, uid, container string
		// record: the container carries a copy of its pod record.
		record bool
		// apply: a pod of this name (another incarnation) runs.
		apply bool
		want  string // in the one report
	}{
		{name: "no spec copy (an older agentd's)", pod: "ghost", uid: "dead-beef", container: "c", want: "carries no copy of its pod spec"},
		{name: "spec copy, another incarnation runs", pod: "web", uid: "other-uid", container: "side", record: true, apply: true, want: "re-adopts it at its next start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			logs := &lockedBuffer{}
			withLogs := func(c *Config) {
				c.GCInterval = time.Hour
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			}
			m := e.manager(t, withLogs)
			ctx := testContext(t)
			if tc.apply {
				if _, _, err := m.Apply(ctx, e.pod(tc.pod, "", "sleep", "300")); err != nil {
					t.Fatal(err)
				}
				waitFor(t, m, tc.pod, "running", allRunning)
			}
			img, _, err := e.rt.EnsureImage(ctx, e.ref)
			if err != nil {
				t.Fatal(err)
			}
			cs := &herdv1.ContainerSpec{Name: tc.container, Image: e.ref, Command: counterArgs}
			cfg := runtime.ContainerConfig{Pod: tc.pod, PodUID: tc.uid, Image: img, Spec: cs}
			if tc.record {
				cfg.Extensions = map[string]proto.Message{ExtensionPodRecord: &herdv1.Pod{
					Spec: &herdv1.PodSpec{Name: tc.pod, Containers: []*herdv1.ContainerSpec{cs}}, Uid: tc.uid}}
			}
			c, err := e.rt.CreateContainer(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			logPath := m.logPath(tc.pod, tc.uid, tc.container)
			task, err := c.NewTask(ctx, logPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := task.Start(ctx); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := m.GC(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if got := taskPID(t, e, c.ID()); got != task.PID() {
				t.Errorf("task pid after GC = %d, want %d", got, task.PID())
			}
			logGrows(t, logPath)
			if n := logs.count("leaving a running container", c.ID(), tc.want); n != 1 {
				t.Errorf("reports of the unknown container = %d, want 1; log:\n%s", n, logs)
			}
			// A restart does not adopt it either (its name is taken, or it
			// has nothing to rebuild the pod from), nor collect it.
			m.Close()
			m2 := e.manager(t, withLogs)
			if err := m2.GC(ctx); err != nil {
				t.Fatal(err)
			}
			if got := taskPID(t, e, c.ID()); got != task.PID() {
				t.Errorf("task pid after a restart and GC = %d, want %d", got, task.PID())
			}
			if pod, err := m2.Get(ctx, tc.pod); tc.apply != (err == nil) || pod.GetUid() == tc.uid {
				t.Errorf("pod %s after a restart: %v, %v", tc.pod, pod, err)
			}
			if _, err := os.Stat(filepath.Dir(logPath)); err != nil {
				t.Errorf("log dir of the unknown incarnation: %v", err)
			}
		})
	}
}

// A pod whose config files changed in place, then lost its store, comes
// back with the files as they were last written, not as they were when its
// container was created: the container's copy of the record follows the
// update.
func TestReadoptKeepsUpdatedConfigFiles(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(func() { _ = acctest.UnmountUnder(filepath.Join(e.stateDir(), "scratch")) })
	m := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
	ctx := testContext(t)
	spec := func(content string) *herdv1.PodSpec {
		p := e.pod("cfg", "", "sleep", "3600")
		p.Containers[0].ConfigFiles = []*herdv1.ConfigFile{{Path: "/etc/app/app.conf", Content: content}}
		return p
	}
	first, _, err := m.Apply(ctx, spec("one"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "cfg", "running", allRunning)
	updated, created, err := m.Apply(ctx, spec("two"))
	if err != nil || created || updated.GetUid() != first.GetUid() {
		t.Fatalf("config update: created %v, uid %s (was %s), %v", created, updated.GetUid(), first.GetUid(), err)
	}
	pid := taskPID(t, e, "herd-cfg-main")
	m.Close()
	e.st = freshStore(t)

	m2 := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
	got, err := m2.Get(ctx, "cfg")
	if err != nil {
		t.Fatalf("Get after re-adoption: %v", err)
	}
	if c := got.GetSpec().GetContainers()[0].GetConfigFiles()[0].GetContent(); c != "two" || got.GetSpecHash() != updated.GetSpecHash() {
		t.Errorf("re-adopted config file %q hash %s; want \"two\" and hash %s", c, got.GetSpecHash(), updated.GetSpecHash())
	}
	if taskPID(t, e, "herd-cfg-main") != pid {
		t.Errorf("the container was restarted")
	}
	if out := shellIn(t, e, "cfg", "main", "cat /etc/app/app.conf"); out != "two" {
		t.Errorf("the container reads %q", out)
	}
	// Applying the same spec again is no change: no replacement.
	again, created, err := m2.Apply(ctx, spec("two"))
	if err != nil || created || again.GetUid() != first.GetUid() {
		t.Errorf("re-apply after re-adoption: created %v, uid %s, %v", created, again.GetUid(), err)
	}
}
