package pods

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/agentd/api/herd/v1"
)

func TestZZHerdPhases(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	ctx := context.Background()
	zero := time.Duration(0)
	m.Apply(ctx, e.pod("warm", "", "sleep", "3600"))
	m.WaitFor(ctx, "warm", allRunning)
	m.Delete(ctx, "warm", &zero)
	var ta, tr time.Duration
	n := 20
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("b-%d", i)
		t0 := time.Now()
		m.Apply(ctx, e.pod(name, "", "sleep", "3600"))
		t1 := time.Now()
		m.WaitFor(ctx, name, allRunning)
		t2 := time.Now()
		ta += t1.Sub(t0)
		tr += t2.Sub(t1)
		m.Delete(ctx, name, &zero)
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("apply %s to-running %s", ta/time.Duration(n), tr/time.Duration(n))
	t0 := time.Now()
	for i := 0; i < 20; i++ {
		e.rt.CheckAvailable(ctx, "herd-x-y")
	}
	t.Logf("CheckAvailable %s", time.Since(t0)/20)
	t0 = time.Now()
	for i := 0; i < 20; i++ {
		e.rt.EnsureImage(ctx, e.ref)
	}
	t.Logf("EnsureImage %s", time.Since(t0)/20)
	p, _ := m.Get(ctx, "b-0")
	_ = p
	t0 = time.Now()
	pod, _ := e.st.GetPod("b-1")
	_ = pod
	for i := 0; i < 20; i++ {
		pod := testPodProto(fmt.Sprintf("p%d", i))
		e.st.PutPod(pod)
	}
	t.Logf("PutPod %s", time.Since(t0)/20)
}

func testPodProto(name string) *herdv1.Pod {
	return &herdv1.Pod{Spec: &herdv1.PodSpec{Name: name}}
}
