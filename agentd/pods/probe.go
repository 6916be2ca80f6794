package pods

// Container probes, as the kubelet runs them. Every probe of a running
// container has a goroutine of its own; it only probes and counts, and
// sends a result to the worker loop when the outcome changes. The worker
// alone writes the status (ready, started) and acts on failures (kills
// the container, which then goes through the ordinary restart path).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Prefixes of the messages of failed probes.
const (
	msgReadinessFailed = "Readiness probe failed: "
	msgLivenessFailed  = "Liveness probe failed: "
	msgStartupFailed   = "Startup probe failed: "
)

// maxProbeMessage caps what a probe's output adds to a status message.
const maxProbeMessage = 1024

// probeUserAgent is what HTTP probes send, like the kubelet's kube-probe.
const probeUserAgent = "herd-probe/1"

// probeOutcome is a probe's current verdict.
type probeOutcome int

const (
	outcomeUnknown probeOutcome = iota
	outcomeSuccess
	outcomeFailure
)

// probeCounter counts consecutive results against a probe's thresholds.
type probeCounter struct {
	successes, failures int32
	outcome             probeOutcome
}

// observe records one result and reports whether the outcome changed:
// success after success_threshold consecutive successes, failure after
// failure_threshold consecutive failures.
func (pc *probeCounter) observe(ok bool, t spec.ProbeTimings) bool {
	if ok {
		pc.successes++
		pc.failures = 0
		if pc.outcome != outcomeSuccess && pc.successes >= t.SuccessThreshold {
			pc.outcome = outcomeSuccess
			return true
		}
		return false
	}
	pc.failures++
	pc.successes = 0
	if pc.outcome != outcomeFailure && pc.failures >= t.FailureThreshold {
		pc.outcome = outcomeFailure
		return true
	}
	return false
}

// probeSet is the probing of one run of a container.
type probeSet struct {
	cancel context.CancelFunc
	// started is closed once the startup probe succeeded (at once without
	// one): readiness and liveness wait for it, as in the kubelet.
	started chan struct{}
}

// probeEvent carries a probe's changed outcome to the worker loop.
type probeEvent struct {
	idx  int
	set  *probeSet // drops events of an earlier run
	kind string    // spec.ReadinessProbe, spec.LivenessProbe, spec.StartupProbe
	ok   bool
	msg  string
}

// execer runs a command in a container (runtime.Runtime.Exec).
type execer interface {
	Exec(ctx context.Context, id string, argv []string, timeout time.Duration) (runtime.ExecResult, error)
}

// probeTarget is what a probe goroutine needs of its container: copies,
// so that it never reads the worker's state.
type probeTarget struct {
	id        string
	pid       uint32 // the task's init process, for its network namespace
	podIP     string // "": dial 127.0.0.1 inside the container's namespace
	ports     []*herdv1.ContainerPort
	startedAt time.Time
	exec      execer
}

// hasProbes reports whether a container has any probe.
func hasProbes(cs *herdv1.ContainerSpec) bool {
	return cs.GetReadinessProbe() != nil || cs.GetLivenessProbe() != nil || cs.GetStartupProbe() != nil
}

// startProbes starts the probes of c's current run. The container's
// started and ready fields must already be set for that run.
func (w *worker) startProbes(ctx context.Context, c *ctr) {
	w.stopProbes(c)
	cs := c.spec
	if !hasProbes(cs) {
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	set := &probeSet{cancel: cancel, started: make(chan struct{})}
	if c.st.GetStarted() {
		close(set.started)
	}
	c.probes = set
	t := probeTarget{
		id:        c.id,
		pid:       c.st.GetPid(),
		podIP:     w.pod.Status.GetPodIp(),
		ports:     cs.GetPorts(),
		startedAt: c.st.GetStartedAt().AsTime(),
		exec:      w.m.rt,
	}
	log := w.log.With("container", cs.GetName())
	run := func(kind string, p *herdv1.Probe, initial probeOutcome) {
		w.waiters.Add(1)
		go func() {
			defer w.waiters.Done()
			runProbe(pctx, probeLoop{set: set, idx: c.idx, kind: kind, probe: p, target: t, initial: initial, events: w.probes, log: log})
		}()
	}
	if p := cs.GetStartupProbe(); p != nil && !c.st.GetStarted() {
		run(spec.StartupProbe, p, outcomeUnknown)
	}
	if p := cs.GetReadinessProbe(); p != nil {
		initial := outcomeUnknown
		if c.st.GetReady() {
			initial = outcomeSuccess // re-adopted ready: stay so until it fails
		}
		run(spec.ReadinessProbe, p, initial)
	}
	if p := cs.GetLivenessProbe(); p != nil {
		run(spec.LivenessProbe, p, outcomeUnknown)
	}
}

// stopProbes ends the probing of c's run, if any.
func (w *worker) stopProbes(c *ctr) {
	if c.probes != nil {
		c.probes.cancel()
		c.probes = nil
	}
}

// handleProbe applies a probe's changed outcome to the container.
func (w *worker) handleProbe(ctx context.Context, ev probeEvent) {
	c := w.ctrs[ev.idx]
	if c.probes != ev.set || c.task == nil {
		return
	}
	st := c.st
	switch ev.kind {
	case spec.ReadinessProbe:
		st.Ready = ev.ok
		switch {
		case ev.ok && strings.HasPrefix(st.Message, msgReadinessFailed):
			st.Message = ""
		case !ev.ok:
			st.Message = msgReadinessFailed + ev.msg
		}
		w.log.Info("readiness changed", "container", c.spec.GetName(), "ready", ev.ok, "probe", ev.msg)
	case spec.StartupProbe:
		if !ev.ok {
			w.probeKill(ctx, c, msgStartupFailed+ev.msg)
			return
		}
		st.Started = true
		if c.spec.GetReadinessProbe() == nil {
			st.Ready = true
		}
		w.log.Info("startup probe succeeded", "container", c.spec.GetName())
	case spec.LivenessProbe:
		if !ev.ok {
			w.probeKill(ctx, c, msgLivenessFailed+ev.msg)
		}
	}
}

// probeKill stops a container whose liveness or startup probe failed: like
// a deletion, SIGTERM first and SIGKILL after the grace period (see sync).
// Its exit then counts as a crash and restarts it with back-off.
func (w *worker) probeKill(ctx context.Context, c *ctr, msg string) {
	w.log.Warn(msg, "container", c.spec.GetName())
	w.stopProbes(c)
	c.probeKill = msg
	c.st.Message = msg
	c.st.Ready = false
	grace := time.Duration(w.e.spec.GetTerminationGracePeriodSeconds()) * time.Second
	if grace > 0 {
		if err := c.task.Kill(ctx, syscall.SIGTERM); err != nil {
			w.log.Warn("stop container after failed probe", "container", c.spec.GetName(), "err", err)
		}
	}
	c.killAt = time.Now().Add(grace)
}

// escalateKill SIGKILLs a container whose grace period after a failed
// probe is over, and returns when to look again (zero: not needed).
func (w *worker) escalateKill(ctx context.Context, c *ctr, now time.Time) time.Time {
	if c.killAt.IsZero() || c.task == nil {
		return time.Time{}
	}
	if now.Before(c.killAt) {
		return c.killAt
	}
	if err := c.task.Kill(ctx, syscall.SIGKILL); err != nil {
		w.log.Warn("kill container after failed probe", "container", c.spec.GetName(), "err", err)
		c.killAt = now.Add(retryInterval)
		return c.killAt
	}
	c.killAt = time.Time{}
	return time.Time{}
}

// probeLoop is one probe goroutine's configuration.
type probeLoop struct {
	set     *probeSet
	idx     int
	kind    string
	probe   *herdv1.Probe
	target  probeTarget
	initial probeOutcome
	events  chan<- probeEvent
	log     *slog.Logger
}

// runProbe probes every period until ctx ends. Readiness and liveness wait
// for the startup probe; all wait for the initial delay, counted from the
// container's start. A startup probe ends with its verdict, a liveness
// probe with a failure (the container is killed).
func runProbe(ctx context.Context, l probeLoop) {
	t := spec.Timings(l.probe)
	if l.kind != spec.StartupProbe {
		select {
		case <-l.set.started:
		case <-ctx.Done():
			return
		}
	}
	if !sleepCtx(ctx, time.Until(l.target.startedAt.Add(seconds(t.InitialDelaySeconds)))) {
		return
	}
	counter := probeCounter{outcome: l.initial}
	for {
		ok, msg := l.target.check(ctx, l.probe, seconds(t.TimeoutSeconds))
		if ctx.Err() != nil {
			return
		}
		if !ok {
			l.log.Debug("probe failed", "probe", l.kind, "result", msg)
		}
		if counter.observe(ok, t) && (l.kind != spec.LivenessProbe || !ok) {
			select {
			case l.events <- probeEvent{idx: l.idx, set: l.set, kind: l.kind, ok: ok, msg: msg}:
			case <-ctx.Done():
				return
			}
			if l.kind == spec.StartupProbe {
				if ok {
					close(l.set.started)
				}
				return
			}
			if l.kind == spec.LivenessProbe {
				return
			}
		}
		if !sleepCtx(ctx, seconds(t.PeriodSeconds)) {
			return
		}
	}
}

func seconds(n int32) time.Duration { return time.Duration(n) * time.Second }

// sleepCtx waits for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// check runs the probe once: success, or a message saying why not.
func (t probeTarget) check(ctx context.Context, p *herdv1.Probe, timeout time.Duration) (bool, string) {
	switch {
	case p.GetExec() != nil:
		return t.checkExec(ctx, p.GetExec().GetCommand(), timeout)
	case p.GetTcpSocket() != nil:
		a := p.GetTcpSocket()
		return t.checkTCP(ctx, spec.ProbePort(a.GetPort(), a.GetPortName(), t.ports), timeout)
	case p.GetHttpGet() != nil:
		a := p.GetHttpGet()
		return t.checkHTTP(ctx, a.GetPath(), spec.ProbePort(a.GetPort(), a.GetPortName(), t.ports), timeout)
	}
	return false, "the probe has no handler"
}

func (t probeTarget) checkExec(ctx context.Context, argv []string, timeout time.Duration) (bool, string) {
	res, err := t.exec.Exec(ctx, t.id, argv, timeout)
	if errors.Is(err, runtime.ErrExecTimeout) {
		return false, fmt.Sprintf("command %q timed out after %s", argv, timeout)
	}
	if err != nil {
		return false, err.Error()
	}
	out := clip(strings.TrimSpace(string(res.Output)))
	if res.Code != 0 {
		if out == "" {
			return false, fmt.Sprintf("command %q exited with code %d", argv, res.Code)
		}
		return false, fmt.Sprintf("command %q exited with code %d: %s", argv, res.Code, out)
	}
	return true, out
}

func (t probeTarget) checkTCP(ctx context.Context, port int32, timeout time.Duration) (bool, string) {
	conn, err := t.dial(ctx, port, timeout)
	if err != nil {
		return false, err.Error()
	}
	_ = conn.Close()
	return true, ""
}

func (t probeTarget) checkHTTP(ctx context.Context, path string, port int32, timeout time.Duration) (bool, string) {
	if path == "" {
		path = "/"
	}
	host := t.podIP
	if host == "" {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + path
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil, // never through a proxy of agentd's environment
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return t.dial(ctx, port, timeout)
			},
		},
		// A redirect is an answer: 3xx counts as success, as in the
		// kubelet for redirects off the pod.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, fmt.Sprintf("build request for %s: %v", url, err)
	}
	req.Header.Set("User-Agent", probeUserAgent)
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeMessage))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		msg := fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		if b := clip(strings.TrimSpace(string(body))); b != "" {
			msg += ": " + b
		}
		return false, msg
	}
	return true, ""
}

// dial connects to port of the pod: at its IP when it has one, otherwise
// at 127.0.0.1 inside the container's own network namespace.
func (t probeTarget) dial(ctx context.Context, port int32, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if t.podIP != "" {
		return d.DialContext(ctx, "tcp", net.JoinHostPort(t.podIP, strconv.Itoa(int(port))))
	}
	if t.pid == 0 {
		return nil, fmt.Errorf("dial port %d: the container has no process", port)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	return dialInNetns(ctx, fmt.Sprintf("/proc/%d/ns/net", t.pid), addr, d)
}

// dialInNetns dials addr from the network namespace at nsPath. The socket
// is created on a dedicated OS thread that joined the namespace (a socket
// stays in the namespace it was created in); the thread then goes back to
// its own namespace and is unlocked. Should it fail to go back, it stays
// locked and the Go runtime discards it when the goroutine ends, so the
// namespace never leaks into other goroutines.
func dialInNetns(ctx context.Context, nsPath, addr string, d net.Dialer) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		conn, restored, err := dialLocked(ctx, nsPath, addr, d)
		if restored {
			goruntime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// dialLocked does dialInNetns's work on the locked thread; restored says
// whether the thread is back in its original namespace.
func dialLocked(ctx context.Context, nsPath, addr string, d net.Dialer) (conn net.Conn, restored bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return nil, true, fmt.Errorf("open current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, true, fmt.Errorf("open the container's network namespace: %w", err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, true, fmt.Errorf("enter the container's network namespace: %w", err)
	}
	conn, err = d.DialContext(ctx, "tcp", addr)
	if rerr := netns.Set(orig); rerr != nil {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, false, fmt.Errorf("return from the container's network namespace: %w", rerr)
	}
	return conn, true, err
}

// clip shortens probe output for a status message.
func clip(s string) string {
	if len(s) <= maxProbeMessage {
		return s
	}
	return strings.ToValidUTF8(s[:maxProbeMessage], "") + "…"
}
