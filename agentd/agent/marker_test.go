package agent_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// foreignObj is a container (and its snapshot) that another tool created
// in herd's containerd namespace, as it was before herd could touch it.
type foreignObj struct {
	id, snapshot string
	info         containers.Container
	snapInfo     snapshots.Info
	pid          uint32 // 0: no task
}

// The safety marker through the real daemon: objects in agentd's
// namespace without io.herd.managed=true survive every API call, the
// startup garbage collection and restarts, untouched; a pod that would
// need their ID is refused.
func TestForeignObjectsAreNeverTouched(t *testing.T) {
	t.Parallel()
	n := startNode(t, "marker", func(o *acctest.AgentOptions) { o.BackoffBase = 2 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctx = n.nsCtx(ctx)
	cl := n.containerd()

	// Another tool's image: the same busybox under another name, pulled
	// without herd's marker.
	bb, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := n.env.Registry.Push(ctx, "other/tool", "1", bb)
	if err != nil {
		t.Fatal(err)
	}
	img, err := acctest.PullImage(ctx, cl, ref, n.env.Registry.Resolver())
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"owner": "other-team"}
	herdLike := map[string]string{"owner": "other-team", "io.herd.pod": "web", "io.herd.container": "app", "io.herd.pod-uid": "not-herds"}
	wrongValue := map[string]string{"io.herd.managed": "yes", "io.herd.pod": "gone", "io.herd.container": "main", "io.herd.pod-uid": "x"}
	marker := func(pod string) map[string]string {
		return map[string]string{"io.herd.managed": "true", "io.herd.pod": pod, "io.herd.container": "main", "io.herd.pod-uid": "00000000-0000-4000-8000-000000000000"}
	}

	create := func(id, snap string, labels, snapLabels map[string]string, task bool) *foreignObj {
		t.Helper()
		c, err := cl.NewContainer(ctx, id,
			client.WithImage(img),
			client.WithSnapshotter(acctest.Snapshotter),
			client.WithNewSnapshot(snap, img, snapshots.WithLabels(snapLabels)),
			n.env.Containerd.RuntimeOpt(),
			client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "3600")),
			client.WithContainerLabels(labels),
		)
		if err != nil {
			t.Fatalf("create container %s: %v", id, err)
		}
		t.Cleanup(func() { removeForeign(t, n, id, snap) })
		o := &foreignObj{id: id, snapshot: snap}
		if task {
			tk, err := c.NewTask(ctx, cio.NullIO)
			if err != nil {
				t.Fatalf("create task %s: %v", id, err)
			}
			if err := tk.Start(ctx); err != nil {
				t.Fatalf("start task %s: %v", id, err)
			}
			o.pid = tk.Pid()
		}
		if o.info, err = cl.ContainerService().Get(ctx, id); err != nil {
			t.Fatal(err)
		}
		if o.snapInfo, err = cl.SnapshotService(acctest.Snapshotter).Stat(ctx, snap); err != nil {
			t.Fatal(err)
		}
		return o
	}
	objs := []*foreignObj{
		// An ordinary container of another tool.
		create("other-db", "other-db-rootfs", other, other, true),
		// Named like herd's container app of pod web, herd-like labels,
		// but no marker; its snapshot is herd-web-app as herd's would be.
		create("herd-web-app", "herd-web-app", herdLike, other, true),
		// A marker with the wrong value is no marker.
		create("herd-gone-main", "herd-gone-main", wrongValue, wrongValue, false),
	}
	// A bare snapshot with the key herd would use for pod web2's app (a
	// GC root, or containerd's own garbage collection would take it).
	sn := cl.SnapshotService(acctest.Snapshotter)
	bareLabels := map[string]string{"owner": "other-team", "containerd.io/gc.root": "true"}
	if _, err := sn.Prepare(ctx, "herd-web2-app", "", snapshots.WithLabels(bareLabels)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeForeign(t, n, "", "herd-web2-app") })
	bare, err := sn.Stat(ctx, "herd-web2-app")
	if err != nil {
		t.Fatal(err)
	}

	// Herd's own marks on a running container of a pod agentd's store
	// does not know (and without a copy of its pod record): garbage
	// collection reports it and leaves it running, since only a deletion
	// record lets it remove a pod's container; the report shows it ran
	// and looked at the same namespace.
	ghost := create("herd-ghost-main", "herd-ghost-main", marker("ghost"), marker("ghost"), true)

	untouched := func(t *testing.T, when string) {
		t.Helper()
		for _, o := range objs {
			info, err := cl.ContainerService().Get(ctx, o.id)
			if err != nil {
				t.Errorf("%s: foreign container %s: %v", when, o.id, err)
				continue
			}
			if !maps.Equal(info.Labels, o.info.Labels) || !info.UpdatedAt.Equal(o.info.UpdatedAt) || info.SnapshotKey != o.info.SnapshotKey {
				t.Errorf("%s: foreign container %s changed: labels %v (was %v), updated %v (was %v)", when, o.id, info.Labels, o.info.Labels, info.UpdatedAt, o.info.UpdatedAt)
			}
			si, err := sn.Stat(ctx, o.snapshot)
			if err != nil {
				t.Errorf("%s: snapshot %s of foreign container %s: %v", when, o.snapshot, o.id, err)
			} else if !maps.Equal(si.Labels, o.snapInfo.Labels) || !si.Updated.Equal(o.snapInfo.Updated) {
				t.Errorf("%s: snapshot %s changed: %v", when, o.snapshot, si)
			}
			if o.pid == 0 {
				continue
			}
			c, err := cl.LoadContainer(ctx, o.id)
			if err != nil {
				t.Errorf("%s: %v", when, err)
				continue
			}
			tk, err := c.Task(ctx, nil)
			if err != nil {
				t.Errorf("%s: task of foreign container %s: %v", when, o.id, err)
				continue
			}
			st, err := tk.Status(ctx)
			if err != nil || st.Status != client.Running || tk.Pid() != o.pid || !acctest.ProcessAlive(int(o.pid)) {
				t.Errorf("%s: task of foreign container %s: status %v (%v), pid %d (was %d)", when, o.id, st.Status, err, tk.Pid(), o.pid)
			}
		}
		si, err := sn.Stat(ctx, "herd-web2-app")
		if err != nil || !maps.Equal(si.Labels, bare.Labels) || !si.Updated.Equal(bare.Updated) {
			t.Errorf("%s: bare foreign snapshot herd-web2-app: %v %v", when, si, err)
		}
	}

	// Restart agentd so that its startup garbage collection sees all of
	// the above (it also ran at the first start, before they existed).
	if err := n.agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(n.agent.LogTail(200), `container=herd-ghost-main`) {
		if time.Now().After(deadline) {
			t.Fatalf("garbage collection never reported herd's unknown container %s:\n%s", ghost.id, n.agent.LogTail(50))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !n.containerExists(t, ghost.id) || !n.snapshotExists(t, ghost.snapshot) || !acctest.ProcessAlive(int(ghost.pid)) {
		t.Errorf("herd's container %s of a pod the store does not know was removed or stopped by garbage collection", ghost.id)
	}
	untouched(t, "after startup GC")

	t.Run("ordinary pod next to them", func(t *testing.T) {
		n.apply(t, n.pod("ok", "sleep 3600"))
		n.waitRunning(t, "ok")
		if !n.delete(t, "ok", 0) {
			t.Error("DeletePod ok: existed = false")
		}
		untouched(t, "after ApplyPod/DeletePod of another pod")
	})

	t.Run("colliding container ID is refused", func(t *testing.T) {
		s := &herdv1.PodSpec{Name: "web", Containers: []*herdv1.ContainerSpec{{Name: "app", Image: n.env.Image, Command: []string{"sleep", "3600"}}}}
		_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s})
		t.Logf("ApplyPod web/app over a foreign herd-web-app: %v", err)
		wantCode(t, err, codes.FailedPrecondition, "herd-web-app", "not managed by herd")
		_, err = n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "web"})
		wantCode(t, err, codes.NotFound)
		// A retry is refused the same way; DeletePod of the name is a
		// no-op.
		_, err = n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s})
		wantCode(t, err, codes.FailedPrecondition)
		if n.delete(t, "web", 0) {
			t.Error("DeletePod web: existed = true for a pod that was refused")
		}

		s2 := &herdv1.PodSpec{Name: "web2", Containers: []*herdv1.ContainerSpec{{Name: "app", Image: n.env.Image, Command: []string{"sleep", "3600"}}}}
		_, err = n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s2})
		t.Logf("ApplyPod web2/app over a foreign snapshot herd-web2-app: %v", err)
		wantCode(t, err, codes.FailedPrecondition, "herd-web2-app", "not managed by herd")

		// A multi-container pod with one colliding container creates
		// nothing at all.
		s3 := &herdv1.PodSpec{Name: "web", Containers: []*herdv1.ContainerSpec{
			{Name: "side", Image: n.env.Image, Command: []string{"sleep", "3600"}},
			{Name: "app", Image: n.env.Image, Command: []string{"sleep", "3600"}},
		}}
		_, err = n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s3})
		wantCode(t, err, codes.FailedPrecondition, "herd-web-app")
		if n.containerExists(t, "herd-web-side") {
			t.Error("refused pod web left container herd-web-side")
		}
		list, err := n.pods.ListPods(ctx, &herdv1.ListPodsRequest{})
		if err != nil || len(list.GetPods()) != 0 {
			t.Errorf("ListPods after refusals = %v, %v; want none", list.GetPods(), err)
		}
		untouched(t, "after the refused ApplyPods")
	})

	t.Run("SIGKILL and restart", func(t *testing.T) {
		n.agent.Kill()
		if err := n.agent.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		// Give the startup GC time to (not) act.
		time.Sleep(2 * time.Second)
		untouched(t, "after SIGKILL and restart")
	})

	t.Run("foreign container appears during back-off", func(t *testing.T) {
		// A crashing pod's container is removed between runs; another
		// tool takes its ID meanwhile.
		n.apply(t, &herdv1.PodSpec{Name: "late", Containers: []*herdv1.ContainerSpec{{Name: "app", Image: n.env.Image, Command: []string{"sh", "-c", "exit 1"}}}})
		n.waitPod(t, "late", "in back-off", func(p *herdv1.Pod) bool {
			cs := p.GetStatus().GetContainers()[0]
			return cs.GetReason() == "CrashLoopBackOff" && !n.containerExists(t, "herd-late-app")
		})
		taken := create("herd-late-app", "herd-late-app-rootfs", other, other, true)
		p := n.waitPod(t, "late", "failing to create its container", func(p *herdv1.Pod) bool {
			return p.GetStatus().GetContainers()[0].GetReason() == "CreateContainerError"
		})
		cs := p.GetStatus().GetContainers()[0]
		t.Logf("pod late after its container ID was taken: %s", fmtPod(p))
		if !strings.Contains(cs.GetMessage(), "herd-late-app") || !strings.Contains(cs.GetMessage(), "not managed by herd") {
			t.Errorf("status message %q does not explain the foreign container", cs.GetMessage())
		}
		objs = append(objs, taken)
		untouched(t, "after the pod's restart ran into it")

		// Deleting the pod leaves the foreign container alone and says so.
		zero := int64(0)
		_, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "late", GracePeriodSeconds: &zero})
		t.Logf("DeletePod late with a foreign container at its ID: %v", err)
		wantCode(t, err, codes.FailedPrecondition, "herd-late-app")
		untouched(t, "after DeletePod of the pod")
		// Once its owner removed it, the deletion goes through.
		removeForeign(t, n, "herd-late-app", "herd-late-app-rootfs")
		objs = objs[:len(objs)-1]
		if !n.delete(t, "late", 0) {
			t.Error("DeletePod late: existed = false")
		}
	})

	t.Run("pod runs once the owner removed the foreign container", func(t *testing.T) {
		removeForeign(t, n, "herd-web-app", "herd-web-app")
		objs = slices.DeleteFunc(objs, func(o *foreignObj) bool { return o.id == "herd-web-app" })
		s := &herdv1.PodSpec{Name: "web", Containers: []*herdv1.ContainerSpec{{Name: "app", Image: n.env.Image, Command: []string{"sleep", "3600"}}}}
		n.apply(t, s)
		p := n.waitRunning(t, "web")
		if id := p.GetStatus().GetContainers()[0].GetContainerId(); id != "herd-web-app" {
			t.Errorf("container id = %s, want herd-web-app", id)
		}
		n.delete(t, "web", 0)
		untouched(t, "at the end")
	})
}

// removeForeign removes a foreign container (killing its task) and its
// snapshot, as their owner would; either may be empty or already gone.
func removeForeign(t *testing.T, n *node, id, snap string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = n.nsCtx(ctx)
	cl := n.containerd()
	if id != "" {
		if c, err := cl.LoadContainer(ctx, id); err == nil {
			if tk, err := c.Task(ctx, nil); err == nil {
				if _, err := tk.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
					t.Logf("cleanup: delete task %s: %v", id, err)
				}
			}
			if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
				t.Logf("cleanup: delete container %s: %v", id, err)
			}
		}
	}
	if snap != "" {
		if err := cl.SnapshotService(acctest.Snapshotter).Remove(ctx, snap); err != nil && !errdefs.IsNotFound(err) {
			t.Logf("cleanup: remove snapshot %s: %v", snap, err)
		}
	}
}
