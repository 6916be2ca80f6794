package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// deployBench is a three-node cluster for the deployment benchmarks.
type deployBench struct {
	c     *acctest.TestCluster
	image string
	dep   herdv1.DeploymentServiceClient // through Nodes[0]
}

func newDeployBench(b *testing.B, prefix, subnet string) *deployBench {
	b.Helper()
	env := acctest.SharedEnv(b)
	db := &deployBench{image: serverImage(b, env)}
	db.c = env.NewCluster(b, acctest.ClusterOptions{
		Names:  []string{prefix + "-a", prefix + "-b", prefix + "-c"},
		Subnet: netip.MustParsePrefix(subnet),
	})
	db.dep = herdv1.NewDeploymentServiceClient(db.c.Nodes[0].Conn)
	return db
}

// template is benchserver with a readiness probe on /healthz every second,
// the revision in its environment.
func (db *deployBench) template(app, rev string) *herdv1.PodSpec {
	one := int32(1)
	return &herdv1.PodSpec{
		Labels: map[string]string{"app": app},
		Containers: []*herdv1.ContainerSpec{{
			Name: "main", Image: db.image, Command: []string{"/benchserver"},
			Env:   map[string]string{"REVISION": rev},
			Ports: []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &herdv1.Probe{
				HttpGet:       &herdv1.HTTPGetAction{Path: "/healthz", PortName: "http"},
				PeriodSeconds: &one, FailureThreshold: &one, SuccessThreshold: &one,
			},
		}},
	}
}

func (db *deployBench) deployment(app, rev string, replicas int32) *herdv1.DeploymentSpec {
	return &herdv1.DeploymentSpec{
		Name: app, Replicas: replicas,
		Selector:  map[string]string{"app": app},
		Template:  db.template(app, rev),
		Placement: &herdv1.Placement{Strategy: spec.PlacementSpread},
		Strategy:  &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(1), MaxUnavailable: proto.Int32(0)},
	}
}

// apply writes the deployment and waits until its status has acted on the
// new version and is Complete; it returns the time that took.
func (db *deployBench) apply(b *testing.B, s *herdv1.DeploymentSpec) time.Duration {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	resp, err := db.dep.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: s})
	if err != nil {
		b.Fatalf("apply deployment %s: %v", s.GetName(), err)
	}
	version := resp.GetDeployment().GetVersion()
	db.waitComplete(b, s.GetName(), func(d *herdv1.Deployment) bool { return d.GetStatus().GetObservedVersion() >= version })
	return time.Since(t0)
}

// waitComplete waits until the deployment is Complete with every replica
// available and cond holds.
func (db *deployBench) waitComplete(b *testing.B, name string, cond func(*herdv1.Deployment) bool) {
	b.Helper()
	ctx := context.Background()
	waitUntil(b, 5*time.Minute, "deployment "+name+" complete", func() (bool, error) {
		d, err := db.dep.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: name})
		if err != nil {
			return false, err
		}
		st := d.GetStatus()
		switch st.GetPhase() {
		case spec.PhaseFailed, spec.PhaseRolledBack:
			b.Fatalf("deployment %s: %s: %s", name, st.GetPhase(), st.GetMessage())
		}
		ok := cond(d) && st.GetPhase() == spec.PhaseComplete && st.GetAvailableReplicas() == d.GetSpec().GetReplicas() &&
			int32(len(st.GetReplicaStatus())) == d.GetSpec().GetReplicas()
		return ok, fmt.Errorf("phase %s, %d/%d available: %s", st.GetPhase(), st.GetAvailableReplicas(), d.GetSpec().GetReplicas(), st.GetMessage())
	})
}

// podReady applies one pod of the same template on n and returns the time
// from ApplyPod until it is Ready: one step of a sequential rollout can be
// no faster than this.
func (db *deployBench) podReady(b *testing.B, n *acctest.ClusterNode, name string) time.Duration {
	b.Helper()
	ctx := context.Background()
	t := db.template("floor", "1")
	t.Name = name
	t0 := time.Now()
	if _, err := n.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: t}); err != nil {
		b.Fatalf("apply pod %s: %v", name, err)
	}
	waitUntil(b, time.Minute, "pod "+name+" ready", func() (bool, error) {
		p, err := n.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: name})
		if err != nil {
			return false, err
		}
		return p.GetStatus().GetReady(), nil
	})
	d := time.Since(t0)
	zero := int64(0)
	if _, err := n.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: name, GracePeriodSeconds: &zero, SkipDrain: true}); err != nil {
		b.Fatalf("delete pod %s: %v", name, err)
	}
	return d
}

// BenchmarkRollout times a rolling update of 10 replicas (surge 1,
// unavailable 0) from ApplyDeployment until the deployment reports
// Complete with all 10 of the new revision available, against the floor
// of 10 x one pod's start to Ready on the same nodes, measured in the
// same iteration. Each step of the roll also drains an old replica (it
// leaves every member's endpoints before SIGTERM) — that is part of what a
// user waits for.
func BenchmarkRollout(b *testing.B) {
	db := newDeployBench(b, "br", "10.84.0.0/24")
	const replicas = 10
	db.apply(b, db.deployment("roll", "0", replicas))
	var rolls, floors []time.Duration
	for i := 0; b.Loop(); i++ {
		var one []time.Duration
		for j, n := range db.c.Nodes {
			one = append(one, db.podReady(b, n, fmt.Sprintf("floor-%d-%d", i, j)))
		}
		floors = append(floors, replicas*median(one))
		rolls = append(rolls, db.apply(b, db.deployment("roll", strconv.Itoa(i+1), replicas)))
	}
	r, f := median(rolls), median(floors)
	b.ReportMetric(ms(r)/1000, "rollout-s")
	b.ReportMetric(ms(f)/1000, "floor-s")
	b.ReportMetric(float64(r)/float64(f), "ratio")
	b.ReportMetric(ms(f)/replicas, "pod-ready-ms")
}

// BenchmarkReplacement times healing after a node death: six replicas
// spread over three nodes, one node's agentd is killed, and the clock runs
// from the moment a survivor reports the member dead until the deployment
// has six ready replicas again, all on the survivors (from-kill-ms adds
// the time memberlist takes to declare the death).
func BenchmarkReplacement(b *testing.B) {
	var took, fromKill []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		db := newDeployBench(b, fmt.Sprintf("bp%d", i), fmt.Sprintf("10.%d.0.0/24", 85+i%10))
		db.apply(b, db.deployment("heal", "1", 6))
		victim := db.c.Nodes[2]
		survivor := db.c.Nodes[0]
		b.StartTimer()
		killed := time.Now()
		victim.Agent.Kill()
		ctx := context.Background()
		var dead time.Time
		waitUntil(b, time.Minute, survivor.Agent.Name+" sees "+victim.Agent.Name+" dead", func() (bool, error) {
			l, err := survivor.Cluster.ListMembers(ctx, &herdv1.ListMembersRequest{})
			if err != nil {
				return false, err
			}
			for _, m := range l.GetMembers() {
				if m.GetName() == victim.Agent.Name && m.GetState() != "alive" && m.GetState() != "suspect" {
					dead = time.Now()
					return true, nil
				}
			}
			return false, nil
		})
		db.waitComplete(b, "heal", func(d *herdv1.Deployment) bool {
			for _, r := range d.GetStatus().GetReplicaStatus() {
				if r.GetNode() == victim.Agent.Name || !r.GetReady() {
					return false
				}
			}
			return true
		})
		took = append(took, time.Since(dead))
		fromKill = append(fromKill, time.Since(killed))
		b.Logf("%s dead %v after the kill; six replicas ready on the survivors %v after the kill",
			victim.Agent.Name, dead.Sub(killed).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		// Each round has a cluster of its own, removed with the benchmark:
		// nothing to undo here (the killed node could not answer anyway).
	}
	b.ReportMetric(ms(median(took)), "replace-ms")
	b.ReportMetric(ms(slicesMax(took)), "replace-max-ms")
	b.ReportMetric(ms(median(fromKill)), "from-kill-ms")
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
