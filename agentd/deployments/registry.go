// Package deployments is agentd's deployment machinery: the registry of
// replicated deployment objects (written through any member), the
// scheduler's view of the cluster, and the driver that the one member
// chosen for each deployment runs to place, roll out and heal its replicas.
package deployments

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Replicated kinds, both keyed "<namespace>/<name>".
const (
	KindDeployment = "deployment"        // herdv1.DeploymentRecord, written by Apply on any member
	KindStatus     = "deployment-status" // herdv1.DeploymentStatus, written by the driving member only
	// KindHint holds the nodes the client's dry run planned for the
	// replicas of one spec version (JSON hint), for whichever member drives.
	KindHint = "deployment-hint"
)

// KeepRevisions is how many revisions' templates a record keeps: what a
// rollback can return to.
const KeepRevisions = 10

// ErrUnplaceable is wrapped by Apply's error when a replica fits on no
// node; the error's message is the per-node report.
var ErrUnplaceable = errors.New("unplaceable")

// UnplaceableError carries the report; errors.Is(err, ErrUnplaceable).
type UnplaceableError struct{ Report string }

func (e *UnplaceableError) Error() string { return e.Report }

// Is makes the error match ErrUnplaceable.
func (e *UnplaceableError) Is(target error) bool { return target == ErrUnplaceable }

// volumeGossipGrace is how long Apply waits for a volume no node has
// published yet before it calls the deployment unplaceable.
const volumeGossipGrace = 5 * time.Second

// missingVolume reports whether err says that replicas found no node with
// their volumes.
func missingVolume(err error) bool {
	var ue *UnplaceableError
	return errors.As(err, &ue) && strings.Contains(ue.Report, schedule.NoVolumeReason)
}

// ErrorReason is the google.rpc.ErrorInfo reason the server attaches.
func (e *UnplaceableError) ErrorReason() string { return herdv1.ReasonUnplaceable }

// Store is what the registry needs from the cluster; agentd/cluster's
// Cluster satisfies it.
type Store interface {
	Name() string
	Get(kind, key string) (cluster.Object, bool)
	List(kind string) []cluster.Object
	Put(kind, key string, value []byte) (uint64, error)
	Delete(kind, key string) error
	// DeleteIf deletes only what check accepts, checked under the
	// store's lock.
	DeleteIf(kind, key string, check func(cluster.Object) error) (bool, error)
	Members() []cluster.Member
	Entries(kind string) []cluster.Entry
}

// Record is a deployment object as stored.
type Record struct {
	*herdv1.DeploymentRecord
	Version uint64 // the cluster object's version
}

// Key is a deployment's key: "namespace/name" (namespace default "default").
func Key(namespace, name string) string {
	if namespace == "" {
		namespace = spec.DefaultNamespace
	}
	return namespace + "/" + name
}

// Registry reads and writes deployments and their status objects.
type Registry struct {
	st  Store
	log *slog.Logger
	mu  sync.Mutex // one Apply at a time through this node

	secMu   sync.Mutex
	secrets SecretSource
	secView secretCache
}

// NewRegistry returns a registry over st.
func NewRegistry(st Store, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{st: st, log: log}
}

func encode(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

func decodeRecord(o cluster.Object) (Record, error) {
	rec := &herdv1.DeploymentRecord{}
	if err := proto.Unmarshal(o.Value, rec); err != nil {
		return Record{}, fmt.Errorf("decode deployment %s: %w", o.Key, err)
	}
	return Record{DeploymentRecord: rec, Version: o.Version}, nil
}

// Get returns the deployment stored under key.
func (r *Registry) Get(key string) (Record, bool) {
	o, ok := r.st.Get(KindDeployment, key)
	if !ok {
		return Record{}, false
	}
	rec, err := decodeRecord(o)
	if err != nil {
		r.log.Warn("deployment unreadable", "key", key, "err", err)
		return Record{}, false
	}
	return rec, true
}

// List returns every deployment, sorted by key.
func (r *Registry) List() []Record {
	objs := r.st.List(KindDeployment)
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	out := make([]Record, 0, len(objs))
	for _, o := range objs {
		rec, err := decodeRecord(o)
		if err != nil {
			r.log.Warn("deployment unreadable", "key", o.Key, "err", err)
			continue
		}
		out = append(out, rec)
	}
	return out
}

// Delete deletes the deployment object; its driver, which still sees the
// status object, drains and deletes the replicas. A uid other than "" must
// be the deployment's: another incarnation of the name is kept and
// spec.ErrOtherIncarnation returned.
func (r *Registry) Delete(key, uid string) (bool, error) {
	existed, err := r.st.DeleteIf(KindDeployment, key, func(o cluster.Object) error {
		return checkIncarnation(o, uid)
	})
	if err != nil {
		return false, fmt.Errorf("delete deployment %s: %w", key, err)
	}
	if !existed {
		return false, nil
	}
	if _, ok := r.st.Get(KindHint, key); ok {
		if err := r.st.Delete(KindHint, key); err != nil {
			r.log.Warn("delete placement hint", "deployment", key, "err", err)
		}
	}
	return true, nil
}

type hint struct {
	Version uint64   `json:"version"`
	Nodes   []string `json:"nodes"`
}

// putHint records the nodes a dry run planned for the spec at version; a
// hint is only a preference, so failing to write it fails nothing.
func (r *Registry) putHint(key string, version uint64, nodes []string) {
	if len(nodes) == 0 {
		if _, ok := r.st.Get(KindHint, key); ok {
			if err := r.st.Delete(KindHint, key); err != nil {
				r.log.Warn("delete placement hint", "deployment", key, "err", err)
			}
		}
		return
	}
	b, err := json.Marshal(hint{Version: version, Nodes: nodes})
	if err == nil {
		_, err = r.st.Put(KindHint, key, b)
	}
	if err != nil {
		r.log.Warn("write placement hint", "deployment", key, "err", err)
	}
}

// Hint returns the nodes the client's dry run planned for the current spec
// of key (the placement_hint of the apply that wrote it); none once the
// spec changed without one.
func (r *Registry) Hint(key string) []string {
	o, ok := r.st.Get(KindHint, key)
	if !ok {
		return nil
	}
	rec, ok := r.Get(key)
	if !ok {
		return nil
	}
	var h hint
	if err := json.Unmarshal(o.Value, &h); err != nil || h.Version != rec.Version {
		return nil
	}
	return h.Nodes
}

// Status returns the status object of key.
func (r *Registry) Status(key string) (*herdv1.DeploymentStatus, bool) {
	o, ok := r.st.Get(KindStatus, key)
	if !ok {
		return nil, false
	}
	st := &herdv1.DeploymentStatus{}
	if err := proto.Unmarshal(o.Value, st); err != nil {
		r.log.Warn("deployment status unreadable", "key", key, "err", err)
		return nil, false
	}
	return st, true
}

// PutStatus writes the status object of key (the driving member only).
func (r *Registry) PutStatus(key string, st *herdv1.DeploymentStatus) error {
	b, err := encode(st)
	if err != nil {
		return fmt.Errorf("encode deployment status %s: %w", key, err)
	}
	if _, err := r.st.Put(KindStatus, key, b); err != nil {
		return fmt.Errorf("write deployment status %s: %w", key, err)
	}
	return nil
}

// DeleteStatus deletes the status object of key (once its replicas are
// gone).
func (r *Registry) DeleteStatus(key string) error {
	if err := r.st.Delete(KindStatus, key); err != nil {
		return fmt.Errorf("delete deployment status %s: %w", key, err)
	}
	return nil
}

// StatusKeys lists the keys of every status object (a deleted
// deployment's status outlives it until its replicas are gone).
func (r *Registry) StatusKeys() []string {
	var keys []string
	for _, o := range r.st.List(KindStatus) {
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

// Template returns a copy of the template of revision, if the record still
// keeps it.
func (r *Registry) Template(rec Record, revision int64) (*herdv1.PodSpec, bool) {
	for _, t := range rec.GetTemplates() {
		if t.GetRevision() == revision {
			return proto.Clone(t.GetTemplate()).(*herdv1.PodSpec), true
		}
	}
	return nil, false
}

// templateBytes identifies a template after defaulting: revisions change
// only when these differ.
func templateBytes(t *herdv1.PodSpec) ([]byte, error) {
	return encode(spec.Defaulted(t))
}

// Apply validates, places and plans a deployment and, unless dry_run,
// writes it. Bad input is refused with spec.FieldErrors; a deployment that
// does not fit with an *UnplaceableError (errors.Is ErrUnplaceable) whose
// message is the per-node report, before anything is written.
func (r *Registry) Apply(ctx context.Context, req *herdv1.ApplyDeploymentRequest) (*herdv1.ApplyDeploymentResponse, error) {
	if errs := spec.ValidateDeployment(req.GetSpec()); len(errs) > 0 {
		return nil, errs
	}
	d := spec.DefaultDeployment(req.GetSpec())
	key := Key(d.GetNamespace(), d.GetName())

	r.mu.Lock()
	defer r.mu.Unlock()
	cur, exists := r.Get(key)
	next, changed, err := nextRecord(cur, exists, d)
	if err != nil {
		return nil, fmt.Errorf("apply deployment %s: %w", key, err)
	}
	status, _ := r.Status(key)
	plan, err := r.plan(ctx, cur, exists, next, status, req.GetPlacementHint())
	// A volume created a moment ago (by the same apply) may not have
	// reached this member's view yet: its node publishes it through
	// gossip. Give it a few seconds before refusing.
	for deadline := time.Now().Add(volumeGossipGrace); err != nil && missingVolume(err) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("apply deployment %s: %w", key, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		plan, err = r.plan(ctx, cur, exists, next, status, req.GetPlacementHint())
	}
	if err != nil && changed {
		return nil, err
	}
	if err != nil {
		// The same spec again is no new demand: whatever healing cannot
		// place now is the driver's to report, not a reason to refuse.
		rev := next.GetDeployment().GetRevision()
		plan = &herdv1.RolloutPlan{FromRevision: rev, ToRevision: rev, Summary: summary(summaryInput{
			key: key, exists: true, to: rev, replicas: d.GetReplicas(),
		})}
	}
	resp := &herdv1.ApplyDeploymentResponse{Changed: changed, Plan: plan}
	dep := proto.Clone(next.GetDeployment()).(*herdv1.Deployment)
	dep.Version = cur.Version
	if req.GetDryRun() || !changed {
		dep.Status = status
		resp.Deployment = dep
		return resp, nil
	}
	b, err := encode(next)
	if err != nil {
		return nil, fmt.Errorf("encode deployment %s: %w", key, err)
	}
	v, err := r.st.Put(KindDeployment, key, b)
	if err != nil {
		return nil, fmt.Errorf("write deployment %s: %w", key, err)
	}
	r.log.Info("deployment applied", "deployment", key, "revision", dep.GetRevision(), "version", v, "replicas", d.GetReplicas())
	r.putHint(key, v, req.GetPlacementHint())
	dep.Version = v
	dep.Status = status
	resp.Deployment = dep
	return resp, nil
}

// nextRecord is the record Apply writes: the uid and creation time kept, the
// revision raised when the defaulted template differs, the templates of the
// last KeepRevisions revisions.
func nextRecord(cur Record, exists bool, d *herdv1.DeploymentSpec) (*herdv1.DeploymentRecord, bool, error) {
	now := timestamppb.Now()
	if !exists {
		return &herdv1.DeploymentRecord{
			Deployment: &herdv1.Deployment{Spec: d, Uid: newUID(), CreatedAt: now, Revision: 1},
			Templates:  []*herdv1.RevisionTemplate{{Revision: 1, Template: d.GetTemplate(), CreatedAt: now}},
		}, true, nil
	}
	old := cur.GetDeployment()
	oldSpec, err := encode(old.GetSpec())
	if err != nil {
		return nil, false, err
	}
	newSpec, err := encode(d)
	if err != nil {
		return nil, false, err
	}
	if bytes.Equal(oldSpec, newSpec) {
		return proto.Clone(cur.DeploymentRecord).(*herdv1.DeploymentRecord), false, nil
	}
	oldT, err := templateBytes(old.GetSpec().GetTemplate())
	if err != nil {
		return nil, false, err
	}
	newT, err := templateBytes(d.GetTemplate())
	if err != nil {
		return nil, false, err
	}
	next := &herdv1.DeploymentRecord{
		Deployment: &herdv1.Deployment{Spec: d, Uid: old.GetUid(), CreatedAt: old.GetCreatedAt(), Revision: old.GetRevision()},
		Templates:  cur.GetTemplates(),
	}
	if !bytes.Equal(oldT, newT) {
		next.Deployment.Revision++
		next.Templates = append(next.Templates, &herdv1.RevisionTemplate{Revision: next.Deployment.Revision, Template: d.GetTemplate(), CreatedAt: now})
		sort.SliceStable(next.Templates, func(i, j int) bool { return next.Templates[i].GetRevision() < next.Templates[j].GetRevision() })
		if n := len(next.Templates); n > KeepRevisions {
			next.Templates = next.Templates[n-KeepRevisions:]
		}
	}
	return proto.Clone(next).(*herdv1.DeploymentRecord), true, nil
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
