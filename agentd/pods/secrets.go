package pods

import (
	"bytes"
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

	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Secrets in pods.
//
//   - Files (secret_mounts): on a tmpfs per pod incarnation, see
//     secretfs.go; rewritten atomically by SecretChanged, without a
//     restart. A deleted secret keeps its last files (as the kubelet does).
//   - Environment (secret_env): resolved when a container is created, so
//     visible in /proc/<pid>/environ and kept in containerd's metadata
//     (the container spec): weaker than files, and updated only when the
//     container is created again.
//   - image_pull_secret: a secret of type registry whose credentials pull
//     the pod's images from its registry host only (see
//     runtime.EnsureImage on images already present).
//   - Each container records the secrets it was created with in its
//     LabelSecrets label: short hashes of "namespace/name" and of the
//     secret's checksum (itself a keyed HMAC, never a value), so that
//     RestartForSecret finds stale containers after an agentd restart too.
//
// No value ever reaches a log line, an error, a label, the store or a file
// outside the tmpfs (env values aside, in containerd, as said).

// SecretData is one version of a secret this node holds.
type SecretData struct {
	Type     string            // opaque, tls, basic-auth, registry
	Data     map[string][]byte // key -> value
	Checksum string            // keyed HMAC of Data; changes iff the data changes
}

// SecretSource is what pods need from the node's secret store.
type SecretSource interface {
	// Secret returns a secret this node holds. When the node does not
	// hold it, the error says why in words fit for the user (no values)
	// and wraps ErrSecretUnavailable.
	Secret(ctx context.Context, namespace, name string) (SecretData, error)
}

// ErrSecretUnavailable is wrapped by the errors of a pod that uses a
// secret this node does not hold, or whose data does not fit the pod (a
// key it names is missing, a pull secret is no registry secret for the
// image's host). The gRPC server maps it to FailedPrecondition, with the
// reason herdv1.ReasonSecretNotAvailable.
var ErrSecretUnavailable error = &reasonError{msg: "secret unavailable on this node", reason: herdv1.ReasonSecretNotAvailable}

// reasonError is a sentinel that names the google.rpc.ErrorInfo reason the
// gRPC server attaches to the errors that wrap it.
type reasonError struct{ msg, reason string }

func (e *reasonError) Error() string       { return e.msg }
func (e *reasonError) ErrorReason() string { return e.reason }

const (
	// LabelSecrets records on a container the secrets it was created
	// with: "<ref hash>=<checksum hash>,..." (see secretSums).
	LabelSecrets = "io.herd.secrets"
	// ReasonCreateContainerConfigError: a secret the container needs is
	// missing or does not fit (retried with back-off), as in Kubernetes.
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	// DefaultSecretRestartTimeout bounds RestartForSecret's wait for one
	// pod to run (and be ready) again.
	DefaultSecretRestartTimeout = 2 * time.Minute
)

// refKey and sumKey are the short hashes LabelSecrets holds.
func refKey(r spec.SecretRef) string {
	h := sha256.Sum256([]byte(r.String()))
	return hex.EncodeToString(h[:6])
}

func sumKey(checksum string) string {
	h := sha256.Sum256([]byte(checksum))
	return hex.EncodeToString(h[:8])
}

func encodeSums(sums map[string]string) string {
	parts := make([]string, 0, len(sums))
	for _, k := range slices.Sorted(maps.Keys(sums)) {
		parts = append(parts, k+"="+sums[k])
	}
	return strings.Join(parts, ",")
}

func parseSums(label string) map[string]string {
	out := map[string]string{}
	for part := range strings.SplitSeq(label, ",") {
		if k, v, ok := strings.Cut(part, "="); ok {
			out[k] = v
		}
	}
	return out
}

// containerSecrets is what one container gets from its secrets, resolved
// from one fetch of each.
type containerSecrets struct {
	mounts   []mountFiles
	binds    []runtime.BindMount // by mount; Source set once written
	env      map[string]string
	pullOpts []runtime.PullOption
	sums     map[string]string // refKey -> sumKey
}

func fieldPath(p spec.Path) string { return spec.Path{}.Field("spec").String() + "." + p.String() }

func unavailable(p spec.Path, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", fieldPath(p), fmt.Sprintf(format, args...), ErrSecretUnavailable)
}

// fetchSecrets gets each secret once; failures are by reference.
func (m *Manager) fetchSecrets(ctx context.Context, refs []spec.SecretRef) (map[spec.SecretRef]SecretData, map[spec.SecretRef]error) {
	data, errs := map[spec.SecretRef]SecretData{}, map[spec.SecretRef]error{}
	for _, r := range refs {
		if m.cfg.Secrets == nil {
			errs[r] = fmt.Errorf("secret %s: this node has no secret store (agentd runs without a cluster): %w", r, ErrSecretUnavailable)
			continue
		}
		d, err := m.cfg.Secrets.Secret(ctx, r.Namespace, r.Name)
		if err != nil {
			errs[r] = err
			continue
		}
		data[r] = d
	}
	return data, errs
}

// mountFilesFor builds the files of mount j of container c from d.
func mountFilesFor(c *herdv1.ContainerSpec, j int, p spec.Path, ref spec.SecretRef, d SecretData) (mountFiles, error) {
	sm := c.GetSecretMounts()[j]
	mf := mountFiles{
		subdir:   fmt.Sprintf("%s.%d", c.GetName(), j),
		files:    map[string][]byte{},
		mode:     os.FileMode(spec.SecretMountMode(sm)),
		uid:      int(sm.GetUid()),
		gid:      int(sm.GetGid()),
		checksum: d.Checksum,
	}
	if keys := sm.GetKeys(); len(keys) > 0 {
		for k, key := range keys {
			v, ok := d.Data[key]
			if !ok {
				return mf, unavailable(p.Field("keys").Index(k), "secret %s has no key %q", ref, key)
			}
			mf.files[key] = v
		}
		return mf, nil
	}
	for _, key := range slices.Sorted(maps.Keys(d.Data)) {
		if spec.ValidateSecretMountKey(key) != nil {
			return mf, unavailable(p.Field("secret"), "secret %s has the key %q, which cannot be a file name in a mount; list the keys to mount in keys", ref, key)
		}
		mf.files[key] = d.Data[key]
	}
	return mf, nil
}

// resolveContainer resolves what container i of s gets from its secrets.
// Every problem is reported at its field path, without a value.
func resolveContainer(s *herdv1.PodSpec, i int, data map[spec.SecretRef]SecretData, fetchErrs map[spec.SecretRef]error) (*containerSecrets, error) {
	c := s.GetContainers()[i]
	p := spec.Path{}.Field("containers").Index(i)
	out := &containerSecrets{sums: map[string]string{}}
	var errs []error
	get := func(ref string, fp spec.Path) (spec.SecretRef, SecretData, bool) {
		r := spec.MustPodSecretRef(s, ref)
		d, ok := data[r]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %w", fieldPath(fp), fetchErrs[r]))
		}
		return r, d, ok
	}
	for j, sm := range c.GetSecretMounts() {
		mp := p.Field("secret_mounts").Index(j)
		r, d, ok := get(sm.GetSecret(), mp.Field("secret"))
		if !ok {
			continue
		}
		mf, err := mountFilesFor(c, j, mp, r, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.mounts = append(out.mounts, mf)
		out.binds = append(out.binds, runtime.BindMount{Destination: spec.SecretMountPath(sm)})
	}
	for j, se := range c.GetSecretEnv() {
		ep := p.Field("secret_env").Index(j)
		r, d, ok := get(se.GetSecret(), ep.Field("secret"))
		if !ok {
			continue
		}
		v, ok := d.Data[se.GetKey()]
		switch {
		case !ok:
			errs = append(errs, unavailable(ep.Field("key"), "secret %s has no key %q", r, se.GetKey()))
		case bytes.IndexByte(v, 0) >= 0:
			errs = append(errs, unavailable(ep.Field("key"), "key %q of secret %s holds a NUL byte, which an environment variable cannot", se.GetKey(), r))
		default:
			if out.env == nil {
				out.env = map[string]string{}
			}
			out.env[se.GetName()] = string(v)
		}
	}
	if ref := s.GetImagePullSecret(); ref != "" {
		fp := spec.Path{}.Field("image_pull_secret")
		if r, d, ok := get(ref, fp); ok {
			opt, err := pullCredentials(c.GetImage(), p.Field("image"), fp, r, d)
			if err != nil {
				errs = append(errs, err)
			} else {
				out.pullOpts = append(out.pullOpts, opt)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, r := range spec.ContainerSecretRefs(s, c) {
		out.sums[refKey(r)] = sumKey(data[r].Checksum)
	}
	return out, nil
}

// pullCredentials turns a registry secret into credentials for image's
// host, which must be the secret's registry.
func pullCredentials(image string, imagePath, secretPath spec.Path, r spec.SecretRef, d SecretData) (runtime.PullOption, error) {
	if d.Type != spec.SecretTypeRegistry {
		return nil, unavailable(secretPath, "secret %s is of type %q, not %q", r, d.Type, spec.SecretTypeRegistry)
	}
	for _, k := range spec.RequiredSecretKeys(spec.SecretTypeRegistry) {
		if len(d.Data[k]) == 0 {
			return nil, unavailable(secretPath, "secret %s has no %q", r, k)
		}
	}
	host := registryHost(string(d.Data["registry"]))
	imgHost, err := runtime.ImageHost(image)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fieldPath(imagePath), err)
	}
	if !runtime.SameRegistryHost(host, imgHost) {
		return nil, unavailable(imagePath, "image %s is on registry %s, but image_pull_secret %s holds credentials for registry %s only", image, imgHost, r, host)
	}
	return runtime.WithPullCredentials(host, runtime.Credentials{
		Username: string(d.Data["username"]),
		Password: string(d.Data["password"]),
	}), nil
}

// registryHost reduces a registry secret's "registry" to a host as image
// references spell it: no scheme, no path ("https://r.example.com/v2/" is
// "r.example.com").
func registryHost(s string) string {
	s = strings.TrimSpace(s)
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	s, _, _ = strings.Cut(s, "/")
	return strings.ToLower(s)
}

// checkSecrets refuses a pod whose secrets this node cannot give it:
// every use of every secret is checked, and reported at its path.
func (m *Manager) checkSecrets(ctx context.Context, d *herdv1.PodSpec) error {
	refs := spec.PodSecretRefs(d)
	if len(refs) == 0 {
		return nil
	}
	data, fetchErrs := m.fetchSecrets(ctx, refs)
	var errs []error
	for i := range d.GetContainers() {
		if _, err := resolveContainer(d, i, data, fetchErrs); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pod %s: %w", d.GetName(), errors.Join(errs...))
	}
	return nil
}

// prepareSecrets resolves container c's secrets for a start and writes
// its files (only those whose checksum changed).
func (m *Manager) prepareSecrets(ctx context.Context, e *podEntry, c *ctr) (*containerSecrets, error) {
	refs := spec.ContainerSecretRefs(e.spec, c.spec)
	if len(refs) == 0 {
		return &containerSecrets{}, nil
	}
	data, fetchErrs := m.fetchSecrets(ctx, refs)
	cs, err := resolveContainer(e.spec, c.idx, data, fetchErrs)
	if err != nil {
		return nil, err
	}
	if len(cs.mounts) > 0 {
		if e.secrets == nil {
			return nil, fmt.Errorf("pod %s has no secret volume", e.name) // a bug
		}
		if err := e.secrets.write(cs.mounts, false); err != nil {
			return nil, err
		}
		for j := range cs.binds {
			cs.binds[j].Source = filepath.Join(e.secrets.dir, cs.mounts[j].subdir)
		}
	}
	return cs, nil
}

// secretDir is the tmpfs mount point of a pod incarnation.
func (m *Manager) secretDir(name, uid string) string {
	return filepath.Join(m.cfg.SecretsDir, name+"_"+uid)
}

func hasSecretMounts(s *herdv1.PodSpec) bool {
	for _, c := range s.GetContainers() {
		if len(c.GetSecretMounts()) > 0 {
			return true
		}
	}
	return false
}

func usesSecret(s *herdv1.PodSpec, r spec.SecretRef) bool {
	return slices.Contains(spec.PodSecretRefs(s), r)
}

// entries returns the visible pods for which keep holds, sorted by name.
func (m *Manager) entries(keep func(*podEntry) bool) []*podEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*podEntry
	for _, e := range m.pods {
		if !e.hidden && !e.gone && keep(e) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// SecretUsers lists the pods on this node using namespace/name (mount,
// env or image_pull_secret), sorted.
func (m *Manager) SecretUsers(namespace, name string) []string {
	r := spec.SecretRef{Namespace: namespace, Name: name}
	var names []string
	for _, e := range m.entries(func(e *podEntry) bool { return usesSecret(e.spec, r) }) {
		names = append(names, e.name)
	}
	return names
}

// SecretChanged rewrites the files of every pod on this node that mounts
// namespace/name with its current data (atomically), without restarting.
// Called by the secret store after a new version is stored or it is
// deleted: a secret the node no longer holds keeps its last files, as the
// kubelet does. Mounts not set up yet (containers not started) are left
// to the start, which writes current data.
func (m *Manager) SecretChanged(ctx context.Context, namespace, name string) error {
	r := spec.SecretRef{Namespace: namespace, Name: name}
	m.mu.Lock()
	var targets []*podEntry
	for _, e := range m.pods {
		if !e.gone && e.secrets != nil && mountsSecret(e.spec, r) {
			targets = append(targets, e)
		}
	}
	m.mu.Unlock()
	if len(targets) == 0 || m.cfg.Secrets == nil {
		return nil
	}
	d, err := m.cfg.Secrets.Secret(ctx, namespace, name)
	if errors.Is(err, ErrSecretUnavailable) {
		m.log.Info("secret not available any more; its mounted files stay as they are", "secret", r.String(), "pods", len(targets))
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret %s: %w", r, err)
	}
	var errs []error
	for _, e := range targets {
		var mounts []mountFiles
		for i, c := range e.spec.GetContainers() {
			for j, sm := range c.GetSecretMounts() {
				if spec.MustPodSecretRef(e.spec, sm.GetSecret()) != r {
					continue
				}
				p := spec.Path{}.Field("containers").Index(i).Field("secret_mounts").Index(j)
				mf, err := mountFilesFor(c, j, p, r, d)
				if err != nil {
					errs = append(errs, fmt.Errorf("pod %s: keeping the last files: %w", e.name, err))
					continue
				}
				mounts = append(mounts, mf)
			}
		}
		if err := e.secrets.update(mounts); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: update the files of secret %s: %w", e.name, r, err))
			continue
		}
		m.log.Info("secret files updated", "pod", e.name, "secret", r.String())
	}
	return errors.Join(errs...)
}

func mountsSecret(s *herdv1.PodSpec, r spec.SecretRef) bool {
	for _, c := range s.GetContainers() {
		for _, sm := range c.GetSecretMounts() {
			if got, err := spec.ParsePodSecretRef(s, sm.GetSecret()); err == nil && got == r {
				return true
			}
		}
	}
	return false
}

// restartRequest asks a pod's worker to recreate the running containers
// that use secret ref with another checksum than sum.
type restartRequest struct {
	ref, sum string // refKey, sumKey
	why      string
	reply    chan []string // the containers restarted; buffered
}

// RestartForSecret restarts, one pod at a time, the pods on this node that
// set restart_on_secret_change, use namespace/name (mount, env or
// image_pull_secret) and whose running containers were created with
// another checksum of it. Only those containers are recreated (so env
// changes take effect), whatever the restart policy; containers that are
// not running get current data when they next start anyway, and
// terminated ones stay so. It waits for each pod to run again (and be
// ready if it has readiness probes), at most SecretRestartTimeout, then
// goes on and reports the pods that did not make it in the error.
//
// dryRun lists the pods that use the secret with the flag set, changing
// nothing. It returns the pod names in restart order (by name). Calls are
// serialized, so that at most one pod of this node restarts at a time.
func (m *Manager) RestartForSecret(ctx context.Context, namespace, name string, dryRun bool) ([]string, error) {
	r := spec.SecretRef{Namespace: namespace, Name: name}
	candidates := m.entries(func(e *podEntry) bool {
		return e.spec.GetRestartOnSecretChange() && !e.terminating && usesSecret(e.spec, r)
	})
	names := []string{}
	if dryRun {
		for _, e := range candidates {
			names = append(names, e.name)
		}
		return names, nil
	}
	if len(candidates) == 0 {
		return names, nil
	}
	m.restartMu.Lock()
	defer m.restartMu.Unlock()
	if m.cfg.Secrets == nil {
		return names, fmt.Errorf("secret %s: this node has no secret store: %w", r, ErrSecretUnavailable)
	}
	d, err := m.cfg.Secrets.Secret(ctx, namespace, name)
	if err != nil {
		return names, fmt.Errorf("restart for secret %s: %w", r, err)
	}
	var errs []error
	for _, e := range candidates {
		began := time.Now()
		rq := restartRequest{ref: refKey(r), sum: sumKey(d.Checksum), why: "secret " + r.String() + " changed", reply: make(chan []string, 1)}
		ctrs, err := m.requestRestart(ctx, e, rq)
		if err != nil {
			if ctx.Err() != nil {
				return names, err
			}
			errs = append(errs, err)
			continue
		}
		if len(ctrs) == 0 {
			continue
		}
		names = append(names, e.name)
		m.log.Info("restarting pod for a changed secret", "pod", e.name, "secret", r.String(), "containers", ctrs)
		wctx, cancel := context.WithTimeout(ctx, m.cfg.SecretRestartTimeout)
		_, err = m.WaitFor(wctx, e.name, runningAgain(ctrs, began))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return names, ctx.Err()
			}
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile: nothing to wait for
			}
			errs = append(errs, fmt.Errorf("pod %s did not run (and become ready) again within %s of its restart for secret %s; went on with the next", e.name, m.cfg.SecretRestartTimeout, r))
		}
	}
	return names, errors.Join(errs...)
}

// runningAgain holds when the containers run, started after began, and
// the pod is ready if any container has a readiness probe.
func runningAgain(ctrs []string, began time.Time) func(*herdv1.Pod) bool {
	return func(p *herdv1.Pod) bool {
		probes := false
		for _, c := range p.GetSpec().GetContainers() {
			probes = probes || c.GetReadinessProbe() != nil
		}
		for _, cs := range p.GetStatus().GetContainers() {
			if !slices.Contains(ctrs, cs.GetName()) {
				continue
			}
			if cs.GetState() != StateRunning || cs.GetStartedAt() == nil || cs.GetStartedAt().AsTime().Before(began) {
				return false
			}
		}
		return !probes || p.GetStatus().GetReady()
	}
}

// requestRestart hands rq to e's worker and returns its answer.
func (m *Manager) requestRestart(ctx context.Context, e *podEntry, rq restartRequest) ([]string, error) {
	m.mu.Lock()
	done := e.done
	m.mu.Unlock()
	select {
	case e.restarts <- rq:
	case <-done:
		return nil, fmt.Errorf("pod %s: not restarted, it is being deleted", e.name)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case ctrs := <-rq.reply:
		return ctrs, nil
	case <-done:
		return nil, fmt.Errorf("pod %s: not restarted, it is being deleted", e.name)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// handleRestart recreates the running containers that use rq's secret
// with another checksum: SIGTERM, SIGKILL after the grace period, then
// removal; the next sync creates them afresh (not a crash: no back-off).
func (w *worker) handleRestart(ctx context.Context, rq restartRequest) {
	var stale []*ctr
	var names []string
	for _, c := range w.ctrs {
		if c.done || c.task == nil || !slices.Contains(c.secretRefs, rq.ref) || c.secretSums[rq.ref] == rq.sum {
			continue
		}
		stale = append(stale, c)
		names = append(names, c.spec.GetName())
	}
	w.stopForRestart(ctx, stale, rq.why)
	if len(stale) > 0 {
		w.commit(ctx) // the stop is visible before the new run
	}
	rq.reply <- names
}

func (w *worker) stopForRestart(ctx context.Context, cs []*ctr, why string) {
	if len(cs) == 0 {
		return
	}
	grace := time.Duration(w.e.spec.GetTerminationGracePeriodSeconds()) * time.Second
	for _, c := range cs {
		w.stopProbes(c)
		c.gen++ // this exit is no crash: drop its event
		if err := c.task.Kill(ctx, syscall.SIGTERM); err != nil {
			w.log.Warn("restart: SIGTERM", "container", c.spec.GetName(), "err", err)
		}
	}
	deadline := time.Now().Add(grace)
	codes := make([]uint32, len(cs))
	for i, c := range cs {
		code, ok := waitStopped(ctx, c.task, deadline)
		if !ok && ctx.Err() == nil {
			w.log.Info("restart: grace period over, killing", "container", c.spec.GetName())
			_ = c.task.Kill(ctx, syscall.SIGKILL)
			code, _ = waitStopped(ctx, c.task, time.Now().Add(killTimeout))
		}
		codes[i] = code
	}
	for i, c := range cs {
		if _, err := c.task.Delete(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("restart: delete task", "container", c.spec.GetName(), "err", err)
		}
		if err := w.m.rt.RemoveContainer(ctx, c.id); err != nil && ctx.Err() == nil {
			w.log.Warn("restart: remove container", "container", c.spec.GetName(), "err", err)
		}
		c.task = nil
		c.probeKill, c.killAt = "", time.Time{}
		c.restart.RunNow()
		st := c.st
		code := int32(codes[i])
		st.LastExitCode = &code
		st.FinishedAt = timestamppb.Now()
		w.setWaiting(c, ReasonContainerCreating, "restarting: "+why, time.Time{})
	}
	w.updatePhase()
}

// waitStopped polls t until it stopped (or is gone) or until deadline.
// It looks at least once, even past the deadline: a task that stopped
// meanwhile (a pod's containers are waited for one after another) needs no
// SIGKILL. The look itself is bounded by ctx alone, for the same reason.
func waitStopped(ctx context.Context, t *runtime.Task, deadline time.Time) (code uint32, stopped bool) {
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Until(deadline), true, func(context.Context) (bool, error) {
		ts, err := t.Status(ctx)
		switch {
		case errors.Is(err, runtime.ErrNotFound):
			code, stopped = 0, true
		case err == nil && ts.State == "stopped":
			code, stopped = ts.ExitCode, true
		}
		return stopped, nil
	})
	return code, stopped
}
