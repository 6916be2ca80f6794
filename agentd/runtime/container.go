package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

const (
	// maxIDLength is containerd's limit on identifiers.
	maxIDLength = 76
	// cfsPeriod is the CFS period used for CPU limits (100 ms, like
	// Kubernetes).
	cfsPeriod = 100000
	// minCFSQuota is the kernel's smallest CFS quota (1 ms).
	minCFSQuota = 1000
	// minShares is the kernel's smallest cpu.shares value.
	minShares = 2
	// killWait bounds how long a removal waits for a SIGKILLed task.
	killWait = 30 * time.Second
)

// ContainerID returns the containerd ID of a pod's container:
// "herd-<pod>-<container>". When that is not a valid containerd
// identifier (longer than 76 characters, or a name with "--"), the ID is
// "herd-" plus a readable prefix plus "-" and 12 hex digits of a hash of
// pod and container, so that it stays unique, valid and herd-prefixed.
//
// Distinct (pod, container) pairs can map to the same plain ID
// ("a-b"/"c" and "a"/"b-c"); callers that run several pods must refuse
// such a clash (agentd's pod manager does).
func ContainerID(pod, container string) string {
	plain := IDPrefix + pod + "-" + container
	if identifiers.Validate(plain) == nil {
		return plain
	}
	sum := sha256.Sum256([]byte(pod + "/" + container))
	suffix := hex.EncodeToString(sum[:6])
	base := pod + "-" + container
	for strings.Contains(base, "--") {
		base = strings.ReplaceAll(base, "--", "-")
	}
	if keep := maxIDLength - len(IDPrefix) - 1 - len(suffix); len(base) > keep {
		base = base[:keep]
	}
	base = strings.Trim(base, "-")
	return IDPrefix + base + "-" + suffix
}

// ContainerConfig describes a container to create.
type ContainerConfig struct {
	// Pod and PodUID identify the owning pod incarnation.
	Pod    string
	PodUID string
	// Hostname inside the container (default: Pod).
	Hostname string
	// Spec is the container's part of the pod spec (validated).
	Spec *herdv1.ContainerSpec
	// Image is the image to run, from EnsureImage.
	Image *Image
	// Labels are extra container labels; the marker labels always win.
	Labels map[string]string
	// NetnsPath is the pod's network namespace, shared by its containers.
	// Empty: the container gets a new namespace of its own (loopback only).
	NetnsPath string
	// ResolvConf, if set, is a host file bind-mounted read-only at
	// /etc/resolv.conf (the pod's view of service DNS).
	ResolvConf string
	// Mounts are extra host directories or files bind-mounted read-only
	// (nosuid, nodev, noexec), e.g. a pod's secret files.
	Mounts []BindMount
	// ExtraEnv holds variables set in addition to Spec.Env (secret_env,
	// resolved by the caller), whose names Spec.Env must not repeat. Their
	// values become part of the container's spec in containerd's metadata
	// and of /proc/<pid>/environ: weaker than files, and documented so.
	ExtraEnv map[string]string
	// OOMScoreAdj, if set, is the oom_score_adj of the container's
	// processes (the kubelet's value for its QoS class); nil: inherited
	// from containerd's shim.
	OOMScoreAdj *int
	// Extensions are records kept in the container's metadata (containerd
	// container extensions), by name: unlike labels (4 KiB each) they fit
	// a whole pod spec, and they go when the container goes.
	Extensions map[string]proto.Message
}

// BindMount is a bind mount of Source (on the host) at Destination (in
// the container): read-only and noexec unless Writable, always nosuid and
// nodev.
type BindMount struct {
	Source      string
	Destination string
	// Writable mounts it read-write, with exec allowed (a volume holds
	// what the application writes, programs included).
	Writable bool
}

// Container is a herd-managed containerd container. Only LoadContainer
// and CreateContainer make one, after checking or setting the marker.
type Container struct {
	r      *Runtime
	c      client.Container
	info   containers.Container
	labels map[string]string
}

// ID is the containerd container ID.
func (c *Container) ID() string { return c.info.ID }

// Labels returns a copy of the container's labels.
func (c *Container) Labels() map[string]string {
	out := make(map[string]string, len(c.labels))
	for k, v := range c.labels {
		out[k] = v
	}
	return out
}

// Pod is the pod the container belongs to (its io.herd.pod label).
func (c *Container) Pod() string { return c.labels[LabelPod] }

// PodUID is the uid of the pod incarnation that created it.
func (c *Container) PodUID() string { return c.labels[LabelPodUID] }

// Name is the container's name within the pod (io.herd.container).
func (c *Container) Name() string { return c.labels[LabelContainer] }

// Image is the image reference the container was created from.
func (c *Container) Image() string { return c.info.Image }

// SnapshotKey is the key of the container's root filesystem snapshot.
func (c *Container) SnapshotKey() string { return c.info.SnapshotKey }

// markerLabels are the labels every object of a pod container carries.
func markerLabels(pod, podUID, container string) map[string]string {
	return map[string]string{
		LabelManaged:   ManagedValue,
		LabelPod:       pod,
		LabelContainer: container,
		LabelPodUID:    podUID,
	}
}

// CreateContainer creates a pod's container and its root filesystem
// snapshot (key: the container ID), both labeled with the marker. The
// process follows Kubernetes: command replaces the image's entrypoint, args
// replace its cmd; env is merged over the image's env; CPU and memory
// limits become cgroup limits.
func (r *Runtime) CreateContainer(ctx context.Context, cfg ContainerConfig) (*Container, error) {
	ctx = r.Context(ctx)
	cs := cfg.Spec
	if cs == nil || cfg.Image == nil || cfg.Pod == "" {
		return nil, fmt.Errorf("create container: pod, spec and image are required")
	}
	id := ContainerID(cfg.Pod, cs.GetName())
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	for k, v := range markerLabels(cfg.Pod, cfg.PodUID, cs.GetName()) {
		labels[k] = v
	}
	specOpts, err := processSpecOpts(cfg, r.withImageConfig(cfg.Image))
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	opts := []client.NewContainerOpts{
		client.WithSnapshotter(r.snapshotter),
		client.WithNewSnapshot(id, cfg.Image.img, snapshots.WithLabels(markerLabels(cfg.Pod, cfg.PodUID, cs.GetName()))),
		client.WithRuntime(r.runtimeName, r.runtimeOpts),
		client.WithNewSpec(specOpts...),
		client.WithContainerLabels(labels),
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Extensions)) {
		opts = append(opts, client.WithContainerExtension(name, cfg.Extensions[name]))
	}
	c, err := r.client.NewContainer(ctx, id, opts...)
	if err != nil {
		if errdefs.IsNotFound(err) {
			// The image's layers went away behind our back: pull next time.
			r.forgetImage(cfg.Image.Ref)
		}
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create container %s: a container or snapshot with that ID exists: %w", id, err)
		}
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	return &Container{r: r, c: c, info: info, labels: info.Labels}, nil
}

// processSpecOpts turns a container spec into OCI spec options.
func processSpecOpts(cfg ContainerConfig, imageConfig oci.SpecOpts) ([]oci.SpecOpts, error) {
	cs := cfg.Spec
	args := processArgs(cfg.Image.Config.Entrypoint, cfg.Image.Config.Cmd, cs.GetCommand(), cs.GetArgs())
	if len(args) == 0 {
		return nil, fmt.Errorf("no command: the image %s has no entrypoint or cmd and the container sets no command", cfg.Image.Ref)
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = cfg.Pod
	}
	opts := []oci.SpecOpts{
		imageConfig,
		oci.WithProcessArgs(args...),
		oci.WithHostname(hostname),
		// The container's own cgroups, read-only, as Kubernetes and Docker
		// mount them: a process can read its limits there.
		oci.WithMounts([]specs.Mount{{
			Destination: "/sys/fs/cgroup",
			Type:        "cgroup",
			Source:      "cgroup",
			Options:     []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
		}}),
	}
	if cfg.ResolvConf != "" {
		opts = append(opts, oci.WithMounts([]specs.Mount{{
			Destination: "/etc/resolv.conf",
			Type:        "bind",
			Source:      cfg.ResolvConf,
			Options:     []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
		}}))
	}
	for _, bm := range cfg.Mounts {
		if bm.Source == "" || bm.Destination == "" {
			return nil, fmt.Errorf("bind mount: source and destination are required")
		}
		options := []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
		if bm.Writable {
			options = []string{"rbind", "rw", "nosuid", "nodev"}
		}
		opts = append(opts, oci.WithMounts([]specs.Mount{{
			Destination: bm.Destination,
			Type:        "bind",
			Source:      bm.Source,
			Options:     options,
		}}))
	}
	if cfg.NetnsPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: cfg.NetnsPath}))
	}
	if env := cs.GetEnv(); len(env) > 0 || len(cfg.ExtraEnv) > 0 {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		list := make([]string, 0, len(keys)+len(cfg.ExtraEnv))
		for _, k := range keys {
			list = append(list, k+"="+env[k])
		}
		extra := make([]string, 0, len(cfg.ExtraEnv))
		for k := range cfg.ExtraEnv {
			if _, dup := env[k]; dup {
				// The message names the variable, never a value.
				return nil, fmt.Errorf("variable %s is set both in env and from a secret", k)
			}
			extra = append(extra, k)
		}
		sort.Strings(extra)
		for _, k := range extra {
			list = append(list, k+"="+cfg.ExtraEnv[k])
		}
		opts = append(opts, oci.WithEnv(list))
	}
	if wd := cs.GetWorkingDir(); wd != "" {
		opts = append(opts, oci.WithProcessCwd(wd))
	}
	if q := cs.GetCpu(); q != "" {
		millis, err := spec.ParseCPU(q)
		if err != nil {
			return nil, err
		}
		quota, _ := cpuLimits(millis)
		opts = append(opts, oci.WithCPUCFS(quota, cfsPeriod))
	}
	// cpu.shares follow the request (the limit when none is set), as the
	// kubelet sets them.
	if q := cs.GetCpuRequest(); q != "" {
		if _, err := spec.ParseCPU(q); err != nil {
			return nil, err
		}
	}
	if req, _ := spec.ContainerRequests(cs); req > 0 {
		_, shares := cpuLimits(req)
		opts = append(opts, oci.WithCPUShares(shares))
	}
	if q := cs.GetMemory(); q != "" {
		b, err := spec.ParseMemory(q)
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithMemoryLimit(uint64(b)))
	}
	if cfg.OOMScoreAdj != nil {
		opts = append(opts, withOOMScoreAdj(*cfg.OOMScoreAdj))
	}
	return opts, nil
}

// withOOMScoreAdj sets the process's oom_score_adj; runc writes it before
// the container's process starts.
func withOOMScoreAdj(adj int) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}

// cpuLimits converts millicores to a CFS quota (per 100 ms period) and
// cpu.shares, as the kubelet does for a limit and a request.
func cpuLimits(millis int64) (quota int64, shares uint64) {
	quota = millis * cfsPeriod / 1000
	if quota < minCFSQuota {
		quota = minCFSQuota
	}
	s := millis * 1024 / 1000
	if s < minShares {
		s = minShares
	}
	return quota, uint64(s)
}

// processArgs applies Kubernetes' rules: command replaces the entrypoint
// (and drops the image's cmd), args replace the cmd.
func processArgs(entrypoint, cmd, command, args []string) []string {
	switch {
	case len(command) > 0:
		return append(append([]string{}, command...), args...)
	case len(args) > 0:
		return append(append([]string{}, entrypoint...), args...)
	default:
		return append(append([]string{}, entrypoint...), cmd...)
	}
}

// LoadContainer returns the container id if it exists and carries the
// marker: an error wrapping ErrNotFound if it does not exist, one wrapping
// ErrForeign if it exists without the marker.
func (r *Runtime) LoadContainer(ctx context.Context, id string) (*Container, error) {
	ctx = r.Context(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if !IsManaged(info.Labels) {
		return nil, foreignContainer(id)
	}
	return &Container{r: r, c: c, info: info, labels: info.Labels}, nil
}

// SetExtensions replaces the named extensions of container id (one that
// carries the marker; see ContainerConfig.Extensions): the pod manager
// keeps the container's copy of its pod record current when the record
// changes in place.
func (r *Runtime) SetExtensions(ctx context.Context, id string, exts map[string]proto.Message) error {
	ctx = r.Context(ctx)
	c, err := r.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	opts := make([]client.UpdateContainerOpts, 0, len(exts))
	for _, name := range slices.Sorted(maps.Keys(exts)) {
		opts = append(opts, client.UpdateContainerOpts(client.WithContainerExtension(name, exts[name])))
	}
	if err := c.c.Update(ctx, opts...); err != nil {
		return fmt.Errorf("container %s: set extensions: %w", id, err)
	}
	return nil
}

func foreignContainer(id string) error {
	return fmt.Errorf("container %s exists but is %w; herd will not touch it", id, ErrForeign)
}

func foreignSnapshot(key string) error {
	return fmt.Errorf("snapshot %s exists but is %w; herd will not touch it", key, ErrForeign)
}

// CheckAvailable returns an error wrapping ErrForeign if a container or a
// snapshot named id exists without the marker, so creating herd's container
// id would have to touch it. Absent or herd-managed objects are fine.
func (r *Runtime) CheckAvailable(ctx context.Context, id string) error {
	ctx = r.Context(ctx)
	info, err := r.client.ContainerService().Get(ctx, id)
	switch {
	case err == nil:
		if !IsManaged(info.Labels) {
			return foreignContainer(id)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("container %s: %w", id, err)
	}
	sinfo, err := r.client.SnapshotService(r.snapshotter).Stat(ctx, id)
	switch {
	case err == nil:
		if !IsManaged(sinfo.Labels) {
			return foreignSnapshot(id)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("snapshot %s: %w", id, err)
	}
	return nil
}

// Exit is how a task ended.
type Exit struct {
	// Code is the exit status; 128+n when killed by signal n. It is
	// client.UnknownExitStatus (255) when containerd could not tell.
	Code uint32
	At   time.Time
	// Err is set when waiting failed (containerd went away, ctx ended):
	// the task may still be running.
	Err error
}

// Task is the running (or exited, not yet deleted) process of a
// herd-managed container.
type Task struct {
	r  *Runtime
	t  client.Task
	id string
}

// TaskStatus is a task's state as containerd reports it.
type TaskStatus struct {
	// State is "created", "running", "stopped", "paused", "pausing" or
	// "unknown".
	State    string
	ExitCode uint32
	ExitedAt time.Time
}

// NewTask creates the container's task (not started) with stdout and
// stderr appended to logPath by the shim itself, so the container keeps
// logging while agentd is down and agentd never drains a FIFO. (Not
// through cio.LogFile, which loses late stderr output: see logFile.)
func (c *Container) NewTask(ctx context.Context, logPath string) (*Task, error) {
	t, err := c.c.NewTask(c.r.Context(ctx), logFile(logPath))
	if err != nil {
		return nil, fmt.Errorf("create task %s: %w", c.ID(), err)
	}
	return &Task{r: c.r, t: t, id: c.ID()}, nil
}

// Task returns the container's existing task (re-attaching after an agentd
// restart without touching it), or an error wrapping ErrNotFound.
func (c *Container) Task(ctx context.Context) (*Task, error) {
	t, err := c.c.Task(c.r.Context(ctx), nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("task %s: %w", c.ID(), ErrNotFound)
		}
		return nil, fmt.Errorf("task %s: %w", c.ID(), err)
	}
	return &Task{r: c.r, t: t, id: c.ID()}, nil
}

// Remove deletes the container completely: see Runtime.RemoveContainer.
func (c *Container) Remove(ctx context.Context) error { return c.r.RemoveContainer(ctx, c.ID()) }

// ID is the container ID of the task.
func (t *Task) ID() string { return t.id }

// PID is the task's init process ID on the host.
func (t *Task) PID() uint32 { return t.t.Pid() }

// Start starts a created task.
func (t *Task) Start(ctx context.Context) error {
	if err := t.t.Start(t.r.Context(ctx)); err != nil {
		return fmt.Errorf("start task %s: %w", t.id, err)
	}
	return nil
}

// Wait returns a channel that receives the task's exit once. Call it
// before Start so that a quick exit is not missed. Cancelling ctx ends the
// wait (the channel then receives an Exit with Err set).
func (t *Task) Wait(ctx context.Context) (<-chan Exit, error) {
	ch, err := t.t.Wait(t.r.Context(ctx))
	if err != nil {
		return nil, fmt.Errorf("wait task %s: %w", t.id, err)
	}
	out := make(chan Exit, 1)
	go func() {
		s := <-ch
		code, at, err := s.Result()
		out <- Exit{Code: code, At: at, Err: err}
		close(out)
	}()
	return out, nil
}

// Status reports the task's state.
func (t *Task) Status(ctx context.Context) (TaskStatus, error) {
	s, err := t.t.Status(t.r.Context(ctx))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return TaskStatus{}, fmt.Errorf("task %s: %w", t.id, ErrNotFound)
		}
		return TaskStatus{}, fmt.Errorf("task %s status: %w", t.id, err)
	}
	return TaskStatus{State: string(s.Status), ExitCode: s.ExitStatus, ExitedAt: s.ExitTime}, nil
}

// Kill sends sig to the task's init process. Killing a task that already
// exited is not an error.
func (t *Task) Kill(ctx context.Context, sig syscall.Signal) error {
	if err := t.t.Kill(t.r.Context(ctx), sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill task %s with %v: %w", t.id, sig, err)
	}
	return nil
}

// Delete removes an exited task and returns its exit. A task that still
// runs is refused (FailedPrecondition); use Runtime.RemoveContainer to kill
// and remove.
func (t *Task) Delete(ctx context.Context) (Exit, error) {
	s, err := t.t.Delete(t.r.Context(ctx))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return Exit{Code: client.UnknownExitStatus}, nil
		}
		return Exit{}, fmt.Errorf("delete task %s: %w", t.id, err)
	}
	code, at, _ := s.Result()
	return Exit{Code: code, At: at}, nil
}

// KillTask sends sig to the task of the herd-managed container id.
func (r *Runtime) KillTask(ctx context.Context, id string, sig syscall.Signal) error {
	c, err := r.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	t, err := c.Task(ctx)
	if err != nil {
		return err
	}
	return t.Kill(ctx, sig)
}

// RemoveContainer removes the herd-managed container id for good: it
// SIGKILLs and deletes its task, deletes the container and then its
// snapshot. A missing container is not an error (a leftover snapshot of
// that key is still removed if it carries the marker); a container or
// snapshot without the marker is never touched and yields ErrForeign.
//
// With OnlyPodUID, a container (or leftover snapshot) created by another
// incarnation of the pod is left alone and nil is returned: garbage
// collection uses it so that it never removes what a newer pod
// incarnation created in the meantime under the same ID.
func (r *Runtime) RemoveContainer(ctx context.Context, id string, opts ...RemoveOpt) error {
	var o removeOpts
	for _, opt := range opts {
		opt(&o)
	}
	ctx = r.Context(ctx)
	c, err := r.LoadContainer(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return r.removeSnapshot(ctx, id, o)
	}
	if err != nil {
		return err
	}
	if o.onlyUID && c.PodUID() != o.podUID {
		return nil
	}
	if t, err := c.Task(ctx); err == nil {
		kctx, cancel := context.WithTimeout(ctx, killWait)
		_, err := t.t.Delete(kctx, client.WithProcessKill)
		cancel()
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove container %s: delete task: %w", id, err)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if err := c.c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if key := c.info.SnapshotKey; key != "" {
		if err := r.removeSnapshot(ctx, key, o); err != nil {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
	}
	return nil
}

// RemoveSnapshot removes the snapshot key if it carries the marker. A
// missing snapshot is not an error; one without the marker yields
// ErrForeign.
func (r *Runtime) RemoveSnapshot(ctx context.Context, key string, opts ...RemoveOpt) error {
	var o removeOpts
	for _, opt := range opts {
		opt(&o)
	}
	return r.removeSnapshot(r.Context(ctx), key, o)
}

// RemoveOpt qualifies RemoveContainer and RemoveSnapshot.
type RemoveOpt func(*removeOpts)

type removeOpts struct {
	onlyUID bool
	podUID  string
}

// OnlyPodUID restricts a removal to objects labeled with this pod uid.
func OnlyPodUID(uid string) RemoveOpt {
	return func(o *removeOpts) { o.onlyUID, o.podUID = true, uid }
}

func (r *Runtime) removeSnapshot(ctx context.Context, key string, o removeOpts) error {
	sn := r.client.SnapshotService(r.snapshotter)
	info, err := sn.Stat(ctx, key)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", key, err)
	}
	if !IsManaged(info.Labels) {
		return foreignSnapshot(key)
	}
	if o.onlyUID && info.Labels[LabelPodUID] != o.podUID {
		return nil
	}
	if err := sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %s: %w", key, err)
	}
	return nil
}

// ManagedContainer is a herd-managed container as ListManaged sees it.
type ManagedContainer struct {
	ID          string
	Labels      map[string]string
	Image       string
	SnapshotKey string
	CreatedAt   time.Time
	ext         map[string]extension
}

type extension struct {
	typeURL string
	value   []byte
}

// Extension unmarshals the container's extension name (see
// ContainerConfig.Extensions) into into; ok is false when the container
// has no such extension. An extension of another type is an error.
func (m ManagedContainer) Extension(name string, into proto.Message) (ok bool, err error) {
	x, found := m.ext[name]
	if !found {
		return false, nil
	}
	if want := string(into.ProtoReflect().Descriptor().FullName()); x.typeURL != want && !strings.HasSuffix(x.typeURL, "/"+want) {
		return false, fmt.Errorf("container %s: extension %s is a %s, not a %s", m.ID, name, x.typeURL, want)
	}
	if err := proto.Unmarshal(x.value, into); err != nil {
		return false, fmt.Errorf("container %s: extension %s: %w", m.ID, name, err)
	}
	return true, nil
}

// Pod is the container's io.herd.pod label.
func (m ManagedContainer) Pod() string { return m.Labels[LabelPod] }

// PodUID is the container's io.herd.pod-uid label.
func (m ManagedContainer) PodUID() string { return m.Labels[LabelPodUID] }

var managedFilter = fmt.Sprintf("labels.%q==%s", LabelManaged, ManagedValue)

// ListManaged lists the containers that carry the marker, for garbage
// collection.
func (r *Runtime) ListManaged(ctx context.Context) ([]ManagedContainer, error) {
	list, err := r.client.ContainerService().List(r.Context(ctx), managedFilter)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []ManagedContainer
	for _, c := range list {
		if !IsManaged(c.Labels) { // never trust a filter with deletion
			continue
		}
		mc := ManagedContainer{ID: c.ID, Labels: c.Labels, Image: c.Image, SnapshotKey: c.SnapshotKey, CreatedAt: c.CreatedAt}
		for name, x := range c.Extensions {
			if x == nil {
				continue
			}
			if mc.ext == nil {
				mc.ext = map[string]extension{}
			}
			mc.ext[name] = extension{typeURL: x.GetTypeUrl(), value: x.GetValue()}
		}
		out = append(out, mc)
	}
	return out, nil
}

// ManagedSnapshot is a herd-managed snapshot.
type ManagedSnapshot struct {
	Key    string
	Kind   string // "active", "committed", "view"
	Labels map[string]string
}

// ListManagedSnapshots lists the snapshots that carry the marker: container
// root filesystems (with a pod label) and unpacked image layers (without).
func (r *Runtime) ListManagedSnapshots(ctx context.Context) ([]ManagedSnapshot, error) {
	var out []ManagedSnapshot
	err := r.client.SnapshotService(r.snapshotter).Walk(r.Context(ctx), func(_ context.Context, info snapshots.Info) error {
		if IsManaged(info.Labels) {
			out = append(out, ManagedSnapshot{Key: info.Name, Kind: info.Kind.String(), Labels: info.Labels})
		}
		return nil
	}, managedFilter)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

// OOMKilled reports whether the kernel's OOM killer killed a process of
// container id's cgroup (the default cgroup path /<namespace>/<id>, cgroup
// v1 or v2). Call it after the task exited and before it is deleted: the
// delete removes the cgroup. Best effort: false when it cannot tell.
func (r *Runtime) OOMKilled(id string) bool {
	for _, f := range []struct{ path, key string }{
		{filepath.Join("/sys/fs/cgroup/memory", r.ns, id, "memory.oom_control"), "oom_kill"},
		{filepath.Join("/sys/fs/cgroup", r.ns, id, "memory.events"), "oom_kill"},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == f.key {
				return strings.TrimSpace(v) != "0"
			}
		}
	}
	return false
}
