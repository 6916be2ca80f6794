package agent_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodeinfo "github.com/herd-project/terraform-provider-herd/agentd/node"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// TestQoSAndOOMScore runs a Guaranteed, a Burstable and a BestEffort pod
// and reads, on the host, the oom_score_adj the kernel holds for each
// container's process: the kubelet's values for the class (raised to
// agentd's own value where it may not lower it: without
// CAP_SYS_RESOURCE, Guaranteed cannot get -997).
func TestQoSAndOOMScore(t *testing.T) {
	floor, err := nodeinfo.OOMScoreAdjFloor() // agentd runs as this process does
	if err != nil {
		t.Fatal(err)
	}
	if floor > -997 {
		t.Logf("no CAP_SYS_RESOURCE here: oom_score_adj stays at least %d", floor)
	}
	n := startNode(t, "qos")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nd, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatalf("GetNode: %v", err)
	}
	memCapacity := nd.GetCapacity().GetMemoryBytes()

	withResources := func(name string, set func(c *herdv1.ContainerSpec)) *herdv1.PodSpec {
		s := n.pod(name, "trap 'exit 0' TERM; while true; do sleep 1; done")
		set(s.Containers[0])
		return s
	}
	tests := []struct {
		pod   *herdv1.PodSpec
		class string
		adj   int
	}{
		{withResources("guaranteed", func(c *herdv1.ContainerSpec) { c.Cpu, c.Memory = "100m", "64Mi" }), spec.QoSGuaranteed, max(-997, floor)},
		{withResources("burstable", func(c *herdv1.ContainerSpec) { c.Memory, c.MemoryRequest = "256Mi", "32Mi" }), spec.QoSBurstable,
			max(spec.OOMScoreAdj(spec.QoSBurstable, 32<<20, memCapacity), floor)},
		{withResources("besteffort", func(*herdv1.ContainerSpec) {}), spec.QoSBestEffort, 1000},
	}
	for _, tt := range tests {
		n.apply(t, tt.pod)
	}
	for _, tt := range tests {
		p := n.waitRunning(t, tt.pod.GetName())
		cs := p.GetStatus().GetContainers()[0]
		if got := p.GetStatus().GetQosClass(); got != tt.class {
			t.Errorf("pod %s: qos_class %q, want %q", tt.pod.GetName(), got, tt.class)
		}
		if cs.GetQosClass() != tt.class || int(cs.GetOomScoreAdj()) != tt.adj {
			t.Errorf("pod %s: container status qos_class %q oom_score_adj %d, want %q %d", tt.pod.GetName(), cs.GetQosClass(), cs.GetOomScoreAdj(), tt.class, tt.adj)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", cs.GetPid()))
		if err != nil {
			t.Fatalf("pod %s: %v", tt.pod.GetName(), err)
		}
		if got, _ := strconv.Atoi(strings.TrimSpace(string(b))); got != tt.adj {
			t.Errorf("pod %s: /proc/%d/oom_score_adj = %d, want %d", tt.pod.GetName(), cs.GetPid(), got, tt.adj)
		}
		// No probes: ready once running, and since then.
		p = n.waitPod(t, tt.pod.GetName(), "ready", func(p *herdv1.Pod) bool { return p.GetStatus().GetReady() })
		if p.GetStatus().GetReadySince() == nil || p.GetStatus().GetTerminating() {
			t.Errorf("pod %s: ready with ready_since %v terminating %v, want a time and false", tt.pod.GetName(), p.GetStatus().GetReadySince(), p.GetStatus().GetTerminating())
		}
	}
}

// TestTerminatingPodStatus: while a deletion waits for a container that
// ignores SIGTERM, the pod reports terminating, not ready, no ready_since.
func TestTerminatingPodStatus(t *testing.T) {
	n := startNode(t, "term")
	n.apply(t, n.pod("stubborn", "trap '' TERM; while true; do sleep 1; done"))
	n.waitPod(t, "stubborn", "ready", func(p *herdv1.Pod) bool { return p.GetStatus().GetReadySince() != nil })
	done := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		grace := int64(30)
		_, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "stubborn", GracePeriodSeconds: &grace})
		done <- err == nil
	}()
	p := n.waitPod(t, "stubborn", "terminating", func(p *herdv1.Pod) bool { return p.GetStatus().GetTerminating() })
	if st := p.GetStatus(); st.GetReady() || st.GetReadySince() != nil {
		t.Errorf("terminating pod: ready %v ready_since %v, want false and unset", st.GetReady(), st.GetReadySince())
	}
	// Let the deletion finish at once.
	zero := int64(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "stubborn", GracePeriodSeconds: &zero}); err != nil {
		t.Logf("second delete: %v", err)
	}
	<-done
}

// TestAdmission: with 300Mi allocatable, of two pods requesting 200Mi
// applied at once exactly one is admitted; the other is refused with the
// numbers and leaves nothing behind. Pods without requests always fit.
func TestAdmission(t *testing.T) {
	total, err := nodeinfo.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	reserved := total.GetMemoryBytes() - 300<<20
	n := startNode(t, "adm", func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--reserved-memory", strconv.FormatInt(reserved, 10))
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := func(name string) *herdv1.PodSpec {
		s := n.pod(name, "while true; do sleep 1; done")
		s.Containers[0].MemoryRequest = "200Mi"
		return s
	}
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	for _, name := range []string{"big-a", "big-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: big(name)})
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	admitted, refused := "big-a", "big-b"
	if errs["big-a"] != nil {
		admitted, refused = refused, admitted
	}
	if errs[admitted] != nil {
		t.Fatalf("both refused: %v; %v", errs["big-a"], errs["big-b"])
	}
	err = errs[refused]
	wantCode(t, err, codes.FailedPrecondition,
		"pod "+refused+": requests memory 200Mi but adm has 100Mi free (allocatable 300Mi, requested 200Mi by 1 pod)")
	var reason string
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == herdv1.ErrorDomain {
			reason = ei.GetReason()
		}
	}
	if reason != herdv1.ReasonInsufficientResources {
		t.Errorf("ErrorInfo reason %q, want %s", reason, herdv1.ReasonInsufficientResources)
	}

	// Applying the admitted pod again changes nothing and is no refusal.
	if resp := n.apply(t, big(admitted)); resp.GetCreated() {
		t.Errorf("re-apply of %s created it again", admitted)
	}
	// A pod without requests is never refused.
	n.apply(t, n.pod("small", "while true; do sleep 1; done"))

	list, err := n.local.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil {
		t.Fatalf("ListPods: %v", err)
	}
	var names []string
	for _, p := range list.GetPods() {
		names = append(names, p.GetSpec().GetName())
	}
	if strings.Join(names, ",") != admitted+",small" {
		t.Errorf("pods %v, want %s and small", names, admitted)
	}
	for _, id := range n.containerIDs(t) {
		if strings.Contains(id, refused) {
			t.Errorf("container %s of the refused pod exists", id)
		}
	}
	nd, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatalf("GetNode: %v", err)
	}
	if nd.GetRequested().GetMemoryBytes() != 200<<20 || nd.GetPods() != 2 || nd.GetAllocatable().GetMemoryBytes() != 300<<20 {
		t.Errorf("GetNode: requested %v, pods %d, allocatable %v; want 200Mi of memory, 2 pods, 300Mi", nd.GetRequested(), nd.GetPods(), nd.GetAllocatable())
	}
}
