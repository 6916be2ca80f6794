package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodeinfo "github.com/herd-project/terraform-provider-herd/agentd/node"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// termReports collects the SIGTERM reports of webDeployment's replicas: the
// pod's hostname (its name) and when the report arrived.
type termReports struct {
	addr string
	mu   sync.Mutex
	at   map[string]time.Time
}

func listenTerms(t *testing.T, n *acctest.ClusterNode) *termReports {
	t.Helper()
	lis, err := n.Lab.Listen("tcp", n.Lab.IP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	r := &termReports{addr: lis.Addr().String(), at: map[string]time.Time{}}
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			at := time.Now()
			if f := strings.Fields(line); len(f) == 2 && f[0] == "TERM" {
				r.mu.Lock()
				if _, seen := r.at[f[1]]; !seen {
					r.at[f[1]] = at
				}
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *termReports) get(pod string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.at[pod]
	return at, ok
}

// webDeployment is a deployment of the webapp (it answers "<revision>
// <pod name>"), ready on GET /ready, with a small memory request. With
// terms set, each replica reports "TERM <pod name>" to it when SIGTERM
// arrives, then passes the signal on.
func webDeployment(image, name, revision string, replicas int32, terms *termReports) *herdv1.DeploymentSpec {
	c := &herdv1.ContainerSpec{
		Name:   "web",
		Image:  image,
		Env:    map[string]string{"REVISION": revision},
		Memory: "64Mi",
		Ports:  []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &herdv1.Probe{
			HttpGet:       &herdv1.HTTPGetAction{Path: "/ready", Port: 8080},
			PeriodSeconds: ptr(int32(1)),
		},
	}
	if terms != nil {
		host, port, _ := net.SplitHostPort(terms.addr)
		c.Command = []string{"sh", "-c", acctest.WebappPath + " & pid=$!; " +
			fmt.Sprintf("trap 'echo TERM $(hostname) | nc -w 2 %s %s; kill -TERM $pid; wait $pid; exit 0' TERM; ", host, port) +
			"while true; do sleep 1 & wait $!; done"}
	}
	return &herdv1.DeploymentSpec{
		Name:     name,
		Replicas: replicas,
		Selector: map[string]string{"app": name},
		Template: &herdv1.PodSpec{
			Labels:     map[string]string{"app": name},
			Containers: []*herdv1.ContainerSpec{c},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// replica is one replica pod as its node reports it.
type replica struct {
	node string
	pod  *herdv1.Pod
}

func (r replica) revision() string { return r.pod.GetSpec().GetLabels()[spec.LabelRevision] }
func (r replica) ready() bool {
	return r.pod.GetStatus().GetReady() && !r.pod.GetStatus().GetTerminating()
}

// replicasOf lists the pods of deployment default/name on every node that
// answers, asked in parallel.
func replicasOf(c *acctest.TestCluster, name string) []replica {
	var (
		mu  sync.Mutex
		out []replica
		wg  sync.WaitGroup
	)
	sel := map[string]string{spec.LabelDeployment: spec.DeploymentLabel("default", name)}
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			list, err := n.Pods.ListPods(ctx, &herdv1.ListPodsRequest{LabelSelector: sel})
			if err != nil {
				return // a dead node
			}
			mu.Lock()
			for _, p := range list.GetPods() {
				out = append(out, replica{node: n.Agent.Name, pod: p})
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].pod.GetSpec().GetName() < out[j].pod.GetSpec().GetName() })
	return out
}

func perNode(rs []replica) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.node]++
	}
	return out
}

func uids(rs []replica) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.pod.GetUid())
	}
	sort.Strings(out)
	return out
}

// waitDeployment waits until the deployment, read through n, is in phase
// with want replicas ready on revision, and every node reports exactly
// those replicas, ready.
func waitDeployment(t *testing.T, c *acctest.TestCluster, n *acctest.ClusterNode, name, phase string, revision int64, want int) *herdv1.Deployment {
	t.Helper()
	var d *herdv1.Deployment
	waitFor(t, 3*time.Minute, fmt.Sprintf("%s: %s with %d ready at revision %d", name, phase, want, revision), func() (bool, string) {
		var err error
		d, err = n.Deployments.GetDeployment(context.Background(), &herdv1.GetDeploymentRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		st := d.GetStatus()
		if st.GetPhase() != phase || st.GetCurrentRevision() != revision || st.GetReadyReplicas() != int32(want) || st.GetUpdatedReplicas() != int32(want) {
			return false, fmt.Sprintf("phase %s %q, current %d, ready %d, updated %d", st.GetPhase(), st.GetMessage(), st.GetCurrentRevision(), st.GetReadyReplicas(), st.GetUpdatedReplicas())
		}
		rs := replicasOf(c, name)
		ok := len(rs) == want
		for _, r := range rs {
			ok = ok && r.ready() && r.revision() == fmt.Sprint(revision)
		}
		return ok, fmt.Sprintf("%d pods on the nodes: %v", len(rs), perNode(rs))
	})
	return d
}

// rolloutSample is what one look at the cluster during a rollout saw.
type rolloutSample struct {
	at       time.Time
	pods     int // not terminating
	ready    int // ready and not terminating
	routed   map[string]bool
	replicas []replica
}

// watchRollout samples, until stop, the replicas of every node and the IPs
// every node's nft backends route to.
func watchRollout(c *acctest.TestCluster, name string, stop <-chan struct{}) <-chan []rolloutSample {
	done := make(chan []rolloutSample, 1)
	go func() {
		var out []rolloutSample
		for {
			select {
			case <-stop:
				done <- out
				return
			default:
			}
			s := rolloutSample{at: time.Now(), routed: map[string]bool{}}
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, n := range c.Nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b, err := n.Lab.Command("nft", "list", "map", "ip", "herd", "backends").CombinedOutput()
					if err != nil {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					for _, line := range strings.Split(string(b), ",") {
						if _, after, ok := strings.Cut(line, ": "); ok {
							s.routed[strings.TrimSpace(strings.Split(after, " . ")[0])] = true
						}
					}
				}()
			}
			s.replicas = replicasOf(c, name)
			wg.Wait()
			for _, r := range s.replicas {
				if !r.pod.GetStatus().GetTerminating() {
					s.pods++
				}
				if r.ready() {
					s.ready++
				}
			}
			out = append(out, s)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return done
}

func newDeploymentCluster(t *testing.T, names []string, subnet, services string, mutate func(*acctest.AgentOptions)) (*acctest.TestCluster, string) {
	t.Helper()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       names,
		Subnet:      netip.MustParsePrefix(subnet),
		ServiceCIDR: netip.MustParsePrefix(services),
		Mutate:      mutate,
	})
	image, err := env.WebappImage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c, image
}

func applyDeployment(t *testing.T, n *acctest.ClusterNode, d *herdv1.DeploymentSpec) *herdv1.ApplyDeploymentResponse {
	t.Helper()
	resp, err := n.Deployments.ApplyDeployment(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: d})
	if err != nil {
		t.Fatalf("apply deployment %s: %v", d.GetName(), err)
	}
	return resp
}

func webService(t *testing.T, n *acctest.ClusterNode, name string) string {
	t.Helper()
	resp, err := n.Services.ApplyService(context.Background(), &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: name, Selector: map[string]string{"app": name}, Ports: []*herdv1.ServicePort{{Port: 80, TargetPort: 8080}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetService().GetStatus().GetClusterIp() + ":80"
}

// TestDeploymentRollingUpdate, on three nodes: three replicas behind a
// service; a scale 3 → 5 → 2 → 3 in place keeps the survivors' uids; an
// env change rolls out under load with no failed request, never more than
// one extra replica nor fewer than three ready, every old replica getting
// SIGTERM only once no node routes to it; a replica deleted out of band
// is replaced.
func TestDeploymentRollingUpdate(t *testing.T) {
	t.Parallel()
	c, image := newDeploymentCluster(t, []string{"dp-a", "dp-b", "dp-c"}, "10.87.0.0/24", "10.99.0.0/16", nil)
	a, b := c.Nodes[0], c.Nodes[1]
	terms := listenTerms(t, a)
	url := webService(t, a, "web")

	spread := func(d *herdv1.DeploymentSpec) *herdv1.DeploymentSpec {
		d.Placement = &herdv1.Placement{Strategy: "spread"}
		return d
	}
	applyDeployment(t, b, spread(webDeployment(image, "web", "1", 3, terms)))
	d := waitDeployment(t, c, a, "web", "Complete", 1, 3)
	if d.GetStatus().GetDriver() == "" {
		t.Error("status names no driving member")
	}
	first := replicasOf(c, "web")
	hosts := map[string]int{}
	waitFor(t, time.Minute, "the VIP reaches every replica", func() (bool, string) {
		for k, v := range seen(c.Nodes[2].Lab.Path(), url, 10) {
			hosts[k] += v
		}
		for _, r := range first {
			if hosts["1 "+r.pod.GetSpec().GetName()] == 0 {
				return false, fmt.Sprint(hosts)
			}
		}
		return true, ""
	})

	// Scale in place: nobody restarts. Each scale keeps every replica of
	// the smaller of the two sets.
	prev := first
	scale := func(n int32) []replica {
		t.Helper()
		applyDeployment(t, a, spread(webDeployment(image, "web", "1", n, terms)))
		waitDeployment(t, c, a, "web", "Complete", 1, int(n))
		now := replicasOf(c, "web")
		small, big := uids(prev), uids(now)
		if len(small) > len(big) {
			small, big = big, small
		}
		for _, u := range small {
			if !slices.Contains(big, u) {
				t.Errorf("scale %d → %d: replica %s is not in both sets (before %v, after %v)", len(prev), n, u, uids(prev), uids(now))
			}
		}
		prev = now
		return now
	}
	five, two, old := scale(5), scale(2), scale(3)
	t.Logf("scale 3 → 5 → 2 → 3: per node %v → %v → %v → %v", perNode(first), perNode(five), perNode(two), perNode(old))

	// Rolling update under load.
	load := acctest.StartLoad(c.Nodes[2].Lab, url)
	stop := make(chan struct{})
	watched := watchRollout(c, "web", stop)
	time.Sleep(time.Second)
	resp := applyDeployment(t, b, spread(webDeployment(image, "web", "2", 3, terms)))
	t.Logf("plan: %s", resp.GetPlan().GetSummary())
	if resp.GetDeployment().GetRevision() != 2 {
		t.Fatalf("revision %d after an env change, want 2", resp.GetDeployment().GetRevision())
	}
	waitDeployment(t, c, a, "web", "Complete", 2, 3)
	waitFor(t, 30*time.Second, "old replicas gone", func() (bool, string) {
		for _, o := range old {
			if _, ok := terms.get(o.pod.GetSpec().GetName()); !ok {
				return false, o.pod.GetSpec().GetName() + " has not reported SIGTERM"
			}
		}
		return true, ""
	})
	time.Sleep(2 * time.Second)
	close(stop)
	samples := <-watched
	res := load.Stop()
	t.Logf("load during the rollout: %s", res.Summary())
	if len(res.Failures) > 0 {
		t.Errorf("%d requests failed during the rolling update", len(res.Failures))
	}
	revs := res.Revisions()
	if revs["1"] == 0 || revs["2"] == 0 {
		t.Errorf("answers by revision %v: want both 1 and 2", revs)
	}
	if n := len(res.Answers); n > 0 && res.Answers[n-1].Revision != "2" {
		t.Errorf("the last answer came from revision %s", res.Answers[n-1].Revision)
	}
	maxPods, minReady := 0, 99
	for _, s := range samples {
		maxPods, minReady = max(maxPods, s.pods), min(minReady, s.ready)
	}
	t.Logf("%d samples: at most %d replicas, at least %d ready", len(samples), maxPods, minReady)
	if maxPods > 4 {
		t.Errorf("saw %d replicas at once: max_surge 1 allows 4", maxPods)
	}
	if minReady < 3 {
		t.Errorf("saw only %d ready replicas: max_unavailable 0 keeps 3", minReady)
	}
	// SIGTERM only after every node stopped routing to the replica: no
	// look at the rules that began after the report may still route to it.
	for _, o := range old {
		name, ip := o.pod.GetSpec().GetName(), o.pod.GetStatus().GetPodIp()
		termAt, _ := terms.get(name)
		for _, s := range samples {
			if s.at.After(termAt) && s.routed[ip] {
				t.Errorf("%s (%s) got SIGTERM at %s while a node's rules still routed to it (look at %s)",
					name, ip, termAt.Format("15:04:05.000"), s.at.Format("15:04:05.000"))
				break
			}
		}
	}

	// Out of band: a replica deleted behind the driver's back is replaced.
	cur := replicasOf(c, "web")
	victim := cur[0]
	var vn *acctest.ClusterNode
	for _, n := range c.Nodes {
		if n.Agent.Name == victim.node {
			vn = n
		}
	}
	zero := int64(0)
	if _, err := vn.Pods.DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: victim.pod.GetSpec().GetName(), GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	waitFor(t, time.Minute, "the deleted replica replaced", func() (bool, string) {
		rs := replicasOf(c, "web")
		ready := 0
		for _, r := range rs {
			if r.ready() && r.pod.GetUid() != victim.pod.GetUid() {
				ready++
			}
		}
		return ready == 3 && len(rs) == 3, fmt.Sprintf("%d ready of %d", ready, len(rs))
	})
	t.Logf("a replica deleted out of band was replaced and ready after %v", time.Since(deleted).Round(time.Millisecond))
}

// nodeOf is the cluster node named name.
func nodeOf(c *acctest.TestCluster, name string) *acctest.ClusterNode {
	for _, n := range c.Nodes {
		if n.Agent.Name == name {
			return n
		}
	}
	return nil
}

func countsDesc(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out
}

// waitReplicasGone waits until no node runs a replica of the deployment.
func waitReplicasGone(t *testing.T, c *acctest.TestCluster, name string) {
	t.Helper()
	waitFor(t, 2*time.Minute, name+": every replica gone", func() (bool, string) {
		rs := replicasOf(c, name)
		return len(rs) == 0, fmt.Sprint(perNode(rs))
	})
}

func deleteDeployment(t *testing.T, c *acctest.TestCluster, n *acctest.ClusterNode, name string) {
	t.Helper()
	if _, err := n.Deployments.DeleteDeployment(context.Background(), &herdv1.DeleteDeploymentRequest{Name: name}); err != nil {
		t.Fatalf("delete deployment %s: %v", name, err)
	}
	waitReplicasGone(t, c, name)
	waitCapacitySeen(t, c)
}

// waitCapacitySeen waits until every node's view of every member's free
// resources (the capacity it gossips, which placement reads) matches what
// that member itself reports: after a delete, the next placement must not
// count replicas that are gone.
func waitCapacitySeen(t *testing.T, c *acctest.TestCluster) {
	t.Helper()
	waitFor(t, time.Minute, "every node sees every member's free capacity", func() (bool, string) {
		truth := map[string]string{}
		for _, n := range c.Nodes {
			nd, err := n.Nodes.GetNode(context.Background(), &herdv1.GetNodeRequest{})
			if err != nil {
				return false, err.Error()
			}
			a, r := nd.GetAllocatable(), nd.GetRequested()
			truth[nd.GetName()] = fmt.Sprintf("%dm %dB", a.GetCpuMillis()-r.GetCpuMillis(), a.GetMemoryBytes()-r.GetMemoryBytes())
		}
		for _, n := range c.Nodes {
			resp, err := n.Cluster.ListMembers(context.Background(), &herdv1.ListMembersRequest{})
			if err != nil {
				return false, err.Error()
			}
			for _, m := range resp.GetMembers() {
				want, ok := truth[m.GetName()]
				if !ok {
					continue // a member the test killed
				}
				f := m.GetFree()
				if got := fmt.Sprintf("%dm %dB", f.GetCpuMillis(), f.GetMemoryBytes()); got != want {
					return false, fmt.Sprintf("%s sees %s free on %s, which reports %s", n.Agent.Name, got, m.GetName(), want)
				}
			}
		}
		return true, ""
	})
}

// TestDeploymentPlacementRollbackAndNodeDeath, on three nodes of 1Gi
// allocatable memory each: six replicas of 200Mi are bin-packed 5 + 1 and
// spread 2 + 2 + 2; every kind of bad input is refused with its path; a
// deployment that does not fit is refused with the per-node report and
// nothing is written; a herd_pod beyond what the
// replicas left is refused; a revision that never gets ready is rolled
// back under load without a failed request; when a node dies its replicas
// are re-placed on the survivors.
func TestDeploymentPlacementRollbackAndNodeDeath(t *testing.T) {
	t.Parallel()
	total, err := nodeinfo.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	reserved := strconv.FormatInt(total.GetMemoryBytes()-1<<30, 10)
	c, image := newDeploymentCluster(t, []string{"pl-a", "pl-b", "pl-c"}, "10.88.0.0/24", "10.100.0.0/16", func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--reserved-memory", reserved)
	})
	a := c.Nodes[0]
	ctx := context.Background()
	sized := func(name string, replicas int32, mem, strategy string) *herdv1.DeploymentSpec {
		d := webDeployment(image, name, "1", replicas, nil)
		d.Template.Containers[0].Memory = mem
		d.Placement = &herdv1.Placement{Strategy: strategy}
		return d
	}

	waitCapacitySeen(t, c)
	applyDeployment(t, a, sized("packed", 6, "200Mi", "bin_pack"))
	waitDeployment(t, c, a, "packed", "Complete", 1, 6)
	if got := countsDesc(perNode(replicasOf(c, "packed"))); !slices.Equal(got, []int{5, 1}) {
		t.Errorf("bin_pack of 6 × 200Mi on 3 × 1Gi: per node %v, want [5 1]", got)
	}
	deleteDeployment(t, c, a, "packed")
	applyDeployment(t, a, sized("spread", 6, "200Mi", "spread"))
	waitDeployment(t, c, a, "spread", "Complete", 1, 6)
	if got := countsDesc(perNode(replicasOf(c, "spread"))); !slices.Equal(got, []int{2, 2, 2}) {
		t.Errorf("spread of 6 × 200Mi on 3 nodes: per node %v, want [2 2 2]", got)
	}

	// Bad input, refused by agentd whatever the client checked: nothing is
	// written, nothing runs.
	bad := []struct {
		name   string
		mutate func(*herdv1.DeploymentSpec)
		code   codes.Code
		want   string
	}{
		{"negative-replicas", func(d *herdv1.DeploymentSpec) { d.Replicas = -1 }, codes.InvalidArgument, "spec.replicas: must be between 0"},
		{"no-progress", func(d *herdv1.DeploymentSpec) {
			d.Strategy = &herdv1.DeploymentStrategy{MaxSurge: ptr(int32(0)), MaxUnavailable: ptr(int32(0))}
		}, codes.InvalidArgument, "spec.strategy.max_surge: max_surge and max_unavailable must not both be 0"},
		{"request-above-limit", func(d *herdv1.DeploymentSpec) { d.Template.Containers[0].MemoryRequest = "128Mi" }, codes.InvalidArgument, "memory_request"},
		{"labels-without-selector", func(d *herdv1.DeploymentSpec) { d.Template.Labels = map[string]string{"app": "other"} }, codes.InvalidArgument,
			"spec.template.labels: must contain every selector label: missing app=labels-without-selector"},
		{"unknown-strategy", func(d *herdv1.DeploymentSpec) { d.Strategy = &herdv1.DeploymentStrategy{Type: "Recreate"} }, codes.InvalidArgument,
			`spec.strategy.type: must be one of RollingUpdate, BlueGreen, got "Recreate"`},
		{"negative-min-ready", func(d *herdv1.DeploymentSpec) { d.Strategy = &herdv1.DeploymentStrategy{MinReadySeconds: -1} }, codes.InvalidArgument,
			"spec.strategy.min_ready_seconds: must be between 0"},
		{"max-per-node", func(d *herdv1.DeploymentSpec) { d.Replicas, d.Placement = 4, &herdv1.Placement{MaxPerNode: 1} }, codes.FailedPrecondition,
			"max_per_node = 1 allows at most 3 replicas on the 3 matching nodes, replicas = 4"},
	}
	for _, tt := range bad {
		d := webDeployment(image, tt.name, "1", 2, nil)
		tt.mutate(d)
		_, err := c.Nodes[2].Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: d})
		if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
			t.Errorf("%s: %v\nwant %v with %q", tt.name, err, tt.code, tt.want)
		}
		if _, err := a.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: tt.name}); status.Code(err) != codes.NotFound {
			t.Errorf("%s: after a refused apply, GetDeployment = %v, want NotFound", tt.name, err)
		}
	}

	// 624Mi free per node: one 400Mi replica each, the fourth fits nowhere.
	waitCapacitySeen(t, c)
	_, err = c.Nodes[1].Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: sized("big", 4, "400Mi", "spread")})
	wantReport := "cannot place 1 of 4 replicas of default/big: pl-a memory 400Mi requested > 224Mi free; pl-b memory 400Mi requested > 224Mi free; pl-c memory 400Mi requested > 224Mi free"
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), wantReport) {
		t.Errorf("unplaceable deployment: %v\nwant FailedPrecondition with %q", err, wantReport)
	}
	if _, err := a.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "big"}); status.Code(err) != codes.NotFound {
		t.Errorf("after a refused apply: GetDeployment = %v, want NotFound", err)
	}
	if rs := replicasOf(c, "big"); len(rs) != 0 {
		t.Errorf("a refused deployment left %d pods", len(rs))
	}
	// A pinned pod counts the replicas' requests too.
	pod := &herdv1.PodSpec{Name: "pinned", Containers: []*herdv1.ContainerSpec{{Name: "main", Image: image, Memory: "700Mi"}}}
	_, err = a.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: pod})
	if status.Code(err) != codes.ResourceExhausted && status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(status.Convert(err).Message(), "requests memory 700Mi but pl-a has 624Mi free") {
		t.Errorf("herd_pod over capacity: %v", err)
	}
	deleteDeployment(t, c, a, "spread")

	// A revision that never gets ready is rolled back, under load.
	url := webService(t, a, "web")
	web := func(revision string, mutate func(*herdv1.DeploymentSpec)) *herdv1.DeploymentSpec {
		d := webDeployment(image, "web", revision, 3, nil)
		d.Placement = &herdv1.Placement{Strategy: "spread"}
		if mutate != nil {
			mutate(d)
		}
		return d
	}
	applyDeployment(t, a, web("1", nil))
	waitDeployment(t, c, a, "web", "Complete", 1, 3)
	stable := uids(replicasOf(c, "web"))
	waitFor(t, time.Minute, "the VIP answers", func() (bool, string) {
		got := seen(a.Lab.Path(), url, 5)
		return got["error"] == 0 && len(got) > 0 && !strings.HasPrefix(fmt.Sprint(got), "map[error"), fmt.Sprint(got)
	})
	load := acctest.StartLoad(c.Nodes[2].Lab, url)
	applyDeployment(t, c.Nodes[1], web("2", func(d *herdv1.DeploymentSpec) {
		d.Template.Containers[0].Env["READY"] = "fail"
		d.Strategy = &herdv1.DeploymentStrategy{ProgressDeadlineSeconds: 15}
	}))
	d := waitDeployment(t, c, a, "web", "RolledBack", 1, 3)
	res := load.Stop()
	t.Logf("rolled back: %s", d.GetStatus().GetMessage())
	t.Logf("load during the failed rollout: %s", res.Summary())
	if len(res.Failures) > 0 {
		t.Errorf("%d requests failed during the failed rollout and its rollback", len(res.Failures))
	}
	if r := res.Revisions(); len(r) != 1 || r["1"] == 0 {
		t.Errorf("answers by revision %v during a rollout that never got ready: want revision 1 only", r)
	}
	msg := d.GetStatus().GetMessage()
	if !strings.Contains(msg, "revision 2 failed and was rolled back to revision 1") || !strings.Contains(msg, "503") {
		t.Errorf("rollback message %q: want the failed revision and the probe's 503", msg)
	}
	if d.GetRevision() != 2 || d.GetStatus().GetFailedRevision() != 2 {
		t.Errorf("revision %d, failed revision %d; want 2 and 2", d.GetRevision(), d.GetStatus().GetFailedRevision())
	}
	if got := uids(replicasOf(c, "web")); !slices.Equal(got, stable) {
		t.Errorf("the rollback replaced stable replicas: %v, before %v", got, stable)
	}

	// Node death: the replicas of the dead node come back on the others.
	var dead *acctest.ClusterNode
	for _, r := range replicasOf(c, "web") {
		if r.node != a.Agent.Name {
			dead = nodeOf(c, r.node)
			break
		}
	}
	load = acctest.StartLoad(a.Lab, url)
	dead.Agent.Kill()
	if err := c.Lab.RemoveNode(dead.Lab); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var detected time.Time
	waitFor(t, time.Minute, dead.Agent.Name+" declared dead", func() (bool, string) {
		resp, err := a.Cluster.ListMembers(ctx, &herdv1.ListMembersRequest{})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range resp.GetMembers() {
			if m.GetName() == dead.Agent.Name && m.GetState() == "dead" {
				detected = time.Now()
				return true, ""
			}
		}
		return false, fmt.Sprint(resp.GetMembers())
	})
	waitFor(t, 2*time.Minute, "3 ready replicas on the survivors", func() (bool, string) {
		rs := replicasOf(c, "web")
		ready := 0
		for _, r := range rs {
			if r.ready() && r.node != dead.Agent.Name {
				ready++
			}
		}
		return ready == 3, fmt.Sprint(perNode(rs))
	})
	healed := time.Now()
	// A request already on its way to the dead node's pod when the rules
	// changed hangs until the client's timeout (5 s): the VIP must answer
	// the requests sent after healing, and a failure ending within one
	// client timeout of it may be such a request.
	const clientTimeout = 5 * time.Second
	waitFor(t, time.Minute, "an answer through the VIP after the re-placement", func() (bool, string) {
		s := load.Snapshot()
		n := len(s.Answers)
		return n > 0 && s.Answers[n-1].At.After(healed), s.Summary()
	})
	time.Sleep(clientTimeout + time.Second)
	res = load.Stop()
	t.Logf("node death: detected %v after the kill, 3 replicas ready on the survivors %v after detection", detected.Sub(killed).Round(time.Millisecond), healed.Sub(detected).Round(time.Millisecond))
	t.Logf("load from %s across the death: %s", a.Agent.Name, res.Summary())
	var after int
	for _, f := range res.Failures {
		if f.At.After(healed.Add(clientTimeout)) {
			after++
		}
	}
	if after > 0 || len(res.Answers) == 0 || !res.Answers[len(res.Answers)-1].At.After(healed.Add(clientTimeout)) {
		t.Errorf("the VIP did not answer once the replicas were re-placed: %d failures after, %s", after, res.Summary())
	}
	st := waitDeployment(t, c, a, "web", "RolledBack", 1, 3).GetStatus()
	for _, r := range st.GetReplicaStatus() {
		if r.GetNode() == dead.Agent.Name {
			t.Errorf("status still lists replica %s on the dead node", r.GetPod())
		}
	}
}

// perNodeOrder checks, for one load's answers on new connections, that no
// old-revision answer came after the first new-revision one, and returns
// the time of the first new and of the last old answer.
func perNodeOrder(res acctest.LoadResult, old, cur string) (firstNew, lastOld time.Time, late int) {
	for _, a := range res.Answers {
		if a.Client != "new" {
			continue // a kept-alive connection stays on its replica until that one closes it
		}
		switch a.Revision {
		case cur:
			if firstNew.IsZero() {
				firstNew = a.At
			}
		case old:
			lastOld = a.At
			if !firstNew.IsZero() {
				late++
			}
		}
	}
	return firstNew, lastOld, late
}

// TestDeploymentBlueGreenAndDriverDeath, on three nodes: a BlueGreen
// rollout under load from every node, where no node answers a new
// connection from the old revision after its first answer from the new
// one (the mixed window across nodes is printed); then the member driving
// the deployment is killed in the middle of a rolling update, another
// member finishes it, and once the killed agentd is back its stale
// replicas are removed.
func TestDeploymentBlueGreenAndDriverDeath(t *testing.T) {
	t.Parallel()
	c, image := newDeploymentCluster(t, []string{"bg-a", "bg-b", "bg-c"}, "10.89.0.0/24", "10.101.0.0/16", nil)
	ctx := context.Background()
	url := webService(t, c.Nodes[0], "web")
	web := func(revision string, strategy *herdv1.DeploymentStrategy) *herdv1.DeploymentSpec {
		d := webDeployment(image, "web", revision, 3, nil)
		d.Placement = &herdv1.Placement{Strategy: "spread"}
		d.Strategy = strategy
		return d
	}
	applyDeployment(t, c.Nodes[0], web("1", nil))
	waitDeployment(t, c, c.Nodes[0], "web", "Complete", 1, 3)
	for _, n := range c.Nodes {
		waitFor(t, time.Minute, "the VIP answers on "+n.Agent.Name, func() (bool, string) {
			_, err := get(n.Lab.Path(), url)
			return err == nil, fmt.Sprint(err)
		})
	}

	loads := make([]*acctest.Load, len(c.Nodes))
	for i, n := range c.Nodes {
		loads[i] = acctest.StartLoad(n.Lab, url)
	}
	time.Sleep(time.Second)
	resp := applyDeployment(t, c.Nodes[1], web("2", &herdv1.DeploymentStrategy{Type: spec.StrategyBlueGreen}))
	t.Logf("plan: %s", resp.GetPlan().GetSummary())
	waitDeployment(t, c, c.Nodes[0], "web", "Complete", 2, 3)
	time.Sleep(2 * time.Second)
	var firstNew, lastOld []time.Time
	for i, l := range loads {
		res := l.Stop()
		name := c.Nodes[i].Agent.Name
		t.Logf("BlueGreen load from %s: %s", name, res.Summary())
		if len(res.Failures) > 0 {
			t.Errorf("%s: %d requests failed during the BlueGreen rollout", name, len(res.Failures))
		}
		fn, lo, late := perNodeOrder(res, "1", "2")
		if fn.IsZero() {
			t.Errorf("%s: no answer from revision 2", name)
			continue
		}
		if late > 0 {
			t.Errorf("%s: %d answers from revision 1 after the first from revision 2", name, late)
		}
		firstNew, lastOld = append(firstNew, fn), append(lastOld, lo)
	}
	if len(firstNew) == len(c.Nodes) {
		earliest, latest := slices.MinFunc(firstNew, time.Time.Compare), slices.MaxFunc(firstNew, time.Time.Compare)
		oldEnd := slices.MaxFunc(lastOld, time.Time.Compare)
		// The mixed window: from the first node's switch to the last
		// old-revision answer on a new connection anywhere.
		t.Logf("BlueGreen: nodes switched within %v of each other; mixed window across nodes %v",
			latest.Sub(earliest).Round(time.Millisecond), max(0, oldEnd.Sub(earliest)).Round(time.Millisecond))
	}

	// The driving member dies in the middle of a rolling update.
	applyDeployment(t, c.Nodes[0], web("3", &herdv1.DeploymentStrategy{MinReadySeconds: 4}))
	var driver string
	waitFor(t, time.Minute, "the rollout to revision 3 under way", func() (bool, string) {
		d, err := c.Nodes[0].Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "web"})
		if err != nil {
			return false, err.Error()
		}
		driver = d.GetStatus().GetDriver()
		for _, r := range replicasOf(c, "web") {
			if r.revision() == "3" && r.ready() {
				return true, ""
			}
		}
		return false, d.GetStatus().String()
	})
	dn := nodeOf(c, driver)
	if dn == nil {
		t.Fatalf("driver %q is no node of the cluster", driver)
	}
	var other *acctest.ClusterNode
	for _, n := range c.Nodes {
		if n != dn {
			other = n
			break
		}
	}
	dn.Agent.Kill()
	killed := time.Now()
	t.Logf("killed the driving member %s", driver)
	// Only replicas on live members count: the dead member's are not
	// reachable, so the other two finish the rollout without them.
	var d *herdv1.Deployment
	waitFor(t, 3*time.Minute, "another member completes revision 3", func() (bool, string) {
		var err error
		d, err = other.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "web"})
		if err != nil {
			return false, err.Error()
		}
		st := d.GetStatus()
		return st.GetDriver() != driver && st.GetPhase() == spec.PhaseComplete && st.GetCurrentRevision() == 3 && st.GetReadyReplicas() == 3,
			fmt.Sprintf("driver %s phase %s current %d ready %d", st.GetDriver(), st.GetPhase(), st.GetCurrentRevision(), st.GetReadyReplicas())
	})
	t.Logf("%s finished the rollout %v after %s was killed", d.GetStatus().GetDriver(), time.Since(killed).Round(time.Millisecond), driver)
	for _, r := range d.GetStatus().GetReplicaStatus() {
		if r.GetRevision() != 3 || r.GetNode() == driver {
			t.Errorf("replica %s on %s at revision %d after the takeover", r.GetPod(), r.GetNode(), r.GetRevision())
		}
	}

	// The killed agentd comes back: what it still runs is stale.
	if err := dn.Agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "three replicas of revision 3 and nothing stale", func() (bool, string) {
		rs := replicasOf(c, "web")
		ok := len(rs) == 3
		for _, r := range rs {
			ok = ok && r.revision() == "3" && r.ready()
		}
		var desc []string
		for _, r := range rs {
			desc = append(desc, fmt.Sprintf("%s@%s r%s ready=%v", r.pod.GetSpec().GetName(), r.node, r.revision(), r.ready()))
		}
		return ok, strings.Join(desc, ", ")
	})
}

// partition drops everything on n's link to the lab (inside its lab
// namespace): gossip, the members' gRPC and pod traffic alike. The
// returned function heals it.
func partition(t *testing.T, n *acctest.ClusterNode) func() {
	t.Helper()
	rules := `table inet herdtest_partition {
	chain cut_in { type filter hook input priority -10; iifname "eth0" drop; }
	chain cut_out { type filter hook output priority -10; oifname "eth0" drop; }
	chain cut_fwd { type filter hook forward priority -10; iifname "eth0" drop; oifname "eth0" drop; }
}`
	cmd := n.Lab.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("partition %s: %v: %s", n.Agent.Name, err, out)
	}
	healed := false
	heal := func() {
		if healed {
			return
		}
		healed = true
		if out, err := n.Lab.Command("nft", "delete", "table", "inet", "herdtest_partition").CombinedOutput(); err != nil {
			t.Errorf("heal %s: %v: %s", n.Agent.Name, err, out)
		}
	}
	t.Cleanup(heal)
	return heal
}

// memberStates is what n's agentd reports of the members, by name.
func memberStates(n *acctest.ClusterNode) map[string]string {
	out := map[string]string{}
	resp, err := n.Cluster.ListMembers(context.Background(), &herdv1.ListMembersRequest{})
	if err != nil {
		return out
	}
	for _, m := range resp.GetMembers() {
		out[m.GetName()] = m.GetState()
	}
	return out
}

// TestDeploymentPartition: one node of three is cut off; each side keeps
// the deployment's three replicas running on its side. The partition
// outlasts memberlist's gossip to the dead, so only agentd's reconnect
// heals the membership; then the one remaining driver scales the extras
// back to three, newest first: the replicas from before the split remain.
func TestDeploymentPartition(t *testing.T) {
	t.Parallel()
	c, image := newDeploymentCluster(t, []string{"pt-a", "pt-b", "pt-c"}, "10.90.0.0/24", "10.102.0.0/16", nil)
	a, cut := c.Nodes[0], c.Nodes[2]
	d := webDeployment(image, "web", "1", 3, nil)
	d.Placement = &herdv1.Placement{Strategy: "spread"}
	applyDeployment(t, a, d)
	waitDeployment(t, c, a, "web", "Complete", 1, 3)
	orig := uids(replicasOf(c, "web"))

	heal := partition(t, cut)
	waitFor(t, time.Minute, "each side holds the other dead", func() (bool, string) {
		sa, sc := memberStates(a), memberStates(cut)
		return sa["pt-c"] == "dead" && sc["pt-a"] == "dead" && sc["pt-b"] == "dead", fmt.Sprint(sa, sc)
	})
	detected := time.Now()
	onSide := func(nodes ...string) func() (bool, string) {
		return func() (bool, string) {
			ready := 0
			for _, r := range replicasOf(c, "web") {
				if slices.Contains(nodes, r.node) && r.ready() {
					ready++
				}
			}
			return ready == 3, fmt.Sprint(ready, " ready")
		}
	}
	waitFor(t, 2*time.Minute, "three replicas on the cut-off node's side", onSide("pt-c"))
	waitFor(t, 2*time.Minute, "three replicas on the other side", onSide("pt-a", "pt-b"))
	before := replicasOf(c, "web")
	t.Logf("during the partition: %d replicas, per node %v", len(before), perNode(before))
	if len(before) != 6 {
		t.Errorf("%d replicas during the partition, want 3 on each side", len(before))
	}
	// Outlast memberlist's gossip to the dead (30 s on LAN timings).
	time.Sleep(time.Until(detected.Add(35 * time.Second)))
	heal()
	healedAt := time.Now()
	waitFor(t, 2*time.Minute, "the members see each other alive again", func() (bool, string) {
		sa, sc := memberStates(a), memberStates(cut)
		return sa["pt-c"] == "alive" && sc["pt-a"] == "alive" && sc["pt-b"] == "alive", fmt.Sprint(sa, sc)
	})
	t.Logf("membership healed %v after the network", time.Since(healedAt).Round(time.Millisecond))
	waitDeployment(t, c, a, "web", "Complete", 1, 3)
	after := replicasOf(c, "web")
	// Newest first: what either side made during the split goes.
	if got := uids(after); !slices.Equal(got, orig) {
		t.Errorf("after the heal the replicas are %v (per node %v), want the three from before the split %v", got, perNode(after), orig)
	}
	t.Logf("after the heal: per node %v (%v after the network healed)", perNode(after), time.Since(healedAt).Round(time.Millisecond))
}
