package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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

	// Scale in place: nobody restarts.
	applyDeployment(t, a, spread(webDeployment(image, "web", "1", 5, terms)))
	waitDeployment(t, c, a, "web", "Complete", 1, 5)
	five := replicasOf(c, "web")
	for _, u := range uids(first) {
		if !slices.Contains(uids(five), u) {
			t.Errorf("scale 3 → 5 replaced replica %s (now %v)", u, uids(five))
		}
	}
	applyDeployment(t, a, spread(webDeployment(image, "web", "1", 2, terms)))
	waitDeployment(t, c, a, "web", "Complete", 1, 2)
	two := replicasOf(c, "web")
	for _, u := range uids(two) {
		if !slices.Contains(uids(five), u) {
			t.Errorf("scale 5 → 2 left a new replica %s (before: %v)", u, uids(five))
		}
	}
	applyDeployment(t, a, spread(webDeployment(image, "web", "1", 3, terms)))
	waitDeployment(t, c, a, "web", "Complete", 1, 3)
	old := replicasOf(c, "web")
	for _, u := range uids(two) {
		if !slices.Contains(uids(old), u) {
			t.Errorf("scale 2 → 3 replaced replica %s", u)
		}
	}
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
