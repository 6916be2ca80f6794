package agent_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// A pod through the API: it runs as a real containerd container with the
// safety marker and its limits, its log is served (also followed), and
// DeletePod removes everything.
func TestPodLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, "life", func(o *acctest.AgentOptions) { o.BackoffBase = 300 * time.Millisecond })

	t.Run("run, logs, limits, delete", func(t *testing.T) {
		t.Parallel()
		spec := &herdv1.PodSpec{
			Name:   "hello",
			Labels: map[string]string{"app": "hello"},
			Containers: []*herdv1.ContainerSpec{{
				Name:  "main",
				Image: n.env.Image,
				Command: []string{"sh", "-c", `echo hello
echo "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
echo "period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
echo "host=$(hostname) env=$GREETING cwd=$(pwd)"
sleep 3600`},
				Env:        map[string]string{"GREETING": "hi"},
				WorkingDir: "/tmp",
				Cpu:        "250m",
				Memory:     "64Mi",
			}},
		}
		resp := n.apply(t, spec)
		if !resp.GetCreated() {
			t.Fatal("created = false")
		}
		uid := resp.GetPod().GetUid()
		p := n.waitRunning(t, "hello")
		cs := p.GetStatus().GetContainers()[0]
		if cs.GetRestartCount() != 0 || cs.GetStartedAt() == nil || !strings.HasPrefix(cs.GetImageDigest(), "sha256:") || cs.GetContainerId() == "" {
			t.Errorf("container status = %v", cs)
		}
		if p.GetStatus().GetStartTime() == nil || p.GetCreatedAt() == nil || p.GetUid() != uid {
			t.Errorf("pod = %v", p)
		}
		pid := int(cs.GetPid())
		if !acctest.ProcessAlive(pid) {
			t.Errorf("pid %d of the running container is not alive", pid)
		}
		id := cs.GetContainerId()

		// containerd has it, with the safety marker, running that pid.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := n.containerd().LoadContainer(n.nsCtx(ctx), id)
		if err != nil {
			t.Fatalf("containerd has no container %s: %v", id, err)
		}
		labels, err := c.Labels(n.nsCtx(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if labels["io.herd.managed"] != "true" || labels["io.herd.pod"] != "hello" || labels["io.herd.container"] != "main" || labels["io.herd.pod-uid"] != uid {
			t.Errorf("container labels = %v, want the herd marker for hello/main/%s", labels, uid)
		}
		task, err := c.Task(n.nsCtx(ctx), nil)
		if err != nil {
			t.Fatalf("task of %s: %v", id, err)
		}
		if int(task.Pid()) != pid {
			t.Errorf("containerd task pid = %d, status pid = %d", task.Pid(), pid)
		}
		if !n.snapshotExists(t, id) {
			t.Errorf("no snapshot %s", id)
		}

		// The container's own output: its log and its limits.
		out := n.waitLogs(t, "hello", "", "host=")
		for _, want := range []string{"hello\n", "mem=67108864\n", "quota=25000\n", "period=100000\n", "host=hello env=hi cwd=/tmp\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("log %q does not contain %q", out, want)
			}
		}
		if !strings.HasPrefix(out, "hello\n") {
			t.Errorf("log %q does not start with hello", out)
		}
		if named := n.logs(t, "hello", "main"); named != out {
			t.Errorf("log by container name = %q, want %q", named, out)
		}
		tail := tailLogs(t, n, "hello", 1)
		if tail != "host=hello env=hi cwd=/tmp\n" {
			t.Errorf("tail_lines=1 = %q", tail)
		}
		ls, err := n.pods.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "hello", Container: "nope"})
		if err == nil {
			_, err = ls.Recv()
		}
		wantCode(t, err, codes.NotFound, "nope")

		// Delete: sh as PID 1 ignores SIGTERM, so the 1 s grace period
		// ends in SIGKILL.
		began := time.Now()
		if !n.delete(t, "hello", 1) {
			t.Error("DeletePod: existed = false")
		}
		// The grace period is a lower bound; slowness only adds to it.
		if took := time.Since(began); took < time.Second {
			t.Errorf("DeletePod took %s, less than the 1 s grace period", took)
		} else {
			t.Logf("DeletePod took %s (grace period 1 s)", took)
		}
		if n.containerExists(t, id) {
			t.Errorf("container %s still exists after DeletePod", id)
		}
		if n.snapshotExists(t, id) {
			t.Errorf("snapshot %s still exists after DeletePod", id)
		}
		waitGone(t, pid)
		if _, err := os.Stat(filepath.Join(n.agent.StateDir, "logs", "hello_"+uid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("log directory of the deleted pod: %v, want it removed", err)
		}
		_, err = n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "hello"})
		wantCode(t, err, codes.NotFound)
	})

	t.Run("follow", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		n.apply(t, n.pod("follow", "echo a; sleep 2; echo b; sleep 3600"))
		// Follow from before the container even started.
		stream, err := n.pods.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "follow", Follow: true})
		if err != nil {
			t.Fatal(err)
		}
		var chunks []string
		var got strings.Builder
		for !strings.Contains(got.String(), "b\n") {
			c, err := stream.Recv()
			if err != nil {
				t.Fatalf("follow: %v after %q", err, got.String())
			}
			if c.GetContainer() != "main" {
				t.Errorf("chunk of container %q, want main", c.GetContainer())
			}
			chunks = append(chunks, string(c.GetData()))
			got.Write(c.GetData())
		}
		if got.String() != "a\nb\n" {
			t.Errorf("followed %q, want a, b", got.String())
		}
		if len(chunks) < 2 || !strings.Contains(chunks[0], "a") || strings.Contains(chunks[0], "b") {
			t.Errorf("chunks %q: want a streamed before b was written", chunks)
		}

		// The pod's deletion ends the stream.
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					ended <- err
					return
				}
			}
		}()
		n.delete(t, "follow", 0)
		select {
		case err := <-ended:
			if !errors.Is(err, io.EOF) {
				t.Errorf("follow after DeletePod ended with %v, want EOF", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("follow did not end after DeletePod")
		}
	})

	t.Run("graceful termination", func(t *testing.T) {
		t.Parallel()
		graceful := n.pod("graceful", `trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.2; done`)
		long := int64(600)
		graceful.TerminationGracePeriodSeconds = &long
		n.apply(t, graceful)
		n.waitRunning(t, "graceful")
		n.waitLogs(t, "graceful", "", "up\n")
		// No override: the spec's 600 s grace period, ten times the
		// minute DeletePod gets here. The container exits on SIGTERM, so
		// DeletePod returns at all only if it ends with the container.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		began := time.Now()
		if _, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "graceful"}); err != nil {
			t.Fatalf("DeletePod of a container that exits on SIGTERM: %v after %s", err, time.Since(began))
		}
		t.Logf("DeletePod of a container that exits on SIGTERM took %s", time.Since(began))
	})

	t.Run("run to completion", func(t *testing.T) {
		t.Parallel()
		never := n.pod("fails", "echo failing; exit 3")
		never.RestartPolicy = "Never"
		n.apply(t, never)
		onFailure := n.pod("succeeds", "echo done")
		onFailure.RestartPolicy = "OnFailure"
		n.apply(t, onFailure)

		p := n.waitPod(t, "fails", "Failed", func(p *herdv1.Pod) bool { return p.GetStatus().GetPhase() == "Failed" })
		cs := p.GetStatus().GetContainers()[0]
		if cs.GetState() != "terminated" || cs.GetReason() != "Error" || cs.GetLastExitCode() != 3 || cs.GetRestartCount() != 0 || cs.GetPid() != 0 {
			t.Errorf("failed container: %s", fmtPod(p))
		}
		if out := n.logs(t, "fails", ""); out != "failing\n" {
			t.Errorf("log of the failed container = %q", out)
		}
		p = n.waitPod(t, "succeeds", "Succeeded", func(p *herdv1.Pod) bool { return p.GetStatus().GetPhase() == "Succeeded" })
		cs = p.GetStatus().GetContainers()[0]
		if cs.GetState() != "terminated" || cs.GetReason() != "Completed" || cs.GetLastExitCode() != 0 {
			t.Errorf("completed container: %s", fmtPod(p))
		}
		// A terminated container's task and container are gone from
		// containerd; the pod is still listed.
		if n.containerExists(t, cs.GetContainerId()) {
			t.Errorf("container %s of a completed pod still in containerd", cs.GetContainerId())
		}
	})

	t.Run("crash loop", func(t *testing.T) {
		t.Parallel()
		n.apply(t, n.pod("crash", "echo boom; exit 1"))
		var sawBackOff bool
		p := n.waitPod(t, "crash", "restarted twice", func(p *herdv1.Pod) bool {
			cs := p.GetStatus().GetContainers()[0]
			if cs.GetReason() == "CrashLoopBackOff" && cs.GetNextRestartAt() != nil {
				sawBackOff = true
			}
			return cs.GetRestartCount() >= 2
		})
		if cs := p.GetStatus().GetContainers()[0]; cs.GetLastExitCode() != 1 {
			t.Errorf("crash loop: %s", fmtPod(p))
		}
		if !sawBackOff {
			t.Logf("did not observe CrashLoopBackOff between restarts (polling may have missed it)")
		}
		// Restarts append to the same log. The third run may be only
		// starting when restart_count reaches 2: wait for its line.
		var out string
		for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if out = n.logs(t, "crash", ""); strings.Count(out, "boom\n") >= 3 {
				break
			}
		}
		if strings.Count(out, "boom\n") < 3 {
			t.Errorf("log after restarts = %q, want boom three times", out)
		}
	})
}

func tailLogs(t *testing.T, n *node, pod string, lines int64) string {
	t.Helper()
	return n.readLogs(t, &herdv1.PodLogsRequest{Pod: pod, TailLines: lines})
}

// waitGone waits until pid has exited (it may linger briefly as a zombie
// until its shim reaps it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for acctest.ProcessAlive(pid) {
		if time.Now().After(deadline) {
			t.Errorf("process %d still alive", pid)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
