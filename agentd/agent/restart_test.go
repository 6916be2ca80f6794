package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// Containers belong to containerd's shims, not to agentd: they keep
// running (and logging) while agentd is down, and the next agentd adopts
// the same processes with the same desired state.
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	n := startNode(t, "restart", func(o *acctest.AgentOptions) { o.BackoffBase = 300 * time.Millisecond })
	spec := n.pod("keep", `i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.3; done`)
	spec.Labels = map[string]string{"app": "keep"}
	created := n.apply(t, spec).GetPod()
	before := n.waitRunning(t, "keep")
	pid := before.GetStatus().GetContainers()[0].GetPid()
	logPath := filepath.Join(n.agent.StateDir, "logs", "keep_"+created.GetUid(), "main.log")

	same := func(t *testing.T, what string) {
		t.Helper()
		p := n.get(t, "keep")
		cs := p.GetStatus().GetContainers()[0]
		if p.GetStatus().GetPhase() != "Running" || cs.GetState() != "running" || cs.GetPid() != pid || cs.GetRestartCount() != 0 {
			t.Errorf("%s: %s; want Running with pid %d and no restart", what, fmtPod(p), pid)
		}
		if p.GetUid() != created.GetUid() || p.GetSpecHash() != created.GetSpecHash() || !proto.Equal(p.GetSpec(), created.GetSpec()) || !p.GetCreatedAt().AsTime().Equal(created.GetCreatedAt().AsTime()) {
			t.Errorf("%s: desired state changed:\n got %v\nwant %v", what, p, created)
		}
		if !cs.GetStartedAt().AsTime().Equal(before.GetStatus().GetContainers()[0].GetStartedAt().AsTime()) {
			t.Errorf("%s: started_at %v, was %v", what, cs.GetStartedAt().AsTime(), before.GetStatus().GetContainers()[0].GetStartedAt().AsTime())
		}
		if ids := n.containerIDs(t); len(ids) != 1 || ids[0] != cs.GetContainerId() {
			t.Errorf("%s: containerd holds %v, want only %s", what, ids, cs.GetContainerId())
		}
	}
	restart := func(t *testing.T) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := n.agent.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("SIGKILL", func(t *testing.T) {
		agentPID := n.agent.PID()
		n.agent.Kill()
		if acctest.ProcessAlive(agentPID) {
			t.Fatalf("agentd %d survived SIGKILL", agentPID)
		}
		if !acctest.ProcessAlive(int(pid)) {
			t.Fatalf("container process %d died with agentd", pid)
		}
		// It keeps logging while agentd is down: the shim writes the log.
		// (agentd stays down until restart below: waiting is no race.)
		size := fileSize(t, logPath)
		grown := size
		for deadline := time.Now().Add(30 * time.Second); grown <= size && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			grown = fileSize(t, logPath)
		}
		if grown <= size {
			t.Errorf("log did not grow while agentd was down (%d -> %d bytes)", size, grown)
		}
		restart(t)
		written := ticks(t, logPath) // ticks from before, and while agentd was down
		same(t, "right after restart")
		// Adoption happens in the background: look again a bit later.
		time.Sleep(1500 * time.Millisecond)
		same(t, "after adoption")
		// A retried ApplyPod after the restart is still no change.
		if r := n.apply(t, spec); r.GetCreated() || r.GetPod().GetUid() != created.GetUid() {
			t.Errorf("ApplyPod after restart: created=%v uid=%s, want the existing pod %s", r.GetCreated(), r.GetPod().GetUid(), created.GetUid())
		}
		if !acctest.ProcessAlive(int(pid)) {
			t.Errorf("container process %d gone after restart", pid)
		}
		// The log served is continuous across the restart: every tick from
		// the first on, through those written while agentd was down, to
		// one written after it came back.
		var out string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if out = n.logs(t, "keep", ""); strings.Count(out, "tick ") > written {
				break
			}
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) <= written {
			t.Errorf("log after restart has %d ticks, want more than the %d written before: %q", len(lines), written, out)
		}
		for i, l := range lines {
			if l != fmt.Sprintf("tick %d", i) {
				t.Errorf("log after restart, line %d = %q, want tick %d (log %q)", i+1, l, i, out)
				break
			}
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		restart(t) // Stop (SIGTERM, wait) and start again
		if !acctest.ProcessAlive(int(pid)) {
			t.Fatalf("container process %d died with a graceful agentd stop", pid)
		}
		same(t, "after a graceful restart")
		time.Sleep(1500 * time.Millisecond)
		same(t, "after adoption")
	})

	t.Run("adopted container is supervised", func(t *testing.T) {
		// The adopted container's exit is noticed and the restart policy
		// (Always) applies: a new process, restart_count 1.
		if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p := n.waitPod(t, "keep", "restarted", func(p *herdv1.Pod) bool {
			cs := p.GetStatus().GetContainers()[0]
			return running(p) && cs.GetRestartCount() == 1 && cs.GetPid() != pid
		})
		cs := p.GetStatus().GetContainers()[0]
		if cs.GetLastExitCode() != 137 {
			t.Errorf("last_exit_code = %d, want 137 (SIGKILL)", cs.GetLastExitCode())
		}
		if p.GetUid() != created.GetUid() {
			t.Errorf("uid changed on a container restart: %s", p.GetUid())
		}
		pid = cs.GetPid()
	})

	t.Run("exit while agentd is down", func(t *testing.T) {
		n.agent.Kill()
		if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, int(pid))
		restart(t)
		p := n.waitPod(t, "keep", "restarted after the exit it missed", func(p *herdv1.Pod) bool {
			cs := p.GetStatus().GetContainers()[0]
			return running(p) && cs.GetRestartCount() == 2 && cs.GetPid() != pid
		})
		if cs := p.GetStatus().GetContainers()[0]; cs.GetLastExitCode() != 137 || !acctest.ProcessAlive(int(cs.GetPid())) {
			t.Errorf("after restart: %s", fmtPod(p))
		}
		if ids := n.containerIDs(t); len(ids) != 1 {
			t.Errorf("containerd holds %v, want one container", ids)
		}
	})
}

// ticks counts the lines of the keep pod's log file on disk.
func ticks(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "tick ")
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
