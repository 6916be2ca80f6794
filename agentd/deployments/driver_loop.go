package deployments

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/rollout"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// The replicated objects the driver reads (and, for the status, writes).
const (
	kindRecord    = "deployment"
	kindStatusObj = "deployment-status"
)

// loop drives one deployment while this member owns it.
type loop struct {
	d     *Driver
	key   string
	kicks chan struct{}
	quit  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	deleting map[string]bool // pods whose DeletePod is in flight
	wg       sync.WaitGroup
}

func newLoop(d *Driver, key string) *loop {
	return &loop{d: d, key: key, kicks: make(chan struct{}, 1), quit: make(chan struct{}), deleting: map[string]bool{}}
}

func (l *loop) poke() {
	select {
	case l.kicks <- struct{}{}:
	default:
	}
}

// stop ends the loop at once: its calls in flight are cancelled.
func (l *loop) stop() { l.once.Do(func() { close(l.quit) }) }

func (l *loop) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		select {
		case <-l.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer l.wg.Wait()
	tick := time.NewTicker(l.d.cfg.Interval)
	defer tick.Stop()
	for {
		if gone := l.pass(ctx); gone {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-l.kicks:
		case <-tick.C:
		}
	}
}

// pass observes, decides and acts once; it reports whether the deployment
// is gone for good (its replicas and status object deleted).
func (l *loop) pass(ctx context.Context) bool {
	log := l.d.log.With("deployment", l.key)
	rec, recVersion, hasRec := l.record()
	old, hasStatus := l.status()
	if !hasRec {
		if !hasStatus {
			return true
		}
		return l.remove(ctx)
	}
	now := l.d.cfg.Now()
	dep := rec.GetDeployment()
	sp := spec.DefaultDeployment(dep.GetSpec())
	st := &herdv1.DeploymentStatus{}
	if hasStatus {
		st = proto.Clone(old).(*herdv1.DeploymentStatus)
	}
	advanceStatus(st, rec, recVersion, now)

	obs := l.observe(ctx, sp)
	view := l.view(obs, st, dep.GetUid(), sp.GetStrategy().GetMinReadySeconds(), now)
	for _, s := range view.strays {
		l.deleteAsync(ctx, s.node, s.pod, "not one of this deployment's replicas any more")
	}

	params := RolloutParams(sp, templateOf(rec, st.GetCurrentRevision()), st.GetCurrentRevision(), st.GetServingRevision())
	step := rollout.Next(params, view.replicas)

	deadline := time.Duration(sp.GetStrategy().GetProgressDeadlineSeconds()) * time.Second
	switch {
	case step.Done:
		l.converged(st, rec)
	case st.GetPhase() == spec.PhaseProgressing && now.Sub(st.GetRolloutStartedAt().AsTime()) > deadline:
		msg := l.failure(ctx, st, view, deadline)
		if sp.GetStrategy().GetAutoRollback() && st.GetStableRevision() != 0 && st.GetStableRevision() != st.GetCurrentRevision() {
			failed := st.GetCurrentRevision()
			setOutcome(st, failed, spec.PhaseRolledBack, msg)
			st.FailedRevision = failed
			st.CurrentRevision = st.GetStableRevision()
			st.RolloutStartedAt = timestamppb.New(now)
			st.Message = fmt.Sprintf("rolling back to revision %d: %s", st.GetCurrentRevision(), msg)
			log.Warn("rollout failed; rolling back", "revision", failed, "to", st.GetCurrentRevision(), "reason", msg)
			params.Target = st.GetCurrentRevision()
			step = rollout.Next(params, view.replicas)
		} else {
			setOutcome(st, st.GetCurrentRevision(), spec.PhaseFailed, msg)
			st.Phase = spec.PhaseFailed
			st.Message = msg
			log.Warn("rollout failed", "revision", st.GetCurrentRevision(), "reason", msg)
		}
	}

	// BlueGreen: the switch is written first; the old replicas go only
	// once every member holds it (their service rules follow the status).
	deletesHeld := false
	if step.Serve != 0 && step.Serve != st.GetServingRevision() {
		st.ServingRevision = step.Serve
		deletesHeld = true
		log.Info("serving revision", "revision", step.Serve)
	}
	placeMsg := ""
	if step.Create > 0 {
		placeMsg = l.create(ctx, rec, sp, st.GetCurrentRevision(), view, step.Create)
	}
	if st.GetPhase() == spec.PhaseProgressing && st.GetFailedRevision() == 0 {
		st.Message = placeMsg
	}
	l.fillStatus(st, view, now)
	if err := l.putStatus(old, st, now); err != nil {
		log.Error("write deployment status", "err", err)
	}
	if !deletesHeld && sp.GetStrategy().GetType() == spec.StrategyBlueGreen && !l.statusHeld() {
		deletesHeld = hasOldDelete(step.Delete, view, st.GetServingRevision())
	}
	if !deletesHeld {
		for _, pod := range step.Delete {
			if r, ok := view.byPod[pod]; ok {
				l.deleteAsync(ctx, r.GetNode(), pod, "rollout")
			}
		}
	}
	return false
}

// advanceStatus starts the rollout of a new spec revision, and a new attempt
// after another change of the spec (a scale, say).
func advanceStatus(st *herdv1.DeploymentStatus, rec *herdv1.DeploymentRecord, version uint64, now time.Time) {
	dep := rec.GetDeployment()
	rev := dep.GetRevision()
	switch {
	case st.GetCurrentRevision() == 0 || (rev != st.GetCurrentRevision() && rev != st.GetFailedRevision()):
		if cur := st.GetCurrentRevision(); cur != 0 && st.GetPhase() == spec.PhaseProgressing && cur != st.GetStableRevision() {
			setOutcome(st, cur, "Superseded", "")
		}
		st.CurrentRevision = rev
		st.FailedRevision = 0
		st.RolloutStartedAt = timestamppb.New(now)
		st.Phase = spec.PhaseProgressing
		st.Message = ""
		addHistory(st, rec, rev, now)
	case version != st.GetObservedVersion() && st.GetPhase() != spec.PhaseProgressing:
		st.Phase = spec.PhaseProgressing
		st.RolloutStartedAt = timestamppb.New(now)
	}
	st.ObservedVersion = version
}

// converged records a finished rollout: Complete, or RolledBack when the
// spec still names the revision that failed.
func (l *loop) converged(st *herdv1.DeploymentStatus, rec *herdv1.DeploymentRecord) {
	cur := st.GetCurrentRevision()
	st.StableRevision = cur
	if f := st.GetFailedRevision(); f != 0 && f == rec.GetDeployment().GetRevision() && cur != f {
		if st.GetPhase() != spec.PhaseRolledBack {
			st.Phase = spec.PhaseRolledBack
			st.Message = fmt.Sprintf("revision %d failed and was rolled back to revision %d: %s", f, cur, outcomeMessage(st, f))
			l.d.log.Info("rolled back", "deployment", l.key, "failed", f, "revision", cur)
		}
		return
	}
	if st.GetPhase() != spec.PhaseComplete {
		st.Phase = spec.PhaseComplete
		st.Message = ""
		setOutcome(st, cur, spec.PhaseComplete, "")
		l.d.log.Info("rollout complete", "deployment", l.key, "revision", cur)
	}
}

// create places n replicas of revision rev and starts them. A node that
// refuses for want of resources (its published capacity was stale) is
// left out and the replica placed again. It returns why replicas could
// not be placed, "" when all were.
func (l *loop) create(ctx context.Context, rec *herdv1.DeploymentRecord, sp *herdv1.DeploymentSpec, rev int64, v *replicaView, n int) string {
	tmpl := templateOf(rec, rev)
	if tmpl == nil {
		return fmt.Sprintf("the template of revision %d is not kept any more", rev)
	}
	nodes := l.d.cfg.Nodes()
	req := ScheduleRequest(l.key, sp, tmpl)
	req.Existing = map[string]int{}
	for _, r := range v.replicas {
		req.Existing[r.Node]++
	}
	if l.d.cfg.Hint != nil {
		req.Hint = l.d.cfg.Hint(l.key)
	}
	var problems []string
	for placed := 0; placed < n; {
		res := schedule.Place(nodes, req, n-placed)
		if len(res.Nodes) == 0 {
			problems = append(problems, res.Err(l.key).Error())
			break
		}
		refused := false
		for _, node := range res.Nodes {
			err := l.apply(ctx, node, sp, tmpl, rev, rec.GetDeployment().GetUid())
			if err == nil {
				placed++
				req.Existing[node]++
				nodes = takeFree(nodes, node, req.Per)
				continue
			}
			if ctx.Err() != nil {
				return ""
			}
			if reasonOf(err) == herdv1.ReasonInsufficientResources {
				// the view was stale: place this one (and the rest) again
				nodes = excludeNode(nodes, node, "refused: "+status.Convert(err).Message())
				refused = true
				break
			}
			problems = append(problems, fmt.Sprintf("create a replica on %s: %v", node, status.Convert(err).Message()))
			return strings.Join(problems, "; ")
		}
		if !refused && placed < n {
			problems = append(problems, res.Err(l.key).Error())
			break
		}
	}
	return strings.Join(problems, "; ")
}

func (l *loop) apply(ctx context.Context, node string, sp *herdv1.DeploymentSpec, tmpl *herdv1.PodSpec, rev int64, uid string) error {
	pods, err := l.d.cfg.Peers.Pods(ctx, node)
	if err != nil {
		return err
	}
	ps := proto.Clone(tmpl).(*herdv1.PodSpec)
	ps.Name = fmt.Sprintf("%s-%d-%s", sp.GetName(), rev, randomSuffix())
	ps.Deployment = &herdv1.DeploymentRef{Namespace: sp.GetNamespace(), Name: sp.GetName(), Revision: rev, Uid: uid}
	ps.Namespace = sp.GetNamespace()
	cctx, cancel := context.WithTimeout(ctx, l.d.cfg.RPCTimeout)
	defer cancel()
	if _, err := pods.ApplyPod(cctx, &herdv1.ApplyPodRequest{Spec: ps}); err != nil {
		return fmt.Errorf("apply replica %s on %s: %w", ps.GetName(), node, err)
	}
	l.d.log.Info("replica created", "deployment", l.key, "pod", ps.GetName(), "node", node, "revision", rev)
	return nil
}

// deleteAsync drains and deletes a pod (DeletePod's default drain: the
// pod leaves every member's service rules before SIGTERM) in the
// background; the pod counts as terminating until the call returns.
func (l *loop) deleteAsync(ctx context.Context, node, pod, why string) {
	l.mu.Lock()
	if l.deleting[pod] {
		l.mu.Unlock()
		return
	}
	l.deleting[pod] = true
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			delete(l.deleting, pod)
			l.mu.Unlock()
			l.poke()
		}()
		pods, err := l.d.cfg.Peers.Pods(ctx, node)
		if err == nil {
			// the drain and the grace period both happen inside the call
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			_, err = pods.DeletePod(cctx, &herdv1.DeletePodRequest{Name: pod})
			cancel()
		}
		if err != nil {
			if ctx.Err() == nil {
				l.d.log.Warn("delete replica", "deployment", l.key, "pod", pod, "node", node, "err", err)
			}
			return
		}
		l.d.log.Info("replica deleted", "deployment", l.key, "pod", pod, "node", node, "why", why)
	}()
}

func (l *loop) isDeleting(pod string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deleting[pod]
}

func (l *loop) deletesInFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.deleting)
}

// remove is the pass of a deleted deployment: every replica is drained and
// deleted, then the status object.
func (l *loop) remove(ctx context.Context) bool {
	ns, name, _ := strings.Cut(l.key, "/")
	obs := l.observe(ctx, &herdv1.DeploymentSpec{Namespace: ns, Name: name})
	for _, o := range obs.pods {
		l.deleteAsync(ctx, o.node, o.pod.GetSpec().GetName(), "the deployment was deleted")
	}
	if len(obs.pods) > 0 || len(obs.failed) > 0 || l.deletesInFlight() > 0 {
		return false
	}
	if err := l.d.cfg.Store.Delete(kindStatusObj, l.key); err != nil {
		l.d.log.Error("delete deployment status", "deployment", l.key, "err", err)
		return false
	}
	l.d.log.Info("deployment removed", "deployment", l.key)
	return true
}

func (l *loop) record() (*herdv1.DeploymentRecord, uint64, bool) {
	o, ok := l.d.cfg.Store.Get(kindRecord, l.key)
	if !ok {
		return nil, 0, false
	}
	rec := &herdv1.DeploymentRecord{}
	if err := proto.Unmarshal(o.Value, rec); err != nil {
		l.d.log.Error("undecodable deployment", "deployment", l.key, "err", err)
		return nil, 0, false
	}
	return rec, o.Version, true
}

func (l *loop) status() (*herdv1.DeploymentStatus, bool) {
	o, ok := l.d.cfg.Store.Get(kindStatusObj, l.key)
	if !ok {
		return nil, false
	}
	st := &herdv1.DeploymentStatus{}
	if err := proto.Unmarshal(o.Value, st); err != nil {
		l.d.log.Error("undecodable deployment status", "deployment", l.key, "err", err)
		return nil, false
	}
	return st, true
}

// putStatus writes st unless only its time would change.
func (l *loop) putStatus(old, st *herdv1.DeploymentStatus, now time.Time) error {
	st.Driver = l.d.cfg.Store.Name()
	st.UpdatedAt = old.GetUpdatedAt()
	if old != nil && proto.Equal(old, st) {
		return nil
	}
	st.UpdatedAt = timestamppb.New(now)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode status of %s: %w", l.key, err)
	}
	if _, err := l.d.cfg.Store.Put(kindStatusObj, l.key, b); err != nil {
		return fmt.Errorf("write status of %s: %w", l.key, err)
	}
	return nil
}

// statusHeld reports whether every live member holds the status object
// as this node does (BlueGreen: their rules route to its serving revision).
func (l *loop) statusHeld() bool {
	o, ok := l.d.cfg.Store.Get(kindStatusObj, l.key)
	if !ok {
		return false
	}
	vs := l.d.cfg.Store.Versions(kindStatusObj, l.key)
	for _, n := range l.d.cfg.Peers.Nodes() {
		if vs[n] < o.Version {
			return false
		}
	}
	return true
}

func hasOldDelete(pods []string, v *replicaView, serving int64) bool {
	for _, p := range pods {
		if r, ok := v.byPod[p]; ok && r.GetRevision() != serving {
			return true
		}
	}
	return false
}

func templateOf(rec *herdv1.DeploymentRecord, rev int64) *herdv1.PodSpec {
	for _, t := range rec.GetTemplates() {
		if t.GetRevision() == rev {
			return t.GetTemplate()
		}
	}
	if rec.GetDeployment().GetRevision() == rev {
		return rec.GetDeployment().GetSpec().GetTemplate()
	}
	return nil
}

// takeFree lowers node's free resources by one replica's requests.
func takeFree(nodes []schedule.Node, node string, per capacity.Resources) []schedule.Node {
	out := make([]schedule.Node, len(nodes))
	copy(out, nodes)
	for i := range out {
		if out[i].Name == node {
			out[i].Free.CPUMillis = max(out[i].Free.CPUMillis-per.CPUMillis, 0)
			out[i].Free.MemoryBytes = max(out[i].Free.MemoryBytes-per.MemoryBytes, 0)
		}
	}
	return out
}

// excludeNode marks node as unable to take replicas.
func excludeNode(nodes []schedule.Node, node, why string) []schedule.Node {
	out := make([]schedule.Node, len(nodes))
	copy(out, nodes)
	for i := range out {
		if out[i].Name == node {
			out[i].Ready = false
			out[i].NotReady = why
		}
	}
	return out
}

// reasonOf is the ErrorInfo reason of a herd error, "" when it has none.
func reasonOf(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return ""
	}
	for _, d := range se.GRPCStatus().Details() {
		if info, ok := d.(interface {
			GetDomain() string
			GetReason() string
		}); ok && info.GetDomain() == herdv1.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

const suffixAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomSuffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = suffixAlphabet[int(b[i])%len(suffixAlphabet)]
	}
	return string(b)
}
