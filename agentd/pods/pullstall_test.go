package pods

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// silentRegistry accepts connections and never answers. It returns its
// host:port and the count of connections it accepted.
func silentRegistry(t *testing.T) (string, func() int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), accepted.Load
}

// A pod whose registry never answers reports the stall in its status and
// retries; a pod on an image that is present starts meanwhile.
func TestImagePullStallDoesNotBlockOtherPods(t *testing.T) {
	e := newEnv(t)
	host, accepted := silentRegistry(t)
	cfg := e.runtimeConfig()
	cfg.Registry.Insecure = append(cfg.Registry.Insecure, host)
	cfg.PullStallTimeout = 2 * time.Second
	e.rt = e.newRuntime(t, cfg)
	ctx := testContext(t)
	if _, _, err := e.rt.EnsureImage(ctx, e.ref); err != nil {
		t.Fatal(err)
	}
	m := e.manager(t)

	ref := host + "/stall/img:1"
	stalled := &herdv1.PodSpec{Name: "stalled", Containers: []*herdv1.ContainerSpec{{Name: "main", Image: ref, Command: []string{"true"}}}}
	if _, _, err := m.Apply(ctx, stalled); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stalled pod's pull reached its registry", func() bool { return accepted() > 0 })

	if _, _, err := m.Apply(ctx, e.pod("ok", "", "sh", "-c", "echo ready; sleep 3600")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "ok", "running", allRunning)
	eventually(t, "the ok pod wrote its output", func() bool { return strings.Contains(logs(t, m, "ok", "main", 0), "ready") })

	// The second failure is a back-off: the pull was retried.
	pod := waitFor(t, m, "stalled", "in image pull back-off", func(p *herdv1.Pod) bool {
		cs := p.GetStatus().GetContainers()
		return len(cs) == 1 && cs[0].GetReason() == ReasonImagePullBackOff
	})
	cs := pod.GetStatus().GetContainers()[0]
	for _, want := range []string{"image pull stalled: no progress for 2s from " + host, "(pulling " + ref + ")", "retrying in"} {
		if !strings.Contains(cs.GetMessage(), want) {
			t.Errorf("container message %q does not say %q", cs.GetMessage(), want)
		}
	}
	eventually(t, "the retry reached the registry again", func() bool { return accepted() > 1 })
}
