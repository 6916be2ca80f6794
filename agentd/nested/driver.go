// Package nested builds Kubernetes clusters whose control plane and
// workers are KubeVirt VirtualMachines on a host cluster ("Kubernetes in
// Kubernetes"), owned by one agentd.
//
// For each cluster agentd generates the PKI up front (agentd/nested/pki)
// and seals it with the node's KMS, creates one host namespace
// (<prefix>-<node>-<cluster>), the control-plane endpoint Service, one
// cloud-init Secret per VM (kubeadm configuration, the shared
// certificates, a bootstrap token and the CA hash) and the
// VirtualMachines, then waits — each wait bounded, never over SSH — for
// the VMIs, the nested API server's /readyz through the endpoint with the
// generated kubeconfig, and the nested Nodes.
//
// Creation is a saga: each step records in the cluster's record what it
// is about to create and what it created; a failure removes, in reverse
// order, what this attempt created (unless keep_on_failure), and the
// cluster's message names the failed step with the VM's status and recent
// events. Every host object carries herd's marker labels; the driver never
// changes or deletes a host object without them.
//
// The guest image (control_plane.image, workers.image) must boot with
// cloud-init (NoCloud) and carry kubeadm, kubelet, kubectl and a container
// runtime for kubernetes_version; if it has /etc/herd/cni.yaml, the first
// control plane applies it after `kubeadm init` with {{POD_CIDR}} replaced
// by pod_cidr (without a CNI the nested nodes never become Ready). The
// host cluster's Secrets hold each VM's cloud-init, which for control
// planes includes the cluster's CA keys (the guest needs them): restrict
// access to the host namespaces.
//
// No VM can boot on herd's test machines (no KVM). The tests run the
// driver against a real kube-apiserver as the host, with
// acctest.PlayVirt writing what KubeVirt's controllers would (VMIs Ready
// with IPs, load-balancer addresses, failure events); acctest.PlayKubeadm
// stands in for kubeadm in the first control-plane VM by starting a real
// etcd and kube-apiserver from the CAs in the VM's cloud-init Secret, on
// the endpoint's address, so /readyz is answered by a real API server
// running on agentd's certificates; acctest.PlayKubelet registers the
// Ready Nodes the kubelets would. Booting guests, kubeadm itself and the
// CNI are not exercised.
package nested

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Phases of a cluster.
const (
	PhaseCreating = "Creating"
	PhaseReady    = "Ready"
	PhaseFailed   = "Failed"
	PhaseScaling  = "Scaling"
	PhaseDeleting = "Deleting"
)

// The steps of a creation, in order.
const (
	StepPKI          = "pki"
	StepNamespace    = "namespace"
	StepEndpoint     = "endpoint"
	StepCloudInit    = "cloud-init"
	StepControlPlane = "control-plane"
	StepVMReady      = "vm-ready"
	StepAPIReady     = "api-ready"
	StepJoin         = "control-plane-join"
	StepWorkers      = "workers"
	StepNodesReady   = "nodes-ready"
	StepScale        = "scale-workers"
)

// Errors the server maps to gRPC codes.
var (
	ErrNotFound = errors.New("nested cluster not found")
	// ErrProtected: delete refused while deletion_protection is set.
	ErrProtected = errors.New("deletion_protection is set")
	// ErrImmutable: a change that cannot be made in place.
	ErrImmutable = errors.New("cannot change in place")
	// ErrBusy: the cluster is being deleted.
	ErrBusy = errors.New("nested cluster is being deleted")
	// ErrNotReady: no kubeconfig yet (the endpoint is not known yet).
	ErrNotReady = errors.New("no kubeconfig yet")
)

// Store keeps cluster records (agentd/store implements it).
type Store interface {
	PutNestedCluster(name string, value []byte) error
	GetNestedCluster(name string) ([]byte, error)
	ListNestedClusters(f func(name string, value []byte) error) error
	DeleteNestedCluster(name string) error
}

// Config configures a Driver.
type Config struct {
	// Node is this agentd's node name (marker label, namespace name).
	Node string
	Host *Host
	// Store keeps the records; KMS seals their key material.
	Store Store
	KMS   secrets.KMS
	// NamespacePrefix starts each cluster's host namespace (default herd).
	NamespacePrefix string
	// Forbidden are ranges no nested pod or service CIDR may overlap:
	// herd's own and the host cluster's.
	Forbidden []spec.NestedRange
	// NodeAddress is the host address NodePort endpoints use; empty: the
	// first host Node's ExternalIP or InternalIP.
	NodeAddress string
	// Poll is the period of every wait (default 2s).
	Poll   time.Duration
	Logger *slog.Logger
}

// Driver builds and removes nested clusters.
type Driver struct {
	cfg Config
	log *slog.Logger
	ctx context.Context
	end context.CancelFunc

	op       sync.Mutex // serializes Apply and Delete
	mu       sync.Mutex // guards clusters and every record
	clusters map[string]*entry
	wg       sync.WaitGroup
}

// entry is a cluster in memory: its record and its background job.
type entry struct {
	rec    *record
	cancel context.CancelFunc
	done   chan struct{}
}

// record is what the store keeps of a cluster.
type record struct {
	Spec      []byte    `json:"spec"` // herdv1.NestedClusterSpec, defaulted
	UID       string    `json:"uid"`
	CreatedAt time.Time `json:"created_at"`
	Attempt   int       `json:"attempt"`
	Phase     string    `json:"phase"`
	Step      string    `json:"step"`
	Message   string    `json:"message,omitempty"`
	Namespace string    `json:"namespace"`
	// Endpoint is host:port of the control-plane endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	CACert   string `json:"ca_cert,omitempty"`
	// Built: the control plane came up once; later failures are of
	// scaling and leave the cluster in place.
	Built bool        `json:"built,omitempty"`
	VMs   []vmRecord  `json:"vms,omitempty"`
	Saga  []sagaEntry `json:"saga,omitempty"`
	// Sealed is the sealed material (secrets.Sealed.Marshal).
	Sealed []byte `json:"sealed,omitempty"`
	// KEKLost: Sealed does not open (its key-encryption key was replaced
	// with --new-kek); the cluster is frozen, see kekloss.go.
	KEKLost *kekLost `json:"kek_lost,omitempty"`

	spec *herdv1.NestedClusterSpec
}

type vmRecord struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	Phase     string `json:"phase,omitempty"`
	Ready     bool   `json:"ready,omitempty"`
	IP        string `json:"ip,omitempty"`
	NodeReady bool   `json:"node_ready,omitempty"`
}

// sagaEntry is one host object an attempt is creating (Created false:
// the intent, written before the call) or created.
type sagaEntry struct {
	Attempt   int    `json:"attempt"`
	Step      string `json:"step"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Created   bool   `json:"created"`
}

// material is the sealed part of a record.
type material struct {
	PKI        pki.Files `json:"pki"`
	Kubeconfig []byte    `json:"kubeconfig,omitempty"`
	Token      string    `json:"token"`
}

// New returns a driver; Start loads the records.
func New(cfg Config) (*Driver, error) {
	if cfg.Host == nil || cfg.Store == nil || cfg.KMS == nil || cfg.Node == "" {
		return nil, errors.New("nested driver: node, host, store and KMS are required")
	}
	if cfg.NamespacePrefix == "" {
		cfg.NamespacePrefix = "herd"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{cfg: cfg, log: cfg.Logger, ctx: ctx, end: cancel, clusters: map[string]*entry{}}, nil
}

// Forbidden returns the ranges nested CIDRs may not overlap.
func (d *Driver) Forbidden() []spec.NestedRange { return d.cfg.Forbidden }

// Start loads the records. A creation that an agentd restart interrupted
// is not resumed: its waits may have outlived the objects' usefulness and
// half-made steps (a Secret written, its VM not) are cheaper to redo than
// to prove complete. It is marked Failed ("interrupted by an agentd
// restart") and compensated like any failure (unless keep_on_failure);
// applying again starts a fresh attempt. Interrupted scaling and deletion
// are idempotent and resume. A cluster whose sealed material no longer
// opens is frozen instead (see kekloss.go), and a frozen one whose
// material opens again gets back the state it had.
func (d *Driver) Start() error {
	var recs []*record
	err := d.cfg.Store.ListNestedClusters(func(name string, v []byte) error {
		r, err := decodeRecord(v)
		if err != nil {
			d.log.Error("nested cluster record unreadable; left alone", "cluster", name, "err", err)
			return nil
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("load nested clusters: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range recs {
		name := r.spec.GetName()
		e := &entry{rec: r}
		d.clusters[name] = e
		if d.checkKEKLocked(d.ctx, name, r) {
			continue // frozen: nothing to resume
		}
		switch r.Phase {
		case PhaseCreating:
			attempt, step, keep := r.Attempt, r.Step, r.spec.GetKeepOnFailure()
			d.startLocked(name, func(context.Context) {
				d.failWith(name, attempt, step, "step "+step+": interrupted by an agentd restart", keep)
			})
		case PhaseScaling:
			d.startLocked(name, func(ctx context.Context) { d.scaleJob(ctx, name) })
		case PhaseDeleting:
			d.startLocked(name, func(ctx context.Context) {
				if err := d.deleteAll(ctx, name); err != nil {
					d.log.Error("resume deletion of nested cluster", "cluster", name, "err", err)
				}
			})
		}
	}
	return nil
}

// Close stops background work (creations in progress are marked Failed
// at the next Start) and waits for it.
func (d *Driver) Close() {
	d.end()
	d.wg.Wait()
}

func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	r.spec = &herdv1.NestedClusterSpec{}
	if err := proto.Unmarshal(r.Spec, r.spec); err != nil {
		return nil, err
	}
	return &r, nil
}

// persistLocked writes a cluster's record; d.mu is held.
func (d *Driver) persistLocked(name string) error {
	e := d.clusters[name]
	if e == nil {
		return nil
	}
	b, err := proto.Marshal(e.rec.spec)
	if err != nil {
		return err
	}
	e.rec.Spec = b
	v, err := json.Marshal(e.rec)
	if err != nil {
		return err
	}
	if err := d.cfg.Store.PutNestedCluster(name, v); err != nil {
		d.log.Error("persist nested cluster", "cluster", name, "err", err)
		return err
	}
	return nil
}

// update changes a record under the lock and persists it.
func (d *Driver) update(name string, f func(r *record)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.clusters[name]
	if e == nil {
		return ErrNotFound
	}
	f(e.rec)
	return d.persistLocked(name)
}

// snapshot returns a deep enough copy of a record.
func (d *Driver) snapshot(name string) (*record, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.clusters[name]
	if e == nil {
		return nil, false
	}
	r := *e.rec
	r.spec = proto.Clone(e.rec.spec).(*herdv1.NestedClusterSpec)
	r.VMs = append([]vmRecord(nil), e.rec.VMs...)
	r.Saga = append([]sagaEntry(nil), e.rec.Saga...)
	return &r, true
}

// startLocked runs job in the background as the cluster's one job; d.mu
// is held and no job may be running.
func (d *Driver) startLocked(name string, job func(ctx context.Context)) {
	e := d.clusters[name]
	ctx, cancel := context.WithCancel(d.ctx)
	done := make(chan struct{})
	e.cancel, e.done = cancel, done
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(done)
		defer cancel()
		job(ctx)
	}()
}

// stopJob cancels the cluster's job and waits for it to end.
func (d *Driver) stopJob(name string) {
	d.mu.Lock()
	e := d.clusters[name]
	var cancel context.CancelFunc
	var done chan struct{}
	if e != nil {
		cancel, done = e.cancel, e.done
	}
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (d *Driver) sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.cfg.Poll):
		return nil
	}
}

func (d *Driver) aad(name, uid string) []byte { return aadFor(d.cfg.Node, name, uid) }

func (d *Driver) seal(ctx context.Context, name, uid string, m *material) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	s, err := secrets.Seal(ctx, d.cfg.KMS, b, d.aad(name, uid))
	if err != nil {
		return nil, err
	}
	return s.Marshal()
}

// RewrapKeys re-wraps the data key of every cluster's sealed material with
// the KMS's current key-encryption key, after a key rotation; it returns
// how many it re-wrapped. The material itself is not decrypted.
func (d *Driver) RewrapKeys(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for name, e := range d.clusters {
		if len(e.rec.Sealed) == 0 || e.rec.KEKLost != nil {
			continue // a frozen record's key is gone: keep it as it is
		}
		s, err := secrets.Unmarshal(e.rec.Sealed)
		if err != nil {
			return n, fmt.Errorf("re-wrap nested cluster %s: %w", name, err)
		}
		re, err := secrets.Rewrap(ctx, d.cfg.KMS, s)
		if err != nil {
			return n, fmt.Errorf("re-wrap nested cluster %s: %w", name, err)
		}
		b, err := re.Marshal()
		if err != nil {
			return n, fmt.Errorf("re-wrap nested cluster %s: %w", name, err)
		}
		e.rec.Sealed = b
		if err := d.persistLocked(name); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (d *Driver) open(ctx context.Context, r *record) (*material, error) {
	if len(r.Sealed) == 0 {
		return nil, ErrNotReady
	}
	return openSealed(ctx, d.cfg.KMS, r.Sealed, d.aad(r.spec.GetName(), r.UID))
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Apply creates a cluster or changes what may change in place. The
// creation (or scaling) runs in the background; the returned cluster is
// the state right after the call.
func (d *Driver) Apply(ctx context.Context, in *herdv1.NestedClusterSpec) (*herdv1.NestedCluster, bool, error) {
	if errs := spec.ValidateNestedCluster(in, d.cfg.Forbidden); len(errs) > 0 {
		return nil, false, errs
	}
	s := spec.DefaultNestedCluster(in)
	name := s.GetName()
	// One Apply or Delete at a time: each decides from the record, then
	// stops the cluster's job before it changes the record.
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	e := d.clusters[name]
	if e == nil {
		r := &record{
			UID: newUID(), CreatedAt: time.Now().UTC(), Attempt: 1,
			Phase: PhaseCreating, Step: StepPKI, Namespace: d.namespaceFor(name), spec: s,
		}
		d.clusters[name] = &entry{rec: r}
		if err := d.persistLocked(name); err != nil {
			delete(d.clusters, name)
			d.mu.Unlock()
			return nil, false, err
		}
		d.log.Info("nested cluster creation started", "cluster", name, "namespace", r.Namespace)
		d.startLocked(name, func(ctx context.Context) { d.createJob(ctx, name, 1) })
		d.mu.Unlock()
		return d.view(name), true, nil
	}
	r := e.rec
	if r.Phase == PhaseDeleting {
		d.mu.Unlock()
		return nil, false, fmt.Errorf("%s: %w", name, ErrBusy)
	}
	if fields := spec.NestedImmutableChanges(r.spec, s); len(fields) > 0 {
		d.mu.Unlock()
		return nil, false, fmt.Errorf("nested cluster %s: %s %w (replace the cluster)", name, strings.Join(fields, ", "), ErrImmutable)
	}
	changed := !proto.Equal(r.spec, s)
	scale := r.spec.GetWorkers().GetReplicas() != s.GetWorkers().GetReplicas()
	if r.KEKLost != nil {
		// Frozen: no retry (it would make a new CA) and no scaling (it
		// needs the PKI); other in-place fields (deletion_protection, so
		// that it can be deleted) still take effect.
		if scale {
			d.mu.Unlock()
			return nil, false, fmt.Errorf("nested cluster %s: cannot scale: %w", name, ErrKEKLost)
		}
		r.spec = s
		err := d.persistLocked(name)
		d.mu.Unlock()
		if err != nil {
			return nil, false, err
		}
		return d.view(name), changed, nil
	}
	retry := r.Phase == PhaseFailed && !r.Built
	rescale := (r.Phase == PhaseFailed && r.Built) || (scale && (r.Phase == PhaseReady || r.Phase == PhaseScaling))
	// In-place fields take effect at once (a running creation reads
	// workers.replicas again when it ends).
	r.spec = s
	err := d.persistLocked(name)
	d.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	if !retry && !rescale {
		return d.view(name), changed, nil
	}
	d.stopJob(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	r = d.clusters[name].rec
	r.Attempt++
	attempt := r.Attempt
	if retry {
		// A new attempt: clear what a kept failure left, then create.
		r.Phase, r.Step, r.Message, r.Endpoint, r.CACert, r.Sealed, r.VMs = PhaseCreating, StepPKI, "", "", "", nil, nil
		d.startLocked(name, func(ctx context.Context) {
			if err := d.deleteObjects(ctx, name, false); err != nil {
				d.fail(ctx, name, attempt, StepPKI, fmt.Errorf("remove what the failed attempt left: %w", err))
				return
			}
			d.createJob(ctx, name, attempt)
		})
	} else {
		r.Phase, r.Step, r.Message = PhaseScaling, StepScale, ""
		d.startLocked(name, func(ctx context.Context) { d.scaleJob(ctx, name) })
	}
	if err := d.persistLocked(name); err != nil {
		return nil, false, err
	}
	r2 := *r
	r2.spec = proto.Clone(r.spec).(*herdv1.NestedClusterSpec)
	r2.VMs = append([]vmRecord(nil), r.VMs...)
	return r2.pb(), true, nil
}

// view renders a cluster from its record (no host calls).
func (d *Driver) view(name string) *herdv1.NestedCluster {
	r, ok := d.snapshot(name)
	if !ok {
		return nil
	}
	return r.pb()
}

func (r *record) pb() *herdv1.NestedCluster {
	st := &herdv1.NestedClusterStatus{
		Phase: r.Phase, Step: r.Step, Message: r.Message,
		CaCertificate: r.CACert, HostNamespace: r.Namespace,
	}
	if r.Endpoint != "" {
		st.Endpoint = "https://" + r.Endpoint
	}
	for _, v := range r.VMs {
		st.Vms = append(st.Vms, &herdv1.NestedVM{Name: v.Name, Role: v.Role, Phase: v.Phase, Ready: v.Ready, Ip: v.IP, NodeReady: v.NodeReady})
	}
	return &herdv1.NestedCluster{Spec: r.spec, Status: st, Uid: r.UID, CreatedAt: timestamppb.New(r.CreatedAt)}
}

// Get returns a cluster with its VMs as the host reports them now (and,
// once Ready, its nested Nodes as the nested API server reports them),
// each look bounded by a few seconds.
func (d *Driver) Get(ctx context.Context, name string) (*herdv1.NestedCluster, error) {
	r, ok := d.snapshot(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if r.Phase == PhaseReady || r.Phase == PhaseFailed {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		d.refreshVMs(ctx, r)
	}
	return r.pb(), nil
}

// refreshVMs reads the cluster's VMs from the host into r (not stored).
func (d *Driver) refreshVMs(ctx context.Context, r *record) {
	objs, err := d.listCluster(ctx, r.Namespace, r.spec.GetName())
	if err != nil {
		return
	}
	known := map[string]vmRecord{}
	for _, v := range r.VMs {
		known[v.Name] = v
	}
	var vms []vmRecord
	for _, o := range objs {
		if o.Kind != KindVirtualMachine {
			continue
		}
		v := vmRecord{Name: o.Name, Role: o.Labels[LabelRole], Phase: "Unknown"}
		if vm, vmi, err := d.vmState(ctx, r.Namespace, o.Name); err == nil {
			v.Phase = string(vm.Status.PrintableStatus)
			v.Ready, v.IP = vmiReadyIP(vmi)
		}
		v.NodeReady = known[o.Name].NodeReady
		vms = append(vms, v)
	}
	for _, v := range r.VMs {
		if !containsVM(vms, v.Name) {
			v.Phase, v.Ready, v.IP, v.NodeReady = "Missing", false, "", false
			vms = append(vms, v)
		}
	}
	if r.Phase == PhaseReady {
		if m, err := d.open(ctx, r); err == nil && len(m.Kubeconfig) > 0 {
			if nodes, err := guestNodesReady(ctx, m.Kubeconfig); err == nil {
				for i := range vms {
					vms[i].NodeReady = nodes[vms[i].Name]
				}
			}
		}
	}
	sortVMs(vms)
	r.VMs = vms
}

func containsVM(vms []vmRecord, name string) bool {
	for _, v := range vms {
		if v.Name == name {
			return true
		}
	}
	return false
}

// sortVMs orders control planes before workers, then by index.
func sortVMs(vms []vmRecord) {
	// A name without a numeric suffix sorts as index 0.
	idx := func(n string) int {
		if k := strings.LastIndexByte(n, '-'); k >= 0 {
			if i, err := strconv.Atoi(n[k+1:]); err == nil {
				return i
			}
		}
		return 0
	}
	sort.SliceStable(vms, func(i, j int) bool {
		if vms[i].Role != vms[j].Role {
			return vms[i].Role == RoleControlPlane
		}
		return idx(vms[i].Name) < idx(vms[j].Name)
	})
}

// List returns every cluster of this node, by name (from the records).
func (d *Driver) List(ctx context.Context) ([]*herdv1.NestedCluster, error) {
	d.mu.Lock()
	names := make([]string, 0, len(d.clusters))
	for n := range d.clusters {
		names = append(names, n)
	}
	d.mu.Unlock()
	sort.Strings(names)
	var out []*herdv1.NestedCluster
	for _, n := range names {
		if c := d.view(n); c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// Kubeconfig returns the cluster's admin kubeconfig.
func (d *Driver) Kubeconfig(ctx context.Context, name string) ([]byte, error) {
	r, ok := d.snapshot(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if r.KEKLost != nil {
		return nil, fmt.Errorf("nested cluster %s: %w", name, ErrKEKLost)
	}
	m, err := d.open(ctx, r)
	if errors.Is(err, ErrNotReady) || (err == nil && len(m.Kubeconfig) == 0) {
		return nil, fmt.Errorf("nested cluster %s (step %s): %w: its endpoint is not known yet", name, r.Step, ErrNotReady)
	}
	if err != nil {
		return nil, fmt.Errorf("open nested cluster %s's key material: %w", name, err)
	}
	return m.Kubeconfig, nil
}

// Delete removes every host object of the cluster that carries the marker
// and then its record. Refused while deletion_protection is set. A
// namespace that still holds foreign objects stays (and is logged). A uid
// other than "" must be the cluster's: another incarnation of the name is
// kept and spec.ErrOtherIncarnation returned.
func (d *Driver) Delete(ctx context.Context, name, uid string) (bool, error) {
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	e := d.clusters[name]
	if e == nil {
		d.mu.Unlock()
		return false, nil
	}
	if uid != "" && e.rec.UID != uid {
		d.mu.Unlock()
		return false, spec.OtherIncarnation("nested cluster "+name, e.rec.UID, uid)
	}
	if e.rec.spec.GetDeletionProtection() {
		d.mu.Unlock()
		return true, fmt.Errorf("nested cluster %s: %w: set deletion_protection = false first", name, ErrProtected)
	}
	e.rec.Phase, e.rec.Message = PhaseDeleting, ""
	_ = d.persistLocked(name)
	d.mu.Unlock()
	d.stopJob(name)
	// The deletion outlives a client that gives up: it is idempotent and
	// resumes at the next Start, but it should not stop half-way.
	dctx, cancel := context.WithTimeout(d.ctx, 5*time.Minute)
	defer cancel()
	if err := d.deleteAll(dctx, name); err != nil {
		return true, err
	}
	return true, nil
}

// deleteAll removes the cluster's host objects, then the record.
func (d *Driver) deleteAll(ctx context.Context, name string) error {
	if err := d.deleteObjects(ctx, name, true); err != nil {
		_ = d.update(name, func(r *record) { r.Message = "deletion incomplete: " + err.Error() })
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.clusters, name)
	if err := d.cfg.Store.DeleteNestedCluster(name); err != nil {
		return err
	}
	d.log.Info("nested cluster deleted", "cluster", name)
	return nil
}

// deleteObjects deletes every marked object of the cluster in its
// namespace (VMs first), and with namespace also the namespace when it is
// marked and holds nothing foreign.
func (d *Driver) deleteObjects(ctx context.Context, name string, namespace bool) error {
	r, ok := d.snapshot(name)
	if !ok {
		return nil
	}
	ns := r.Namespace
	// Delete, then list again until nothing marked is left: a controller
	// may recreate a VMI between its VM's deletion and ours (KubeVirt's
	// garbage collection removes it a moment later). Terminating objects
	// count as gone. Bounded: a minute.
	deadline := time.Now().Add(time.Minute)
	order := map[string]int{KindVirtualMachine: 0, "VirtualMachineInstance": 1, KindDataVolume: 2, KindSecret: 3, KindService: 4}
	for {
		objs, err := d.listCluster(ctx, ns, name)
		if err != nil {
			return err
		}
		var left []string
		for _, o := range objs {
			if !o.Terminating {
				left = append(left, o.Kind+" "+o.Name)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host objects still present after a minute: %s", strings.Join(left, ", "))
		}
		sort.SliceStable(objs, func(i, j int) bool { return order[objs[i].Kind] < order[objs[j].Kind] })
		var errs []error
		for _, o := range objs {
			if o.Terminating {
				continue
			}
			if _, err := d.deleteMarked(ctx, name, o.Kind, ns, o.Name); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if err := d.sleep(ctx); err != nil {
			return err
		}
	}
	if !namespace {
		return nil
	}
	return d.deleteNamespace(ctx, name, ns)
}

// deleteNamespace deletes the cluster's namespace if it is marked as the
// cluster's and holds no foreign objects.
func (d *Driver) deleteNamespace(ctx context.Context, cluster, ns string) error {
	foreign, err := d.foreignObjects(ctx, ns, cluster)
	if err != nil {
		return fmt.Errorf("look for foreign objects in namespace %s: %w", ns, err)
	}
	if len(foreign) > 0 {
		d.log.Warn("host namespace kept: it holds objects without herd's marker", "namespace", ns, "cluster", cluster, "objects", strings.Join(foreign, ", "))
		return nil
	}
	_, err = d.deleteMarked(ctx, cluster, KindNamespace, "", ns)
	return err
}
