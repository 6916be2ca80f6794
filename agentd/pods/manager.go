package pods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/node"
	"github.com/herd-project/terraform-provider-herd/agentd/pods/restarts"
	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Defaults for Config.
const (
	DefaultLogMaxBytes      = 10 << 20
	DefaultBackoffBase      = 10 * time.Second
	DefaultBackoffMax       = 5 * time.Minute
	DefaultGCInterval       = time.Minute
	DefaultLogCheckInterval = time.Second
	// killTimeout bounds the wait for a SIGKILLed task.
	killTimeout = 30 * time.Second
)

// Container states and reasons, as in Kubernetes.
const (
	StateWaiting    = "waiting"
	StateRunning    = "running"
	StateTerminated = "terminated"

	ReasonContainerCreating    = "ContainerCreating"
	ReasonErrImagePull         = "ErrImagePull"
	ReasonImagePullBackOff     = "ImagePullBackOff"
	ReasonCrashLoopBackOff     = "CrashLoopBackOff"
	ReasonCreateContainerError = "CreateContainerError"
	ReasonNetworkSetupError    = "NetworkSetupError"
	ReasonRunContainerError    = "RunContainerError"
	ReasonCompleted            = "Completed"
	ReasonError                = "Error"
	ReasonOOMKilled            = "OOMKilled"
	ReasonContainerLost        = "ContainerLost"
	ReasonStartError           = "StartError"

	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
)

// Config configures a Manager.
type Config struct {
	Runtime *runtime.Runtime
	Store   *store.Store
	// LogDir holds the per-container log files:
	// LogDir/<pod>_<uid>/<container>.log (and .log.1 after rotation).
	LogDir string
	// LogMaxBytes caps the disk space of one container's log (default
	// 10 MiB): the newest bytes are kept. See logs.go for the approach.
	LogMaxBytes int64
	// BackoffBase and BackoffMax bound the restart back-off (defaults 10 s
	// and 5 min, like the kubelet); each delay gets a jitter of under 10 %
	// on top (restarts.Jitter).
	BackoffBase, BackoffMax time.Duration
	// GCInterval is how often garbage collection runs (default 1 min).
	GCInterval time.Duration
	// LogCheckInterval is how often log sizes are checked (default 1 s).
	LogCheckInterval time.Duration
	Logger           *slog.Logger
	// Network gives each pod a network namespace and an IP; nil: every
	// container gets a loopback-only namespace of its own.
	Network Network
	// Changed, if set, is called with a pod's name after its visible state
	// changed (created, status changed, deleted). It must not block: the
	// endpoint publisher reads the pod back with Get.
	Changed func(name string)
	// ResolvConf, if set, is mounted at /etc/resolv.conf in the containers
	// of pods that have a pod network (service DNS on the pod gateway).
	ResolvConf string
	// Secrets gives pods the secrets they use (secrets.go); nil: pods that
	// use a secret are refused (ErrSecretUnavailable).
	Secrets SecretSource
	// SecretsDir holds the tmpfs of each pod incarnation that mounts
	// secrets, SecretsDir/<pod>_<uid> (see secretfs.go). Default: "secrets"
	// next to LogDir (in agentd's state dir); only empty mount points are
	// on that disk, never a secret.
	SecretsDir string
	// SecretRestartTimeout bounds RestartForSecret's wait for each pod
	// (default DefaultSecretRestartTimeout).
	SecretRestartTimeout time.Duration
	// NodeName names the node in admission refusals.
	NodeName string
	// Allocatable is what the pods of the node may request in total
	// (capacity less what is reserved for the system); Apply refuses a
	// pod that does not fit (admission.go). Nil: no admission check.
	Allocatable *capacity.Resources
	// MaxPods is the most pods the node holds, terminating ones included;
	// Apply refuses a new pod past it (ErrTooManyPods). 0: no limit.
	MaxPods int
	// MemoryCapacity is the node's memory in bytes, the base of a
	// Burstable container's oom_score_adj (default: the machine's).
	MemoryCapacity int64
	// OOMScoreAdjFloor is the lowest oom_score_adj containers may get;
	// nil: what node.OOMScoreAdjFloor reports.
	OOMScoreAdjFloor *int
	// Volumes gives pods the node's persistent volumes (volumes.go); nil:
	// pods that mount one are refused (ErrVolumeUnavailable).
	Volumes VolumeSource
	// Images makes the filesystems of size-limited disk empty_dirs; nil:
	// such empty_dirs are refused when the pod starts.
	Images ScratchImages
	// ScratchDir holds each pod incarnation's empty_dirs and config files,
	// ScratchDir/<pod>_<uid>. Default: "scratch" next to LogDir.
	ScratchDir string
	// Drain, if set, takes a deleted pod out of every member's service
	// rules before its containers get SIGTERM (drain.go); nil: no drain
	// (a node without a cluster).
	Drain DrainFunc
}

// Network is the pod network (agentd/network/podnet). Setup is idempotent:
// for a pod that has its network it returns the same namespace and IP.
type Network interface {
	Setup(ctx context.Context, podUID, podName string) (netnsPath string, ip netip.Addr, err error)
	Teardown(ctx context.Context, podUID string) error
	// List returns the uids of pods that have a network, for GC.
	List() ([]string, error)
}

// Manager runs the pods of one node. Create it with New, then Start it.
type Manager struct {
	cfg  Config
	rt   *runtime.Runtime
	st   *store.Store
	log  *slog.Logger
	logs logFiles
	// backoff is the restart and retry schedule of every container.
	backoff *restarts.Backoff

	// applyMu serializes the creation of pods (and garbage collection's
	// removals), so that no new pod incarnation appears mid-check.
	applyMu sync.Mutex
	// restartMu serializes RestartForSecret: one pod restarts at a time.
	restartMu sync.Mutex

	// gcs is garbage collection's state: tombstones, reports, re-adoption.
	gcs gcState

	mu       sync.Mutex
	pods     map[string]*podEntry
	unusable map[string]bool // stored records Start could not load
	started  bool
	closed   bool

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// podEntry is the manager's record of one pod.
type podEntry struct {
	name string
	uid  string
	spec *herdv1.PodSpec // defaulted; immutable
	ids  []string        // container IDs, by container index
	// secrets is the tmpfs of the pod's secret files; nil without
	// secret mounts.
	secrets *secretVolume
	// volumes are the persistent volumes the pod mounts, by name: true
	// when a container writes it.
	volumes map[string]bool
	// restarts carries RestartForSecret's requests to the worker.
	restarts chan restartRequest
	// configs carries config file updates to the worker (config.go).
	configs chan configRequest
	// storageMu serializes the setup of the scratch directory, empty_dirs
	// and config files: the pod's containers start in parallel.
	storageMu sync.Mutex

	// Guarded by Manager.mu.
	pod         *herdv1.Pod   // last published state; replaced, never mutated
	changed     chan struct{} // closed and replaced on every publish
	hidden      bool          // being created by Apply: not visible yet
	deleting    *deletion     // the deletion in progress, if any
	terminating bool          // a Delete began: the worker is stopped for good
	gone        bool          // removed from the manager

	cancel context.CancelFunc // stops the worker
	done   chan struct{}      // closed when the worker has returned
	// recorded is closed once the pod's record is in the store; the
	// worker persists status only after that.
	recorded chan struct{}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

type deletion struct {
	done  chan struct{}
	err   error
	drain DrainResult // set before done is closed
}

// New checks cfg and returns a Manager. Call Start before anything else.
func New(cfg Config) (*Manager, error) {
	if cfg.Runtime == nil || cfg.Store == nil {
		return nil, fmt.Errorf("pods: Runtime and Store are required")
	}
	if cfg.LogDir == "" {
		return nil, fmt.Errorf("pods: LogDir is required")
	}
	dir, err := filepath.Abs(cfg.LogDir)
	if err != nil {
		return nil, fmt.Errorf("pods: log dir: %w", err)
	}
	cfg.LogDir = dir
	if cfg.SecretsDir == "" {
		cfg.SecretsDir = filepath.Join(filepath.Dir(dir), "secrets")
	}
	if cfg.SecretsDir, err = filepath.Abs(cfg.SecretsDir); err != nil {
		return nil, fmt.Errorf("pods: secrets dir: %w", err)
	}
	if cfg.ScratchDir == "" {
		cfg.ScratchDir = filepath.Join(filepath.Dir(dir), "scratch")
	}
	if cfg.ScratchDir, err = filepath.Abs(cfg.ScratchDir); err != nil {
		return nil, fmt.Errorf("pods: scratch dir: %w", err)
	}
	if cfg.SecretRestartTimeout <= 0 {
		cfg.SecretRestartTimeout = DefaultSecretRestartTimeout
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = cfg.BackoffBase
	}
	if cfg.GCInterval <= 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	if cfg.LogCheckInterval <= 0 {
		cfg.LogCheckInterval = DefaultLogCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MemoryCapacity <= 0 {
		c, err := node.Capacity()
		if err != nil {
			return nil, fmt.Errorf("pods: %w", err)
		}
		cfg.MemoryCapacity = c.GetMemoryBytes()
	}
	if cfg.OOMScoreAdjFloor == nil {
		f, err := node.OOMScoreAdjFloor()
		if err != nil {
			return nil, fmt.Errorf("pods: %w", err)
		}
		cfg.OOMScoreAdjFloor = &f
		if f > -1000 {
			cfg.Logger.Warn("agentd cannot lower oom_score_adj (no CAP_SYS_RESOURCE): containers get at least its own value", "oom_score_adj", f)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:      cfg,
		rt:       cfg.Runtime,
		st:       cfg.Store,
		log:      cfg.Logger.With("component", "pods"),
		backoff:  &restarts.Backoff{Base: cfg.BackoffBase, Max: cfg.BackoffMax},
		pods:     map[string]*podEntry{},
		unusable: map[string]bool{},
		ctx:      ctx,
		cancel:   cancel,
	}, nil
}

// Start loads the desired state from the store and supervises every pod:
// running containers are re-adopted (same process, not restarted),
// containers that exited while agentd was down are handled by their
// restart policy, missing ones are created. It also starts periodic garbage
// collection and log size checks. Start returns once every pod has a
// worker; adoption itself happens in the workers.
func (m *Manager) Start(ctx context.Context) error {
	if err := os.MkdirAll(m.cfg.LogDir, 0o700); err != nil {
		return fmt.Errorf("pods: %w", err)
	}
	pods, err := m.st.ListPods()
	if err != nil {
		return fmt.Errorf("pods: load desired state: %w", err)
	}
	pods = append(pods, m.recoverPods(ctx, pods)...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrNotReady
	}
	if m.started {
		return fmt.Errorf("pods: manager already started")
	}
	for _, pod := range pods {
		e, err := m.newEntry(pod)
		if err != nil {
			// Leave it, and everything labeled with its name, alone.
			m.log.Error("skipping unusable pod record", "pod", pod.GetSpec().GetName(), "err", err)
			m.unusable[pod.GetSpec().GetName()] = true
			continue
		}
		m.pods[e.name] = e
		m.startWorker(e, true)
	}
	m.started = true
	m.wg.Add(2)
	go m.gcLoop()
	go m.logLoop()
	m.log.Info("pod manager started", "pods", len(m.pods))
	return nil
}

// Close stops supervising: workers, garbage collection and log checks
// stop; containers keep running (and logging), to be re-adopted by the
// next Start. The runtime and store are the caller's to close.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// newEntry builds the entry of a stored (or new) pod. Stored specs are
// not validated again: a newer agentd with stricter rules must not drop
// (and garbage-collect) pods an older one accepted.
func (m *Manager) newEntry(pod *herdv1.Pod) (*podEntry, error) {
	s := pod.GetSpec()
	if s.GetName() == "" || pod.GetUid() == "" || len(s.GetContainers()) == 0 {
		return nil, fmt.Errorf("incomplete pod record")
	}
	for _, c := range s.GetContainers() {
		if c.GetName() == "" {
			return nil, fmt.Errorf("incomplete pod record: a container has no name")
		}
	}
	e := &podEntry{
		name:     s.GetName(),
		uid:      pod.GetUid(),
		spec:     s,
		pod:      pod,
		changed:  make(chan struct{}),
		recorded: closedChan,
		restarts: make(chan restartRequest),
		configs:  make(chan configRequest),
	}
	for _, c := range s.GetContainers() {
		e.ids = append(e.ids, runtime.ContainerID(e.name, c.GetName()))
	}
	e.volumes = spec.PodVolumes(s)
	m.setQoS(s, pod.Status)
	if hasSecretMounts(s) {
		e.secrets = newSecretVolume(m.secretDir(e.name, e.uid), e.name+"_"+e.uid)
		e.secrets.log = m.log
	}
	return e, nil
}

// startWorker starts e's supervising goroutine. Callers hold m.mu.
func (m *Manager) startWorker(e *podEntry, adopt bool) {
	ctx, cancel := context.WithCancel(m.ctx)
	e.cancel = cancel
	e.done = make(chan struct{})
	w := newWorker(m, e)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run(ctx, adopt)
	}()
}

// Apply creates the pod described by s, or returns the existing pod if one
// with the same name and the same (defaulted) spec exists (created=false,
// nothing changes). A pod with the same name and another spec is refused
// with ErrConflict; a pod whose containers would have to replace objects
// without the safety marker, with ErrForeign.
//
// Apply returns once the desired state is stored (phase Pending); the
// containers are pulled, created and started by the pod's worker. To keep
// the start fast, the worker begins while Apply checks for foreign objects
// and writes the record: if either fails, the worker is stopped and what
// it created is removed before Apply returns the error. (Should agentd die
// in the millisecond before the record is durable, the next start
// re-adopts the pod from the copy of its record on its containers.)
func (m *Manager) Apply(ctx context.Context, s *herdv1.PodSpec) (*herdv1.Pod, bool, error) {
	if errs := spec.ValidatePod(s); len(errs) > 0 {
		return nil, false, errs
	}
	d := spec.Defaulted(s)
	hash := spec.Hash(d)
	name := d.GetName()
	if pod, done, err := m.existing(name, spec.PodNamespace(d), hash, d); done {
		var u *configUpdate
		if errors.As(err, &u) {
			pod, err = m.updateConfig(ctx, u.e, d, hash)
		}
		return pod, false, err
	}
	// Before anything is created: a pod whose secrets this node cannot
	// give it is refused, and nothing is left behind.
	if err := m.checkSecrets(ctx, d); err != nil {
		return nil, false, err
	}

	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if pod, done, err := m.existing(name, spec.PodNamespace(d), hash, d); done {
		var u *configUpdate
		if errors.As(err, &u) {
			// Changed since the first look: the caller applies again.
			err = newError(ErrConflict, "pod %s changed while it was applied; apply again", name)
		}
		return pod, false, err
	}
	ids := make([]string, len(d.GetContainers()))
	for i, c := range d.GetContainers() {
		ids[i] = runtime.ContainerID(name, c.GetName())
	}
	if err := m.checkIDClash(name, d, ids); err != nil {
		return nil, false, err
	}
	if err := m.admitCount(name); err != nil {
		return nil, false, err
	}
	if err := m.admit(d); err != nil {
		return nil, false, err
	}
	releaseVolumes, err := m.checkVolumes(ctx, d)
	if err != nil {
		return nil, false, err
	}
	defer releaseVolumes()
	pod := &herdv1.Pod{
		Spec:      d,
		Uid:       newUID(),
		SpecHash:  hash,
		CreatedAt: timestamppb.Now(),
		Status:    initialStatus(d, ids),
	}
	e, err := m.newEntry(pod)
	if err != nil {
		return nil, false, err
	}
	e.hidden = true
	e.recorded = make(chan struct{})
	m.mu.Lock()
	if m.closed || !m.started {
		m.mu.Unlock()
		return nil, false, ErrNotReady
	}
	m.pods[name] = e
	m.startWorker(e, false)
	m.mu.Unlock()

	err = m.checkForeign(ctx, d, ids)
	if err == nil {
		if err = m.st.PutPod(pod); err != nil {
			err = fmt.Errorf("pod %s: record desired state: %w", name, err)
		}
	}
	if err != nil {
		m.rollback(e)
		return nil, false, err
	}
	close(e.recorded)
	m.mu.Lock()
	e.hidden = false
	latest := proto.Clone(e.pod).(*herdv1.Pod)
	m.mu.Unlock()
	m.notify(name)
	m.log.Info("pod created", "pod", name, "uid", pod.Uid)
	return latest, true, nil
}

// checkForeign refuses a pod if an object without the marker sits where
// one of its containers or snapshots would go.
func (m *Manager) checkForeign(ctx context.Context, d *herdv1.PodSpec, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.rt.CheckAvailable(ctx, ids[i]); err != nil {
				errs[i] = fmt.Errorf("pod %s: container %s: %w", d.GetName(), d.GetContainers()[i].GetName(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rollback undoes a failed Apply: it stops the worker and removes what it
// created (never anything foreign).
func (m *Manager) rollback(e *podEntry) {
	e.cancel()
	<-e.done
	m.tombstone(e.name, e.uid)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), killTimeout)
	defer cancel()
	for _, id := range e.ids {
		if err := m.rt.RemoveContainer(ctx, id); err != nil && !errors.Is(err, runtime.ErrForeign) {
			m.log.Warn("roll back: remove container", "container", id, "err", err)
		}
	}
	if err := m.removeLogs(e); err != nil {
		m.log.Warn("roll back: remove logs", "pod", e.name, "err", err)
	}
	if e.secrets != nil {
		if err := e.secrets.remove(); err != nil {
			m.log.Warn("roll back: remove secret files", "pod", e.name, "err", err)
		}
	}
	if needsScratch(e.spec) {
		if err := m.removeScratch(m.ctx, m.scratchDir(e.name, e.uid), e.name+"_"+e.uid); err != nil {
			m.log.Warn("roll back: remove empty_dirs and config files", "pod", e.name, "err", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pods[e.name] == e {
		delete(m.pods, e.name)
	}
	e.gone = true
	close(e.changed)
}

// existing handles Apply of a name that is taken: done is false when the
// name is free.
func (m *Manager) existing(name, ns, hash string, d *herdv1.PodSpec) (*herdv1.Pod, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.started {
		return nil, true, ErrNotReady
	}
	e := m.pods[name]
	switch {
	case e == nil || e.hidden:
		// A hidden entry is another Apply in progress: the caller waits
		// for it on applyMu and looks again.
		return nil, false, nil
	case spec.PodNamespace(e.spec) != ns:
		// Names are unique on the node: the other namespace's pod is
		// neither replaced nor described.
		return nil, true, newError(ErrConflict, "pod name %s is taken on this node by a pod of another namespace; choose another name", name)
	case e.terminating:
		return nil, true, newError(ErrConflict, "pod %s is being deleted; apply it again once the deletion finished", name)
	case e.pod.GetSpecHash() != hash && spec.ConfigOnlyChange(e.pod.GetSpec(), d):
		return nil, true, &configUpdate{e: e}
	case e.pod.GetSpecHash() != hash:
		return nil, true, newError(ErrConflict, "pod %s exists with a different spec; delete it first", name)
	}
	return proto.Clone(e.pod).(*herdv1.Pod), true, nil
}

// checkIDClash refuses a pod whose container IDs another pod uses
// (pod "a-b" container "c" and pod "a" container "b-c" are both
// herd-a-b-c).
func (m *Manager) checkIDClash(name string, d *herdv1.PodSpec, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, other := range m.pods {
		for j, oid := range other.ids {
			for i, id := range ids {
				if id == oid {
					return newError(ErrConflict, "pod %s: container %s would get the containerd ID %s, which container %s of pod %s has; rename one of them",
						name, d.GetContainers()[i].GetName(), id, other.spec.GetContainers()[j].GetName(), other.name)
				}
			}
		}
	}
	return nil
}

func initialStatus(d *herdv1.PodSpec, ids []string) *herdv1.PodStatus {
	st := &herdv1.PodStatus{Phase: PhasePending}
	for i, c := range d.GetContainers() {
		st.Containers = append(st.Containers, &herdv1.ContainerStatus{
			Name:        c.GetName(),
			State:       StateWaiting,
			Reason:      ReasonContainerCreating,
			ContainerId: ids[i],
		})
	}
	return st
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Get returns the pod's spec and current status, or ErrNotFound.
func (m *Manager) Get(_ context.Context, name string) (*herdv1.Pod, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return nil, ErrNotReady
	}
	e := m.pods[name]
	if e == nil || e.hidden {
		return nil, newError(ErrNotFound, "pod %s not found", name)
	}
	return proto.Clone(e.pod).(*herdv1.Pod), nil
}

// List returns the pods whose labels include every entry of selector,
// sorted by name.
func (m *Manager) List(_ context.Context, selector map[string]string) ([]*herdv1.Pod, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return nil, ErrNotReady
	}
	out := []*herdv1.Pod{}
	for _, e := range m.pods {
		if !e.hidden && matches(e.spec.GetLabels(), selector) {
			out = append(out, proto.Clone(e.pod).(*herdv1.Pod))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetSpec().GetName() < out[j].GetSpec().GetName() })
	return out, nil
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// WaitFor blocks until cond holds for the named pod (checked on every
// status change) and returns the pod, or fails when ctx ends or the pod
// is gone.
func (m *Manager) WaitFor(ctx context.Context, name string, cond func(*herdv1.Pod) bool) (*herdv1.Pod, error) {
	for {
		m.mu.Lock()
		e := m.pods[name]
		if e == nil || e.hidden {
			m.mu.Unlock()
			return nil, newError(ErrNotFound, "pod %s not found", name)
		}
		pod, changed := e.pod, e.changed
		m.mu.Unlock()
		if cond(pod) {
			return proto.Clone(pod).(*herdv1.Pod), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return proto.Clone(pod).(*herdv1.Pod), fmt.Errorf("pod %s: %w (phase %s)", name, ctx.Err(), pod.GetStatus().GetPhase())
		}
	}
}

// publish makes pod the visible state of e and wakes waiters.
func (m *Manager) publish(e *podEntry, pod *herdv1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.gone {
		return
	}
	e.pod = pod
	close(e.changed)
	e.changed = make(chan struct{})
	m.notify(e.name)
}

func (m *Manager) notify(name string) {
	if m.cfg.Changed != nil {
		m.cfg.Changed(name)
	}
}

// DeleteWith drains the pod (see DeleteOptions), then stops its containers
// — SIGTERM, then SIGKILL once the grace period (the spec's
// termination_grace_period_seconds, or opts.Grace when not nil) has passed
// — and removes its tasks, containers, snapshots, log files and record.
// Deleting a missing pod returns Existed=false. The deletion runs to
// completion even when ctx ends first; a retry joins the deletion in
// progress (its own options are ignored) and reports that deletion's drain
// result, or none when ctx ends first. If an object at one of the pod's
// container IDs lacks the safety marker, it is left alone, the pod record
// is kept and the error wraps ErrForeign.
func (m *Manager) DeleteWith(ctx context.Context, name string, opts DeleteOptions) (DeleteResult, error) {
	grace := opts.Grace
	m.mu.Lock()
	if !m.started || m.closed {
		m.mu.Unlock()
		return DeleteResult{}, ErrNotReady
	}
	e := m.pods[name]
	if e == nil || e.hidden {
		m.mu.Unlock()
		return DeleteResult{}, nil
	}
	if opts.UID != "" && opts.UID != e.uid {
		m.mu.Unlock()
		return DeleteResult{}, spec.OtherIncarnation("pod "+name, e.uid, opts.UID)
	}
	d := e.deleting
	if d == nil {
		d = &deletion{done: make(chan struct{})}
		e.deleting = d
		e.terminating = true
		g := time.Duration(e.spec.GetTerminationGracePeriodSeconds()) * time.Second
		if grace != nil {
			g = max(*grace, 0)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.runDelete(e, d, g, opts)
		}()
	}
	m.mu.Unlock()
	select {
	case <-d.done:
		return DeleteResult{Existed: true, DrainResult: d.drain}, d.err
	case <-ctx.Done():
		return DeleteResult{Existed: true}, ctx.Err()
	}
}

func (m *Manager) runDelete(e *podEntry, d *deletion, grace time.Duration, opts DeleteOptions) {
	defer close(d.done)
	log := m.log.With("pod", e.name, "uid", e.uid)
	log.Info("deleting pod", "grace", grace)
	// The worker goes first, so that nothing restarts or records the pod.
	e.cancel()
	<-e.done
	m.mu.Lock()
	if !e.gone {
		p := proto.Clone(e.pod).(*herdv1.Pod)
		p.Status.Message = "terminating"
		p.Status.Terminating = true
		// A terminating pod is no endpoint any more.
		p.Status.Ready = false
		p.Status.ReadySince = nil
		for _, cs := range p.Status.Containers {
			cs.Ready = false
		}
		e.pod = p
		close(e.changed)
		e.changed = make(chan struct{})
	}
	m.mu.Unlock()
	m.notify(e.name)
	d.drain = m.drain(e, opts, log)

	ctx := m.ctx
	m.tombstone(e.name, e.uid)
	err := m.stopContainers(ctx, e, grace, log)
	if err == nil && e.secrets != nil {
		if err = e.secrets.remove(); err != nil {
			err = fmt.Errorf("remove secret files: %w", err)
		}
	}
	if err == nil && needsScratch(e.spec) {
		if err = m.removeScratch(ctx, m.scratchDir(e.name, e.uid), e.name+"_"+e.uid); err != nil {
			err = fmt.Errorf("remove empty_dirs and config files: %w", err)
		}
	}
	if err == nil && m.cfg.Network != nil {
		if err = m.cfg.Network.Teardown(ctx, e.uid); err != nil {
			err = fmt.Errorf("tear down pod network: %w", err)
		}
	}
	if err == nil {
		err = m.removeLogs(e)
	}
	if err == nil {
		err = m.st.DeletePod(e.name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		d.err = fmt.Errorf("delete pod %s: %w", e.name, err)
		// A retry starts over; the worker stays stopped.
		e.deleting = nil
		log.Error("delete failed", "err", err)
		return
	}
	if m.pods[e.name] == e {
		delete(m.pods, e.name)
	}
	e.gone = true
	close(e.changed)
	m.notify(e.name)
	log.Info("pod deleted")
}

// stopContainers SIGTERMs the pod's tasks, SIGKILLs what still runs after
// grace, and removes tasks, containers and snapshots. Objects without the
// marker are skipped and reported.
func (m *Manager) stopContainers(ctx context.Context, e *podEntry, grace time.Duration, log *slog.Logger) error {
	var errs []error
	type running struct {
		id     string
		task   *runtime.Task
		exited <-chan runtime.Exit
	}
	var tasks []running
	var owned []string
	for _, id := range e.ids {
		c, err := m.rt.LoadContainer(ctx, id)
		switch {
		case errors.Is(err, runtime.ErrNotFound):
			owned = append(owned, id) // a leftover snapshot may remain
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		owned = append(owned, id)
		t, err := c.Task(ctx)
		if err != nil {
			if !errors.Is(err, runtime.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		exited, err := t.Wait(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := t.Kill(ctx, syscall.SIGTERM); err != nil {
			errs = append(errs, err)
		}
		tasks = append(tasks, running{id, t, exited})
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for _, r := range tasks {
		select {
		case <-r.exited:
			continue
		case <-deadline.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		// Grace period over: SIGKILL this one and every later one.
		for _, k := range tasks {
			select {
			case <-k.exited:
				continue
			default:
			}
			log.Info("grace period over, killing", "container", k.id)
			if err := k.task.Kill(ctx, syscall.SIGKILL); err != nil {
				errs = append(errs, err)
			}
		}
		break
	}
	for _, r := range tasks {
		select {
		case <-r.exited:
		case <-time.After(killTimeout):
			errs = append(errs, fmt.Errorf("container %s did not exit after SIGKILL", r.id))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, id := range owned {
		if err := m.rt.RemoveContainer(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// podLogDir is where the pod incarnation's container logs live.
func (m *Manager) podLogDir(name, uid string) string {
	return filepath.Join(m.cfg.LogDir, name+"_"+uid)
}

func (m *Manager) logPath(name, uid, container string) string {
	return filepath.Join(m.podLogDir(name, uid), container+".log")
}

func (m *Manager) removeLogs(e *podEntry) error {
	dir := m.podLogDir(e.name, e.uid)
	for _, c := range e.spec.GetContainers() {
		m.logs.forget(m.logPath(e.name, e.uid, c.GetName()))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove logs: %w", err)
	}
	return nil
}
