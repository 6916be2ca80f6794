package pods

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// ExtensionPodRecord names the containerd container extension in which
// every container the manager creates carries a copy of its pod's record:
// the defaulted spec, uid, spec hash and creation time (no status). A
// label could not hold it (containerd caps a label at 4 KiB); an
// extension lives and goes with the container's metadata. With it, an
// agentd whose store was lost rebuilds the pods from their running
// containers instead of leaving them unmanaged.
const ExtensionPodRecord = "io.herd.pod-record"

// podRecordCopy is what the containers of e carry of their pod.
func (m *Manager) podRecordCopy(e *podEntry) map[string]proto.Message {
	m.mu.Lock()
	// The published spec: config files may have changed in place.
	p := e.pod
	m.mu.Unlock()
	return map[string]proto.Message{ExtensionPodRecord: &herdv1.Pod{Spec: p.GetSpec(), Uid: e.uid, SpecHash: p.GetSpecHash(), CreatedAt: p.GetCreatedAt()}}
}

// recoverPods runs in Start, before the workers: it drops the tombstones
// of incarnations the store still holds (a deletion that did not finish
// before agentd stopped: the pod stays, and a retried delete writes a new
// tombstone), and returns the records it rebuilt, and stored, of pods
// whose containers carry a copy of their record but whose name the store
// does not know (the store was lost or replaced, or agentd died between
// creating a pod's containers and recording it). Those pods are re-adopted
// like stored ones: their running containers keep running.
func (m *Manager) recoverPods(ctx context.Context, stored []*herdv1.Pod) []*herdv1.Pod {
	taken := map[string]bool{}
	ids := map[string]string{}
	var keep []string
	for _, p := range stored {
		name := p.GetSpec().GetName()
		taken[name] = true
		keep = append(keep, incarnationKey(name, p.GetUid()))
		for _, c := range p.GetSpec().GetContainers() {
			ids[runtime.ContainerID(name, c.GetName())] = name
		}
	}
	if err := m.dropTombstones(keep); err != nil {
		m.log.Error("cannot drop the tombstones of pods the store still holds", "err", err)
	}
	found, err := m.findLost(ctx, taken, ids)
	if err != nil {
		m.log.Warn("cannot look for pod containers agentd's store does not know; garbage collection tries again", "err", err)
		m.gcs.mu.Lock()
		m.gcs.recoverPending = true
		m.gcs.mu.Unlock()
		return nil
	}
	if len(found) > 0 && len(stored) == 0 {
		m.log.Warn("agentd's store knows no pods but containerd runs herd pod containers: the store was lost or replaced; re-adopting the pods from the copies of their records on their containers", "pods", len(found))
	}
	return found
}

// recoverLate retries recoverPods' search for unknown pods in a garbage
// collection pass, if Start could not do it, and starts their workers.
func (m *Manager) recoverLate(ctx context.Context) {
	m.gcs.mu.Lock()
	pending := m.gcs.recoverPending
	m.gcs.mu.Unlock()
	if !pending {
		return
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	taken := map[string]bool{}
	ids := map[string]string{}
	m.mu.Lock()
	for name := range m.unusable {
		taken[name] = true
	}
	for name, e := range m.pods {
		taken[name] = true
		for _, id := range e.ids {
			ids[id] = name
		}
	}
	m.mu.Unlock()
	found, err := m.findLost(ctx, taken, ids)
	if err != nil {
		m.log.Warn("cannot look for pod containers agentd's store does not know", "err", err)
		return
	}
	m.gcs.mu.Lock()
	m.gcs.recoverPending = false
	m.gcs.mu.Unlock()
	for _, pod := range found {
		e, err := m.newEntry(pod)
		if err != nil {
			m.log.Error("cannot re-adopt pod", "pod", pod.GetSpec().GetName(), "err", err)
			continue
		}
		m.mu.Lock()
		if m.closed || m.pods[e.name] != nil {
			m.mu.Unlock()
			continue
		}
		m.pods[e.name] = e
		m.startWorker(e, true)
		m.mu.Unlock()
		m.notify(e.name)
	}
}

// lostPod is a candidate for re-adoption: an incarnation's record copy
// and its newest container's creation time.
type lostPod struct {
	rec    *herdv1.Pod
	newest int64
}

// findLost lists the marked containers, picks for every pod name not
// taken the newest incarnation that has no tombstone and whose containers
// carry a copy of its record, and rebuilds and stores that record. ids
// maps the container IDs of the taken names to their pod: a candidate
// whose IDs clash with one of them is skipped (and reported by garbage
// collection as unknown).
func (m *Manager) findLost(ctx context.Context, taken map[string]bool, ids map[string]string) ([]*herdv1.Pod, error) {
	list, err := m.rt.ListManaged(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]map[string]*lostPod{}
	for _, c := range list {
		name, uid := c.Pod(), c.PodUID()
		if name == "" || uid == "" || taken[name] || m.tombstoned(name, uid) {
			continue
		}
		rec := &herdv1.Pod{}
		ok, err := c.Extension(ExtensionPodRecord, rec)
		if err != nil {
			m.log.Warn("unreadable copy of a pod record on a container", "container", c.ID, "err", err)
			continue
		}
		if !ok {
			continue // an older agentd's: garbage collection reports it
		}
		if rec.GetSpec().GetName() != name || rec.GetUid() != uid {
			m.log.Warn("the copy of a pod record on a container names another pod incarnation than its labels; not re-adopting it",
				"container", c.ID, "pod", name, "uid", uid, "record_pod", rec.GetSpec().GetName(), "record_uid", rec.GetUid())
			continue
		}
		if byName[name] == nil {
			byName[name] = map[string]*lostPod{}
		}
		lp := byName[name][uid]
		if lp == nil {
			lp = &lostPod{rec: rec}
			byName[name][uid] = lp
		}
		lp.newest = max(lp.newest, c.CreatedAt.UnixNano())
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	var netUIDs []string
	if m.cfg.Network != nil && len(names) > 0 {
		if netUIDs, err = m.cfg.Network.List(); err != nil {
			return nil, fmt.Errorf("list pod networks: %w", err)
		}
	}
	var out []*herdv1.Pod
	for _, name := range names {
		var pick *lostPod
		for _, lp := range byName[name] {
			if pick == nil || lp.newest > pick.newest || (lp.newest == pick.newest && lp.rec.GetUid() > pick.rec.GetUid()) {
				pick = lp
			}
		}
		pod, ok := m.rebuild(ctx, pick.rec, ids, slices.Contains(netUIDs, pick.rec.GetUid()))
		if !ok {
			continue
		}
		for _, c := range pod.GetSpec().GetContainers() {
			ids[runtime.ContainerID(name, c.GetName())] = name
		}
		out = append(out, pod)
	}
	return out, nil
}

// rebuild makes a pod record from a copy and stores it; ok is false (and
// the reason logged) when the pod cannot be re-adopted.
func (m *Manager) rebuild(ctx context.Context, rec *herdv1.Pod, ids map[string]string, hasNetwork bool) (*herdv1.Pod, bool) {
	d := rec.GetSpec()
	name, uid := d.GetName(), rec.GetUid()
	log := m.log.With("pod", name, "uid", uid)
	own := make([]string, len(d.GetContainers()))
	for i, c := range d.GetContainers() {
		own[i] = runtime.ContainerID(name, c.GetName())
		if other, clash := ids[own[i]]; clash {
			log.Warn("not re-adopting pod: one of its container IDs belongs to another pod", "container_id", own[i], "other_pod", other)
			return nil, false
		}
	}
	hash := rec.GetSpecHash()
	if hash == "" {
		hash = spec.Hash(d)
	}
	created := rec.GetCreatedAt()
	if created == nil {
		created = timestamppb.Now()
	}
	pod := &herdv1.Pod{Spec: d, Uid: uid, SpecHash: hash, CreatedAt: created, Status: initialStatus(d, own)}
	if _, err := m.newEntry(pod); err != nil {
		log.Warn("not re-adopting pod: the copy of its record is unusable", "err", err)
		return nil, false
	}
	if hasNetwork {
		// Setup returns the network the pod has (it is idempotent): the
		// pod keeps its IP, and so its endpoints.
		if _, ip, err := m.cfg.Network.Setup(ctx, uid, name); err != nil {
			log.Warn("re-adopted pod: cannot look up its pod network; its IP shows once a container starts", "err", err)
		} else {
			pod.Status.PodIp = ip.String()
		}
	}
	if err := m.st.PutPod(pod); err != nil {
		log.Error("not re-adopting pod: cannot record it", "err", err)
		return nil, false
	}
	log.Warn("re-adopting a pod agentd's store did not know, from the copy of its record on its containers")
	return pod, true
}

// removeLeftover removes the marked container at id before e's worker
// creates its own there. A container of another incarnation of the pod is
// replaced by this one: that incarnation gets a tombstone first, so that
// garbage collection removes the rest of it (other containers, logs,
// network) too.
func (m *Manager) removeLeftover(ctx context.Context, e *podEntry, id string) error {
	if c, err := m.rt.LoadContainer(ctx, id); err == nil {
		m.replaced(e, c.Pod(), c.PodUID())
	}
	return m.rt.RemoveContainer(ctx, id)
}

// replaced records that e replaces the incarnation (pod, uid) whose
// container sits at one of e's container IDs, if it is another incarnation
// of the same pod (a container of another pod there is removed, but the
// rest of that pod is left alone).
func (m *Manager) replaced(e *podEntry, pod, uid string) {
	if pod == e.name && uid != e.uid {
		m.tombstone(pod, uid)
	}
}
