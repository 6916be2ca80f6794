package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// drainPod runs the webapp (image: Env.WebappImage), which answers "0
// <pod name>" on 8080. On SIGTERM it first reports "TERM" to report
// (IP:PORT), so that the test learns when the signal came, then passes the
// signal on: the webapp stops listening, finishes the requests in flight
// and exits, as a well-behaved server does.
func drainPod(image, name, report string) *herdv1.PodSpec {
	host, port, _ := net.SplitHostPort(report)
	return &herdv1.PodSpec{
		Name:   name,
		Labels: map[string]string{"app": "drain"},
		Containers: []*herdv1.ContainerSpec{{
			Name:  "main",
			Image: image,
			Command: []string{"sh", "-c", acctest.WebappPath + " & pid=$!; " +
				fmt.Sprintf("trap 'echo TERM | nc -w 2 %s %s; kill -TERM $pid; wait $pid; exit 0' TERM; ", host, port) +
				"while true; do sleep 1 & wait $!; done"},
			Ports: []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}},
	}
}

// backendsHold reports whether the node's service backends map (its nft
// rules) still routes to ip.
func backendsHold(n *acctest.ClusterNode, ip string) (bool, error) {
	out, err := n.Lab.Command("nft", "list", "map", "ip", "herd", "backends").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("%s: list backends: %v: %s", n.Agent.Name, err, out)
	}
	// elements are "VIP . proto . port . slot : IP . PORT"
	return strings.Contains(string(out), ": "+ip+" . "), nil
}

// TestDeleteDrainsBeforeSIGTERM: a deleted pod behind a service leaves the
// rules of every member before it gets SIGTERM — seen by polling every
// node's nft backends until the pod's IP is gone everywhere, and by the
// pod's report of SIGTERM, which must not come while any node still routes
// to it; DeletePod reports all three members drained; requests to the VIP
// from every node keep being answered (by the other pod) throughout.
// skip_drain deletes without asking anyone. PeerService refuses the admin
// client certificate the tests use.
func TestDeleteDrainsBeforeSIGTERM(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       []string{"dr-a", "dr-b", "dr-c"},
		Subnet:      netip.MustParsePrefix("10.86.0.0/24"),
		ServiceCIDR: netip.MustParsePrefix("10.98.0.0/16"),
	})
	ctx := context.Background()
	a, b := c.Nodes[0], c.Nodes[1]
	image, err := env.WebappImage(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// SIGTERM reports arrive here, on dr-a's address.
	lis, err := a.Lab.Listen("tcp", a.Lab.IP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var termed atomic.Bool
	termAt := make(chan time.Time, 1)
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.TrimSpace(line) == "TERM" && !termed.Swap(true) {
				termAt <- time.Now()
			}
		}
	}()

	if _, err := a.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: drainPod(image, "leaving", lis.Addr().String())}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: drainPod(image, "staying", lis.Addr().String())}); err != nil {
		t.Fatal(err)
	}
	leavingIP := waitPodRunning(t, a, "leaving").GetStatus().GetPodIp()
	waitPodRunning(t, b, "staying")
	resp, err := b.Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "drain", Selector: map[string]string{"app": "drain"}, Ports: []*herdv1.ServicePort{{Port: 80, TargetPort: 8080}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	url := resp.GetService().GetStatus().GetClusterIp() + ":80"

	// Every node routes to both pods before the deletion.
	for _, n := range c.Nodes {
		all := map[string]int{}
		waitFor(t, 60*time.Second, "VIP from "+n.Agent.Name+" reaches both pods", func() (bool, string) {
			for k, v := range seen(n.Lab.Path(), url, 10) {
				all[k] += v
			}
			return all["0 leaving"] > 0 && all["0 staying"] > 0, fmt.Sprint(all)
		})
	}

	// Requests from every node, on new connections, until the pod is gone.
	stop := make(chan struct{})
	var loops sync.WaitGroup
	var (
		mu       sync.Mutex
		failures []string
		answers  = map[string]int{}
	)
	for _, n := range c.Nodes {
		loops.Add(1)
		go func() {
			defer loops.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, err := get(n.Lab.Path(), url)
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("%s at %s: %v", n.Agent.Name, time.Now().Format("15:04:05.000"), err))
				} else {
					answers[body]++
				}
				mu.Unlock()
			}
		}()
	}

	// Watch the rules of every node: the order of what is seen is the
	// assertion. termed is read before the rules, so a node still routing
	// to the pod after the report is a SIGTERM sent before that node had
	// dropped it.
	type sample struct {
		termed bool
		hold   []string // nodes whose rules still route to the pod
	}
	watchDone := make(chan []sample, 1)
	firstSample := make(chan struct{})
	go func() {
		var samples []sample
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			s := sample{termed: termed.Load()}
			var wg sync.WaitGroup
			var smu sync.Mutex
			for _, n := range c.Nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hold, err := backendsHold(n, leavingIP)
					if err != nil || hold {
						smu.Lock()
						s.hold = append(s.hold, n.Agent.Name)
						smu.Unlock()
					}
				}()
			}
			wg.Wait()
			slices.Sort(s.hold)
			samples = append(samples, s)
			if len(samples) == 1 {
				close(firstSample)
			}
			if s.termed {
				break
			}
		}
		watchDone <- samples
	}()

	<-firstSample // the rules as they were before
	start := time.Now()
	dresp, err := a.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "leaving"})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	deleted := time.Now()
	samples := <-watchDone
	close(stop)
	loops.Wait()

	if got, want := dresp.GetDrainedMembers(), []string{"dr-a", "dr-b", "dr-c"}; !slices.Equal(got, want) || len(dresp.GetDrainTimedOut()) != 0 {
		t.Errorf("drained %v, timed out %v; want drained %v", got, dresp.GetDrainTimedOut(), want)
	}
	if !termed.Load() {
		t.Fatal("the pod never reported SIGTERM")
	}
	if len(samples[0].hold) != 3 {
		t.Fatalf("before the deletion, only %v routed to %s", samples[0].hold, leavingIP)
	}
	sawGone := false
	for i, s := range samples {
		if len(s.hold) == 0 && !s.termed {
			sawGone = true
		}
		if s.termed && len(s.hold) > 0 {
			t.Errorf("sample %d of %d: SIGTERM reported while %v still routed to %s", i+1, len(samples), s.hold, leavingIP)
		}
	}
	t.Logf("%d samples of the rules (seen gone everywhere before SIGTERM: %v); SIGTERM %v after the delete began, delete returned after %v",
		len(samples), sawGone, (<-termAt).Sub(start), deleted.Sub(start))
	mu.Lock()
	t.Logf("answers during the deletion: %v", answers)
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the deletion (first: %s)", len(failures), failures[0])
	}
	if answers["0 staying"] == 0 {
		t.Error("no request was answered by the staying pod during the deletion")
	}
	mu.Unlock()

	// skip_drain: nobody is asked.
	if _, err := b.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: drainPod(image, "quick", lis.Addr().String())}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, b, "quick")
	zero := int64(0)
	qresp, err := b.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "quick", SkipDrain: true, GracePeriodSeconds: &zero})
	if err != nil {
		t.Fatalf("delete with skip_drain: %v", err)
	}
	if !qresp.GetExisted() || len(qresp.GetDrainedMembers()) != 0 || len(qresp.GetDrainTimedOut()) != 0 {
		t.Errorf("skip_drain: %v, want existed and no members", qresp)
	}
	if _, err := b.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "quick"}); status.Code(err) != codes.NotFound {
		t.Errorf("after a skip_drain delete: GetPod = %v, want NotFound", err)
	}

	// A member that cannot answer (its agentd stopped) is reported as not
	// confirmed once the drain bound passes, and the pod is deleted anyway.
	if _, err := a.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: drainPod(image, "late", lis.Addr().String())}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, a, "late")
	for _, n := range c.Nodes {
		waitFor(t, 30*time.Second, n.Agent.Name+" routes to late", func() (bool, string) {
			p, _ := a.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "late"})
			hold, err := backendsHold(n, p.GetStatus().GetPodIp())
			return hold && err == nil, fmt.Sprint(err)
		})
	}
	stopped := c.Nodes[2].Agent
	if err := syscall.Kill(stopped.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	lresp, err := a.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "late", DrainTimeoutMs: 1500, GracePeriodSeconds: &zero})
	if cerr := syscall.Kill(stopped.PID(), syscall.SIGCONT); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatalf("delete with a stopped member: %v", err)
	}
	if !slices.Equal(lresp.GetDrainedMembers(), []string{"dr-a", "dr-b"}) || !slices.Equal(lresp.GetDrainTimedOut(), []string{"dr-c"}) {
		t.Errorf("with dr-c stopped: drained %v, timed out %v; want [dr-a dr-b], [dr-c]", lresp.GetDrainedMembers(), lresp.GetDrainTimedOut())
	}
	if _, err := a.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "late"}); status.Code(err) != codes.NotFound {
		t.Errorf("after a drain that timed out: GetPod = %v, want NotFound", err)
	}

	// PeerService is for members: the tests' admin client certificate is
	// refused.
	_, err = herdv1.NewPeerServiceClient(a.Conn).WaitEndpointsApplied(ctx, &herdv1.WaitEndpointsAppliedRequest{Owner: "dr-a", Pod: "leaving", Seq: 1})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("PeerService with an admin certificate: %v, want PermissionDenied", err)
	}
}
