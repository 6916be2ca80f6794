package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// A deployment on a volume, on a real cluster of two: its replica runs on
// the volume's node whatever the placement strategy prefers; three
// template changes roll it out with never two replicas at once (the old
// one is gone before the new one is created, so agentd never has to refuse
// a second writer), and the counter it keeps on the volume never goes
// back; the volume is bound to the current replica; two writing replicas
// are refused; two read-only replicas share the volume with the writer,
// on its node.
func TestDeploymentOnVolume(t *testing.T) {
	t.Parallel()
	c, _ := newDeploymentCluster(t, []string{"dv-a", "dv-b"}, "10.94.0.0/24", "10.105.0.0/16", nil)
	a, b := c.Nodes[0], c.Nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	waitCapacitySeen(t, c)

	vb := herdv1.NewVolumeServiceClient(b.Conn)
	vr, err := vb.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: "data", Size: "32Mi"}})
	if err != nil {
		t.Fatalf("ApplyVolume on dv-b: %v", err)
	}
	dir := filepath.Join(b.Agent.StateDir, "volumes", vr.GetVolume().GetUid(), "mnt")

	writer := func(rev string) *herdv1.DeploymentSpec {
		return &herdv1.DeploymentSpec{
			Name:     "db",
			Replicas: 1,
			Selector: map[string]string{"app": "db"},
			Template: &herdv1.PodSpec{
				Labels: map[string]string{"app": "db"},
				Containers: []*herdv1.ContainerSpec{{
					Name: "db", Image: c.Env.Image, Memory: "32Mi",
					Command:      []string{"sh", "-c", counterScript},
					Env:          map[string]string{"REVISION": rev},
					VolumeMounts: []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}},
				}},
			},
			// Spread would rather take the empty dv-a; the volume decides.
			Placement: &herdv1.Placement{Strategy: spec.PlacementSpread},
		}
	}
	// Applied through the member without the volume: it knows where the
	// volume is from dv-b's gossip only.
	applyDeployment(t, a, writer("1"))
	waitDeployment(t, c, a, "db", spec.PhaseComplete, 1, 1)
	if rs := replicasOf(c, "db"); len(rs) != 1 || rs[0].node != "dv-b" {
		t.Fatalf("replicas %v, want one on dv-b", perNode(rs))
	}
	last := growsPast(t, dir, 0, "first replica")

	for rev := int64(2); rev <= 4; rev++ {
		stop := make(chan struct{})
		samples := watchRollout(c, "db", stop)
		applyDeployment(t, a, writer(fmt.Sprint(rev)))
		waitDeployment(t, c, a, "db", spec.PhaseComplete, rev, 1)
		close(stop)
		for _, s := range <-samples {
			if len(s.replicas) > 1 {
				var pods []string
				for _, r := range s.replicas {
					pods = append(pods, fmt.Sprintf("%s on %s (terminating %v)", r.pod.GetSpec().GetName(), r.node, r.pod.GetStatus().GetTerminating()))
				}
				t.Fatalf("revision %d: two replicas of a volume writer at %s: %s", rev, s.at.Format(time.StampMilli), strings.Join(pods, ", "))
			}
		}
		rs := replicasOf(c, "db")
		if len(rs) != 1 || rs[0].node != "dv-b" {
			t.Fatalf("revision %d: replicas %v, want one on dv-b", rev, perNode(rs))
		}
		last = growsPast(t, dir, last, fmt.Sprintf("revision %d", rev))
		v, err := vb.GetVolume(ctx, &herdv1.GetVolumeRequest{Name: "data"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := v.GetStatus().GetBoundTo(), rs[0].pod.GetSpec().GetName(); got != want {
			t.Errorf("revision %d: volume bound to %q, want the replica %q", rev, got, want)
		}
		d, err := a.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "db"})
		if err != nil {
			t.Fatal(err)
		}
		if msg := d.GetStatus().GetMessage(); strings.Contains(msg, "mounted read-write") {
			t.Errorf("revision %d: a replica was refused the volume: %s", rev, msg)
		}
	}

	two := writer("4")
	two.Replicas = 2
	_, err = a.Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: two})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "must be 0 or 1") {
		t.Errorf("two writing replicas: %v, want InvalidArgument \"must be 0 or 1\"", err)
	}

	readers := &herdv1.DeploymentSpec{
		Name:     "readers",
		Replicas: 2,
		Selector: map[string]string{"app": "readers"},
		Template: &herdv1.PodSpec{
			Labels: map[string]string{"app": "readers"},
			Containers: []*herdv1.ContainerSpec{{
				Name: "read", Image: c.Env.Image, Memory: "16Mi",
				Command:      []string{"sh", "-c", "trap 'exit 0' TERM; cat /data/n; sleep 3600 & wait"},
				VolumeMounts: []*herdv1.VolumeMount{{Volume: "data", Path: "/data", ReadOnly: true}},
			}},
		},
		Placement: &herdv1.Placement{Strategy: spec.PlacementSpread},
	}
	applyDeployment(t, a, readers)
	waitDeployment(t, c, a, "readers", spec.PhaseComplete, 1, 2)
	if got := perNode(replicasOf(c, "readers")); got["dv-b"] != 2 {
		t.Errorf("read-only replicas %v, want both on dv-b", got)
	}
	v, err := vb.GetVolume(ctx, &herdv1.GetVolumeRequest{Name: "data"})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.GetStatus().GetReaders()) != 2 || v.GetStatus().GetBoundTo() == "" {
		t.Errorf("volume status %v, want the writer and two readers", v.GetStatus())
	}
	growsPast(t, dir, last, "beside the readers")

	// A volume a plain pod writes is no place for a deployment that would
	// write it: the plan (here a dry run, once dv-b's gossip says who
	// writes it) refuses, naming the pod, and nothing is created.
	if _, err := vb.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: "other", Size: "16Mi"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{
		Name: "legacy",
		Containers: []*herdv1.ContainerSpec{{
			Name: "w", Image: c.Env.Image, Memory: "16Mi",
			Command:      []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
			VolumeMounts: []*herdv1.VolumeMount{{Volume: "other", Path: "/data"}},
		}},
	}}); err != nil {
		t.Fatal(err)
	}
	taker := writer("1")
	taker.Name = "taker"
	taker.Selector = map[string]string{"app": "taker"}
	taker.Template.Labels = map[string]string{"app": "taker"}
	taker.Template.Containers[0].VolumeMounts[0].Volume = "other"
	const held = "volume default/other is written by pod legacy"
	waitFor(t, time.Minute, "the dry run refuses a second writer", func() (bool, string) {
		_, err := a.Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: taker, DryRun: true})
		return err != nil && strings.Contains(err.Error(), held), fmt.Sprint(err)
	})
	_, err = a.Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: taker})
	if err == nil || !strings.Contains(err.Error(), held) {
		t.Errorf("apply of a second writer: %v, want %q", err, held)
	}
	if _, err := a.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "taker"}); status.Code(err) != codes.NotFound {
		t.Errorf("the refused deployment: %v, want NotFound", err)
	}
}
