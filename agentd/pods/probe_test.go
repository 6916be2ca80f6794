package pods

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func TestProbeCounter(t *testing.T) {
	timings := spec.ProbeTimings{SuccessThreshold: 2, FailureThreshold: 3}
	tests := []struct {
		name    string
		initial probeOutcome
		results string // s: success, f: failure
		changes string // per result: '+' became success, '-' became failure, '.' unchanged
	}{
		{"successes need the threshold", outcomeUnknown, "sss", ".+."},
		{"failures need the threshold", outcomeUnknown, "fff", "..-"},
		{"a success resets the failure streak", outcomeUnknown, "ffsfff", ".....-"},
		{"a failure resets the success streak", outcomeFailure, "sfss", "...+"},
		{"flapping never decides", outcomeUnknown, "sfsfsf", "......"},
		{"ready until failure_threshold failures", outcomeSuccess, "ffsfff", ".....-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := probeCounter{outcome: tt.initial}
			var got strings.Builder
			for _, r := range tt.results {
				switch {
				case !pc.observe(r == 's', timings):
					got.WriteByte('.')
				case pc.outcome == outcomeSuccess:
					got.WriteByte('+')
				default:
					got.WriteByte('-')
				}
			}
			if got.String() != tt.changes {
				t.Fatalf("results %s: changes %s, want %s", tt.results, got.String(), tt.changes)
			}
		})
	}
}

type fakeExec struct {
	res runtime.ExecResult
	err error
}

func (f fakeExec) Exec(context.Context, string, []string, time.Duration) (runtime.ExecResult, error) {
	return f.res, f.err
}

// TestProbeHandlers checks each handler against the host, as for a pod
// with an IP (here 127.0.0.1).
func TestProbeHandlers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.UserAgent() != probeUserAgent {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/redirect":
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
		case "/slow":
			<-r.Context().Done() // until the probe gives up
		default:
			http.Error(w, "nothing here", http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	_, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port64, _ := strconv.Atoi(portStr)
	port := int32(port64)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := int32(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()

	target := probeTarget{podIP: "127.0.0.1", ports: []*herdv1.ContainerPort{{Name: "http", ContainerPort: port}}}
	tests := []struct {
		name    string
		probe   *herdv1.Probe
		exec    execer
		wantOK  bool
		wantMsg string
	}{
		{"http ok", &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/ok", Port: port}}, nil, true, ""},
		{"http by port name", &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/ok", PortName: "http"}}, nil, true, ""},
		{"http redirect is success", &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/redirect", Port: port}}, nil, true, ""},
		{"http 404", &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/nope", Port: port}}, nil, false, "statuscode: 404: nothing here"},
		{"http timeout", &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/slow", Port: port}}, nil, false, "Timeout"},
		{"http refused", &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Port: closedPort}}, nil, false, "refused"},
		{"tcp ok", &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{PortName: "http"}}, nil, true, ""},
		{"tcp refused", &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{Port: closedPort}}, nil, false, "refused"},
		{"exec ok", &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"true"}}}, fakeExec{}, true, ""},
		{"exec exit code", &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"check"}}},
			fakeExec{res: runtime.ExecResult{Code: 2, Output: []byte("not yet\n")}}, false, `command ["check"] exited with code 2: not yet`},
		{"exec timeout", &herdv1.Probe{Exec: &herdv1.ExecAction{Command: []string{"hang"}}},
			fakeExec{err: runtime.ErrExecTimeout}, false, "timed out after 1s"},
		{"no handler", &herdv1.Probe{}, nil, false, "no handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := target
			tg.exec = tt.exec
			ok, msg := tg.check(context.Background(), tt.probe, time.Second)
			if ok != tt.wantOK || !strings.Contains(msg, tt.wantMsg) {
				t.Fatalf("check = %v, %q; want %v, message containing %q", ok, msg, tt.wantOK, tt.wantMsg)
			}
		})
	}
}

// probePod is a one-container pod for probe tests: probes every second,
// a 1 s grace period so that kills after failed probes are quick.
func (e *env) probePod(name, script string, mutate func(*herdv1.ContainerSpec)) *herdv1.PodSpec {
	grace := int64(1)
	s := &herdv1.PodSpec{
		Name:                          name,
		TerminationGracePeriodSeconds: &grace,
		Containers:                    []*herdv1.ContainerSpec{{Name: "main", Image: e.ref, Command: []string{"sh", "-c", script}}},
	}
	if mutate != nil {
		mutate(s.Containers[0])
	}
	return s
}

func every(seconds, failures int32, p *herdv1.Probe) *herdv1.Probe {
	p.PeriodSeconds, p.FailureThreshold = &seconds, &failures
	return p
}

func execProbe(argv ...string) *herdv1.Probe {
	return &herdv1.Probe{Exec: &herdv1.ExecAction{Command: argv}}
}

// execIn runs argv in a container of a pod and fails the test unless it
// exits 0.
func execIn(tb testing.TB, m *Manager, pod, container string, argv ...string) {
	tb.Helper()
	res, err := m.rt.Exec(testContext(tb), runtime.ContainerID(pod, container), argv, 30*time.Second)
	if err != nil || res.Code != 0 {
		tb.Fatalf("exec %q in %s/%s: code %d, %v: %s", argv, pod, container, res.Code, err, res.Output)
	}
}

func containerIs(name string, cond func(*herdv1.ContainerStatus) bool) func(*herdv1.Pod) bool {
	return func(p *herdv1.Pod) bool {
		for _, cs := range p.GetStatus().GetContainers() {
			if cs.GetName() == name {
				return cond(cs)
			}
		}
		return false
	}
}

func runningUnready(cs *herdv1.ContainerStatus) bool {
	return cs.GetState() == StateRunning && !cs.GetReady()
}

func podReady(p *herdv1.Pod) bool { return p.GetStatus().GetReady() }

// TestReadinessExecProbe: readiness follows a file that another exec
// creates and removes; the pod is ready exactly when its container is.
func TestReadinessExecProbe(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	s := e.probePod("ready-exec", "exec sleep 300", func(c *herdv1.ContainerSpec) {
		c.ReadinessProbe = every(1, 1, execProbe("test", "-f", "/tmp/ready"))
	})
	if _, _, err := m.Apply(ctx, s); err != nil {
		t.Fatal(err)
	}
	pod := waitFor(t, m, s.Name, "running, not ready", containerIs("main", runningUnready))
	if cs := pod.Status.Containers[0]; !cs.GetStarted() || pod.Status.GetReady() {
		t.Fatalf("running without startup probe: started=%v, pod ready=%v; want started, pod not ready", cs.GetStarted(), pod.Status.GetReady())
	}
	execIn(t, m, s.Name, "main", "touch", "/tmp/ready")
	pod = waitFor(t, m, s.Name, "ready", podReady)
	if !pod.Status.Containers[0].GetReady() || pod.Status.Phase != PhaseRunning {
		t.Fatalf("pod ready but container ready=%v, phase %s", pod.Status.Containers[0].GetReady(), pod.Status.Phase)
	}
	execIn(t, m, s.Name, "main", "rm", "/tmp/ready")
	pod = waitFor(t, m, s.Name, "unready again", func(p *herdv1.Pod) bool { return !podReady(p) })
	cs := pod.Status.Containers[0]
	if cs.GetReady() || !strings.HasPrefix(cs.GetMessage(), msgReadinessFailed) || cs.GetRestartCount() != 0 {
		t.Fatalf("after rm: ready=%v message %q restarts %d; want unready with a readiness message, no restart", cs.GetReady(), cs.GetMessage(), cs.GetRestartCount())
	}
	// Deleting stops the probes with the worker (the test's leak check is
	// the worker's wait group: Delete returns after it).
	if _, err := m.Delete(ctx, s.Name, nil); err != nil {
		t.Fatal(err)
	}
}

// TestReadinessNetworkProbes: TCP and HTTP readiness probes reach servers
// that listen on 127.0.0.1 inside each container's own network namespace
// (no pod network), once the servers start.
func TestReadinessNetworkProbes(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	const gate = "until [ -f /tmp/go ]; do sleep 0.1; done; "
	grace := int64(1)
	s := &herdv1.PodSpec{
		Name:                          "ready-net",
		TerminationGracePeriodSeconds: &grace,
		Containers: []*herdv1.ContainerSpec{
			{Name: "tcp", Image: e.ref, Command: []string{"sh", "-c", gate + "exec nc -ll -p 8081 -e true"},
				Ports:          []*herdv1.ContainerPort{{Name: "echo", ContainerPort: 8081}},
				ReadinessProbe: every(1, 1, &herdv1.Probe{TcpSocket: &herdv1.TCPSocketAction{PortName: "echo"}})},
			{Name: "http", Image: e.ref, Command: []string{"sh", "-c", gate + "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"},
				ReadinessProbe: every(1, 1, &herdv1.Probe{HttpGet: &herdv1.HTTPGetAction{Path: "/healthz", Port: 8080}})},
		},
	}
	if _, _, err := m.Apply(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, s.Name, "running, not ready", func(p *herdv1.Pod) bool {
		return containerIs("tcp", runningUnready)(p) && containerIs("http", runningUnready)(p)
	})
	execIn(t, m, s.Name, "tcp", "touch", "/tmp/go")
	pod := waitFor(t, m, s.Name, "tcp ready", containerIs("tcp", func(cs *herdv1.ContainerStatus) bool { return cs.GetReady() }))
	if pod.Status.GetReady() {
		t.Fatal("pod ready while its http container is not")
	}
	execIn(t, m, s.Name, "http", "touch", "/tmp/go")
	waitFor(t, m, s.Name, "ready", podReady)
}

// TestLivenessProbeRestarts: a failing liveness probe kills the container
// (its main process ignores SIGTERM: SIGKILL after the grace period) and
// it restarts like after a crash; the status says why.
func TestLivenessProbeRestarts(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	s := e.probePod("live", "touch /tmp/alive; exec sleep 300", func(c *herdv1.ContainerSpec) {
		c.LivenessProbe = every(1, 2, execProbe("test", "-f", "/tmp/alive"))
	})
	if _, _, err := m.Apply(ctx, s); err != nil {
		t.Fatal(err)
	}
	pod := waitFor(t, m, s.Name, "ready", podReady)
	pid := pod.Status.Containers[0].GetPid()
	execIn(t, m, s.Name, "main", "rm", "/tmp/alive")
	// The grace period (1 s) keeps the message visible while the kill is
	// under way.
	pod = waitFor(t, m, s.Name, "liveness failure reported", containerIs("main", func(cs *herdv1.ContainerStatus) bool {
		return strings.HasPrefix(cs.GetMessage(), msgLivenessFailed) || cs.GetRestartCount() > 0
	}))
	if cs := pod.Status.Containers[0]; cs.GetRestartCount() == 0 && (cs.GetReady() || pod.Status.GetReady()) {
		t.Errorf("being killed for liveness but still ready: %v", cs)
	}
	pod = waitFor(t, m, s.Name, "restarted and ready", func(p *herdv1.Pod) bool {
		cs := p.Status.Containers[0]
		return cs.GetRestartCount() >= 1 && cs.GetState() == StateRunning && cs.GetReady()
	})
	cs := pod.Status.Containers[0]
	if cs.GetPid() == pid || cs.GetLastExitCode() != 137 {
		t.Fatalf("after the liveness kill: pid %d (was %d), last exit %d; want a new process and 137", cs.GetPid(), pid, cs.GetLastExitCode())
	}
}

// TestStartupProbe: the startup probe holds readiness (and the readiness
// probe) back until it succeeds; one that keeps failing restarts the
// container.
func TestStartupProbe(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := testContext(t)
	gated := e.probePod("startup", "exec sleep 300", func(c *herdv1.ContainerSpec) {
		c.StartupProbe = every(1, 600, execProbe("test", "-f", "/tmp/started"))
		c.ReadinessProbe = every(1, 1, execProbe("true"))
		c.LivenessProbe = every(1, 1, execProbe("test", "-f", "/tmp/started"))
	})
	failing := e.probePod("startup-fails", "exec sleep 300", func(c *herdv1.ContainerSpec) {
		c.StartupProbe = every(1, 2, execProbe("false"))
	})
	for _, s := range []*herdv1.PodSpec{gated, failing} {
		if _, _, err := m.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// The liveness probe would kill the container at once if it ran
	// before the startup probe passed; the readiness probe would make it
	// ready.
	pod := waitFor(t, m, gated.Name, "running", allRunning)
	if cs := pod.Status.Containers[0]; cs.GetStarted() || cs.GetReady() {
		t.Fatalf("started=%v ready=%v before the startup probe passed", cs.GetStarted(), cs.GetReady())
	}
	// A probe cycle of the failing pod passes meanwhile: the gated one
	// must still be held back, with no restart.
	fp := waitFor(t, m, failing.Name, "restarted after its startup probe failed", func(p *herdv1.Pod) bool {
		return p.Status.Containers[0].GetRestartCount() >= 1
	})
	if code := fp.Status.Containers[0].GetLastExitCode(); code != 137 {
		t.Errorf("container restarted after a failed startup probe: last exit %d, want 137 (killed)", code)
	}
	pod, err := m.Get(ctx, gated.Name)
	if err != nil {
		t.Fatal(err)
	}
	if cs := pod.Status.Containers[0]; cs.GetStarted() || cs.GetReady() || cs.GetRestartCount() != 0 {
		t.Fatalf("gated container: started=%v ready=%v restarts %d; want held back, no restart", cs.GetStarted(), cs.GetReady(), cs.GetRestartCount())
	}
	execIn(t, m, gated.Name, "main", "touch", "/tmp/started")
	pod = waitFor(t, m, gated.Name, "started and ready", podReady)
	if cs := pod.Status.Containers[0]; !cs.GetStarted() || cs.GetRestartCount() != 0 {
		t.Fatalf("started=%v restarts %d; want started without restart", cs.GetStarted(), cs.GetRestartCount())
	}
}
