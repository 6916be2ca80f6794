package deployments

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/rollout"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	"github.com/herd-project/terraform-provider-herd/agentd/services"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Planned replica actions.
const (
	ActionCreate = "create"
	ActionDelete = "delete"
	ActionKeep   = "keep"
)

// Replicas converts a status' recorded replicas for the rollout planner.
func Replicas(st *herdv1.DeploymentStatus) []rollout.Replica {
	var out []rollout.Replica
	for _, rs := range st.GetReplicaStatus() {
		out = append(out, rollout.Replica{
			Pod: rs.GetPod(), Node: rs.GetNode(), Revision: rs.GetRevision(),
			Ready: rs.GetReady(), Available: rs.GetAvailable(), Terminating: rs.GetTerminating(),
			CreatedAt: rs.GetCreatedAt().AsTime(),
		})
	}
	return out
}

// ScheduleRequest is the scheduler's request for one replica of revision's
// template (Existing and Hint left to the caller).
func ScheduleRequest(key string, d *herdv1.DeploymentSpec, template *herdv1.PodSpec) schedule.Request {
	var secs []string
	for _, ref := range spec.PodSecretRefs(template) {
		secs = append(secs, ref.String())
	}
	ns := d.GetNamespace()
	if ns == "" {
		ns = spec.DefaultNamespace
	}
	var vols, writes []string
	for _, v := range spec.TemplateVolumes(template) {
		vols = append(vols, ns+"/"+v) // a replica mounts volumes of its own namespace
	}
	for _, c := range template.GetContainers() {
		for _, m := range c.GetVolumeMounts() {
			if m.GetVolume() != "" && !m.GetReadOnly() {
				writes = append(writes, ns+"/"+m.GetVolume())
			}
		}
	}
	return schedule.Request{
		Key:          key,
		Per:          capacity.Requests(template),
		NodeSelector: d.GetNodeSelector(),
		Secrets:      secs,
		Volumes:      vols,
		Writes:       writes,
		Strategy:     d.GetPlacement().GetStrategy(),
		MaxPerNode:   int(d.GetPlacement().GetMaxPerNode()),
	}
}

// RolloutParams are the planner's parameters of a defaulted spec
// converging on target, whose template is tmpl.
func RolloutParams(d *herdv1.DeploymentSpec, tmpl *herdv1.PodSpec, target, serving int64) rollout.Params {
	st := d.GetStrategy()
	return rollout.Params{
		Replicas:       int(d.GetReplicas()),
		Target:         target,
		Type:           st.GetType(),
		MaxSurge:       int(st.GetMaxSurge()),
		MaxUnavailable: int(st.GetMaxUnavailable()),
		Serving:        serving,
		Exclusive:      spec.TemplateWritesVolume(tmpl),
	}
}

// plan checks that next fits and plans its rollout from the replicas the
// status object records.
func (r *Registry) plan(_ context.Context, cur Record, exists bool, next *herdv1.DeploymentRecord, status *herdv1.DeploymentStatus, hint []string) (*herdv1.RolloutPlan, error) {
	dep := next.GetDeployment()
	d := dep.GetSpec()
	key := Key(d.GetNamespace(), d.GetName())
	needSecrets := false
	for _, t := range next.GetTemplates() {
		needSecrets = needSecrets || len(spec.PodSecretRefs(t.GetTemplate())) > 0
	}
	nodes := r.nodes(needSecrets)

	matching := 0
	for _, n := range nodes {
		if schedule.Matches(n.Labels, d.GetNodeSelector()) {
			matching++
		}
	}
	if msg := spec.MaxPerNodeError(int(d.GetReplicas()), int(d.GetPlacement().GetMaxPerNode()), matching); msg != "" {
		return nil, &UnplaceableError{Report: msg}
	}

	var current []rollout.Replica
	target := dep.GetRevision()
	var serving int64
	if exists && status != nil {
		current = Replicas(status)
		serving = status.GetServingRevision()
		if dep.GetRevision() == cur.GetDeployment().GetRevision() && status.GetCurrentRevision() != 0 {
			target = status.GetCurrentRevision() // after a rollback, the revision rolled back to
		}
	}
	rec := Record{DeploymentRecord: next}
	tmpl, ok := r.Template(rec, target)
	if !ok {
		tmpl = d.GetTemplate()
	}
	perOf := func(rev int64) capacity.Resources {
		if t, ok := r.Template(rec, rev); ok {
			return capacity.Requests(t)
		}
		return capacity.Requests(tmpl)
	}
	p := RolloutParams(d, tmpl, target, serving)
	base := ScheduleRequest(key, d, tmpl)
	initial := map[string]rollout.Replica{}
	for _, rs := range current {
		initial[rs.Pod] = rs
	}
	hintsUsed := 0
	place := func(now []rollout.Replica, n int) ([]string, error) {
		view := make([]schedule.Node, len(nodes))
		copy(view, nodes)
		idx := map[string]int{}
		for i, nd := range view {
			idx[nd.Name] = i
		}
		adjust := func(node string, res capacity.Resources, sign int64) {
			if i, ok := idx[node]; ok {
				view[i].Free.CPUMillis += sign * res.CPUMillis
				view[i].Free.MemoryBytes += sign * res.MemoryBytes
			}
		}
		live := map[string]bool{}
		existing := map[string]int{}
		for _, rs := range now {
			live[rs.Pod] = true
			existing[rs.Node]++
			if _, was := initial[rs.Pod]; !was {
				adjust(rs.Node, perOf(rs.Revision), -1)
			}
		}
		for pod, rs := range initial {
			if !live[pod] {
				adjust(rs.Node, perOf(rs.Revision), +1)
			}
		}
		req := base
		req.Existing = existing
		if hintsUsed < len(hint) {
			req.Hint = hint[hintsUsed:]
		}
		hintsUsed += n
		res := schedule.Place(view, req, n)
		if short := n - len(res.Nodes); short > 0 {
			// Report against the whole deployment: "2 of 5 replicas".
			whole := schedule.Result{Nodes: make([]string, max(p.Replicas-short, 0)), Wanted: max(p.Replicas, short), Reasons: res.Reasons}
			report := whole.Err(key).Error()
			replacing := false
			for _, rs := range now {
				replacing = replacing || rs.Revision != p.Target
			}
			if replacing && p.MaxSurge > 0 && !p.Exclusive {
				// The usual cause: one replica per node on every node, and
				// the surge replica has nowhere to go.
				report += fmt.Sprintf("; the rollout starts each new replica beside the old ones (max_surge = %d): "+
					"make room, or replace in place with max_surge = 0 and max_unavailable = 1", p.MaxSurge)
			}
			return nil, &UnplaceableError{Report: report}
		}
		return res.Nodes, nil
	}
	sim, err := rollout.Simulate(p, current, place)
	if err != nil {
		var ue *UnplaceableError
		if errors.As(err, &ue) {
			return nil, ue
		}
		return nil, fmt.Errorf("plan deployment %s: %w", key, err)
	}

	plan := &herdv1.RolloutPlan{ToRevision: dep.GetRevision(), Steps: int32(sim.Steps)}
	if exists {
		plan.FromRevision = cur.GetDeployment().GetRevision()
	}
	for _, n := range sortedKeys(sim.Nodes) {
		c := sim.Nodes[n]
		plan.Nodes = append(plan.Nodes, &herdv1.NodeChange{Node: n, Add: int32(c[0]), Remove: int32(c[1])})
	}
	for _, n := range sim.Creates {
		plan.Replicas = append(plan.Replicas, &herdv1.PlannedReplica{Node: n, Revision: target, Action: ActionCreate})
	}
	deleted := map[string]bool{}
	for _, rs := range sim.Deletes {
		deleted[rs.Pod] = true
	}
	for _, rs := range current {
		if rs.Terminating {
			continue
		}
		action := ActionKeep
		if deleted[rs.Pod] {
			action = ActionDelete
		}
		plan.Replicas = append(plan.Replicas, &herdv1.PlannedReplica{Pod: rs.Pod, Node: rs.Node, Revision: rs.Revision, Action: action})
	}
	plan.Services = r.matchingServices(d, target)
	plan.Summary = summary(summaryInput{
		key: key, exists: exists, changed: exists && !proto.Equal(cur.GetDeployment().GetSpec(), d),
		from: plan.FromRevision, to: plan.ToRevision,
		fromReplicas: cur.GetDeployment().GetSpec().GetReplicas(), replicas: d.GetReplicas(),
		spec: d, plan: sim, services: plan.Services,
	})
	return plan, nil
}

// matchingServices are the services (namespace/name) whose selector picks
// the replicas of revision.
func (r *Registry) matchingServices(d *herdv1.DeploymentSpec, revision int64) []string {
	labels := map[string]string{}
	for k, v := range d.GetTemplate().GetLabels() {
		labels[k] = v
	}
	labels[spec.LabelDeployment] = spec.DeploymentLabel(d.GetNamespace(), d.GetName())
	labels[spec.LabelRevision] = strconv.FormatInt(revision, 10)
	var out []string
	for _, o := range r.st.List(services.KindService) {
		svc := &herdv1.Service{}
		if err := proto.Unmarshal(o.Value, svc); err != nil {
			continue
		}
		s := svc.GetSpec()
		ns := s.GetNamespace()
		if ns == "" {
			ns = spec.DefaultNamespace
		}
		if ns != d.GetNamespace() || len(s.GetSelector()) == 0 || !schedule.Matches(labels, s.GetSelector()) {
			continue
		}
		out = append(out, services.Key(ns, s.GetName()))
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
