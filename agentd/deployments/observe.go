package deployments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/deployments/rollout"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// observedPod is a pod with the deployment's label on a member.
type observedPod struct {
	node string
	pod  *herdv1.Pod
}

// observation is what the live members reported.
type observation struct {
	pods   []observedPod
	failed map[string]error // members whose listing failed
}

// observe lists the pods labelled with the deployment on every live member,
// in parallel. A member that does not answer is reported in failed: its
// replicas are neither missing nor known.
func (l *loop) observe(ctx context.Context, sp *herdv1.DeploymentSpec) observation {
	sel := map[string]string{spec.LabelDeployment: spec.DeploymentLabel(sp.GetNamespace(), sp.GetName())}
	nodes := l.d.cfg.Peers.Nodes()
	var mu sync.Mutex
	var wg sync.WaitGroup
	obs := observation{failed: map[string]error{}}
	for _, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods, err := l.listOn(ctx, node, sel)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				obs.failed[node] = err
				return
			}
			for _, p := range pods {
				obs.pods = append(obs.pods, observedPod{node: node, pod: p})
			}
		}()
	}
	wg.Wait()
	sort.Slice(obs.pods, func(i, j int) bool { return obs.pods[i].pod.GetSpec().GetName() < obs.pods[j].pod.GetSpec().GetName() })
	for node, err := range obs.failed {
		if ctx.Err() == nil {
			l.d.log.Warn("list replicas", "deployment", l.key, "node", node, "err", err)
		}
	}
	return obs
}

func (l *loop) listOn(ctx context.Context, node string, sel map[string]string) ([]*herdv1.Pod, error) {
	pods, err := l.d.cfg.Peers.Pods(ctx, node)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.d.cfg.RPCTimeout)
	defer cancel()
	resp, err := pods.ListPods(cctx, &herdv1.ListPodsRequest{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	return resp.GetPods(), nil
}

// replicaView is one pass's picture of the replicas.
type replicaView struct {
	replicas []rollout.Replica
	byPod    map[string]*herdv1.ReplicaStatus
	strays   []stray
}

type stray struct{ node, pod string }

// view turns an observation into the planner's replicas. Pods of another
// deployment of the same name (uid) are strays, and so are replicas that
// finished for good (they never serve again: a new one takes their
// place). The replicas recorded on a member that did not answer are
// carried over as recorded.
func (l *loop) view(obs observation, st *herdv1.DeploymentStatus, uid string, minReady int32, now time.Time) *replicaView {
	v := &replicaView{byPod: map[string]*herdv1.ReplicaStatus{}}
	for _, o := range obs.pods {
		p := o.pod
		name := p.GetSpec().GetName()
		ref := p.GetSpec().GetDeployment()
		phase := p.GetStatus().GetPhase()
		if ref.GetUid() != uid || phase == "Succeeded" || phase == "Failed" {
			v.strays = append(v.strays, stray{o.node, name})
			continue
		}
		ps := p.GetStatus()
		terminating := ps.GetTerminating() || l.isDeleting(name)
		ready := ps.GetReady() && !terminating
		available := ready && ps.GetReadySince() != nil && !now.Before(ps.GetReadySince().AsTime().Add(time.Duration(minReady)*time.Second))
		rs := &herdv1.ReplicaStatus{
			Pod: name, Node: o.node, Revision: ref.GetRevision(), Phase: phase, Ready: ready,
			PodIp: ps.GetPodIp(), Uid: p.GetUid(), CreatedAt: p.GetCreatedAt(), Available: available,
			Message: replicaMessage(p), Terminating: terminating,
		}
		v.byPod[name] = rs
		v.replicas = append(v.replicas, rollout.Replica{
			Pod: name, Node: o.node, Revision: ref.GetRevision(), Ready: ready, Available: available,
			Terminating: terminating, CreatedAt: p.GetCreatedAt().AsTime(),
		})
	}
	for _, r := range st.GetReplicaStatus() {
		if _, unknown := obs.failed[r.GetNode()]; !unknown {
			continue
		}
		if _, seen := v.byPod[r.GetPod()]; seen {
			continue
		}
		v.byPod[r.GetPod()] = r
		v.replicas = append(v.replicas, rollout.Replica{
			Pod: r.GetPod(), Node: r.GetNode(), Revision: r.GetRevision(), Ready: r.GetReady(), Available: r.GetAvailable(),
			Terminating: r.GetTerminating(), CreatedAt: r.GetCreatedAt().AsTime(),
		})
	}
	sort.Slice(v.replicas, func(i, j int) bool { return v.replicas[i].Pod < v.replicas[j].Pod })
	return v
}

// replicaMessage says why a replica is not ready: its first container that
// is not, with the reason and message it reports.
func replicaMessage(p *herdv1.Pod) string {
	ps := p.GetStatus()
	if ps.GetReady() {
		return ""
	}
	for _, c := range ps.GetContainers() {
		if c.GetReady() {
			continue
		}
		why := strings.TrimSpace(strings.Join(nonEmpty(c.GetReason(), c.GetMessage()), ": "))
		if why == "" {
			why = c.GetState()
		}
		return fmt.Sprintf("container %s: %s", c.GetName(), why)
	}
	if m := ps.GetMessage(); m != "" {
		return m
	}
	return ps.GetPhase()
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// fillStatus sets the counts and the replica list.
func (l *loop) fillStatus(st *herdv1.DeploymentStatus, v *replicaView, _ time.Time) {
	st.Replicas, st.ReadyReplicas, st.UpdatedReplicas, st.AvailableReplicas = 0, 0, 0, 0
	st.ReplicaStatus = make([]*herdv1.ReplicaStatus, 0, len(v.byPod))
	for _, n := range slices.Sorted(maps.Keys(v.byPod)) {
		r := v.byPod[n]
		st.ReplicaStatus = append(st.ReplicaStatus, r)
		if r.GetTerminating() {
			continue
		}
		st.Replicas++
		if r.GetReady() {
			st.ReadyReplicas++
		}
		if r.GetAvailable() {
			st.AvailableReplicas++
		}
		if r.GetRevision() == st.GetCurrentRevision() {
			st.UpdatedReplicas++
		}
	}
}

// failure describes a rollout that missed its deadline: the first replica
// of the target revision that is not available, why (its container's
// probe message or reason) and its last log lines; or why replicas could
// not be placed.
func (l *loop) failure(ctx context.Context, st *herdv1.DeploymentStatus, v *replicaView, deadline time.Duration) string {
	rev := st.GetCurrentRevision()
	head := fmt.Sprintf("revision %d not available after %s", rev, deadline)
	var bad *herdv1.ReplicaStatus
	for _, n := range slices.Sorted(maps.Keys(v.byPod)) {
		r := v.byPod[n]
		if r.GetRevision() == rev && !r.GetAvailable() && !r.GetTerminating() {
			if bad == nil || (bad.GetMessage() == "" && r.GetMessage() != "") {
				bad = r
			}
		}
	}
	if bad == nil {
		if m := st.GetMessage(); m != "" {
			return head + ": " + m
		}
		n := 0
		for _, r := range v.replicas {
			if r.Revision == rev && r.Available && !r.Terminating {
				n++
			}
		}
		return fmt.Sprintf("%s: %d replicas of it available", head, n)
	}
	msg := fmt.Sprintf("%s: replica %s on %s: %s", head, bad.GetPod(), bad.GetNode(), nonEmptyOr(bad.GetMessage(), "not ready"))
	if logs := l.tail(ctx, bad.GetNode(), bad.GetPod(), containerOf(bad.GetMessage())); logs != "" {
		msg += "; last log lines:\n" + logs
	}
	return msg
}

func nonEmptyOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// containerOf is the container a replicaMessage names ("" for none).
func containerOf(msg string) string {
	rest, ok := strings.CutPrefix(msg, "container ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ":")
	return name
}

// tail returns the last 10 log lines of a replica's container ("" when
// they cannot be read).
func (l *loop) tail(ctx context.Context, node, pod, container string) string {
	pods, err := l.d.cfg.Peers.Pods(ctx, node)
	if err != nil {
		return ""
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := pods.PodLogs(cctx, &herdv1.PodLogsRequest{Pod: pod, Container: container, TailLines: 10})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for {
		chunk, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && b.Len() == 0 {
				return ""
			}
			break
		}
		b.Write(chunk.GetData())
		if b.Len() > 8192 {
			break
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// addHistory records the start of a revision's rollout (the last ten are
// kept).
func addHistory(st *herdv1.DeploymentStatus, rec *herdv1.DeploymentRecord, rev int64, now time.Time) {
	for _, h := range st.GetHistory() {
		if h.GetRevision() == rev {
			h.Outcome, h.Message = spec.PhaseProgressing, ""
			return
		}
	}
	created := timestamppb.New(now)
	for _, t := range rec.GetTemplates() {
		if t.GetRevision() == rev && t.GetCreatedAt() != nil {
			created = t.GetCreatedAt()
		}
	}
	st.History = append(st.History, &herdv1.DeploymentRevision{
		Revision: rev, CreatedAt: created, Outcome: spec.PhaseProgressing,
		Change: templateChange(templateOf(rec, previousRevision(rec, rev)), templateOf(rec, rev)),
	})
	if n := len(st.History); n > 10 {
		st.History = st.History[n-10:]
	}
}

func previousRevision(rec *herdv1.DeploymentRecord, rev int64) int64 {
	var prev int64
	for _, t := range rec.GetTemplates() {
		if r := t.GetRevision(); r < rev && r > prev {
			prev = r
		}
	}
	return prev
}

func setOutcome(st *herdv1.DeploymentStatus, rev int64, outcome, msg string) {
	for _, h := range st.GetHistory() {
		if h.GetRevision() == rev {
			h.Outcome, h.Message = outcome, msg
		}
	}
}

func outcomeMessage(st *herdv1.DeploymentStatus, rev int64) string {
	for _, h := range st.GetHistory() {
		if h.GetRevision() == rev {
			return h.GetMessage()
		}
	}
	return ""
}
