package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// The five-node benchmarks check what every node does, not one node's
// view: a change has propagated when the last node's rules have it.

// newFive starts a five-node cluster (prefix-1 ... prefix-5) on a lab of its
// own. It has no client pod: each node's own namespace is the client (herd
// hooks nat-output as well as nat-prerouting, so a socket of the node's
// namespace goes through the same maps a pod's packets do).
func newFive(b *testing.B, prefix, subnet string) *svcBench {
	b.Helper()
	env := acctest.SharedEnv(b)
	sb := &svcBench{image: serverImage(b, env)}
	var names []string
	for i := 1; i <= 5; i++ {
		names = append(names, fmt.Sprintf("%s-%d", prefix, i))
	}
	sb.c = env.NewCluster(b, acctest.ClusterOptions{Names: names, Subnet: netip.MustParsePrefix(subnet)})
	return sb
}

// BenchmarkPropagation5 is BenchmarkEndpointPropagation on five nodes,
// measured on each of the four nodes that do not run the pod: per
// iteration a new pod on node 1 starts not ready, the VIP refuses on every
// other node, the pod is switched ready, and each of nodes 2-5 asks the
// VIP on new connections from its own namespace until the pod answers.
// One sample per (node, iteration), from agentd's report of ready=true on
// node 1 (polled every 2 ms, an upper bound by one poll, as in
// BenchmarkEndpointPropagation) to that node's first answer.
//
// p50-ms and p99-ms are over all samples (nearest rank); max-ms is the
// slowest node's p99, which with fewer than 100 iterations is that node's
// largest sample. all-p50-ms is the median over iterations of the time
// until the last of the four nodes answered: when the whole cluster had
// the endpoint.
func BenchmarkPropagation5(b *testing.B) {
	sb := newFive(b, "bp5", "10.71.0.0/24")
	a, others := sb.c.Nodes[0], sb.c.Nodes[1:]
	vip := sb.applyService(b, "prop5")
	ctx := context.Background()

	perNode := make([][]time.Duration, len(others))
	var all, last []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("prop5-%d", i)
		// A random phase against the gossip and probe ticks, as in
		// BenchmarkEndpointPropagation.
		time.Sleep(rand.N(time.Second))
		pod := sb.applyPod(b, a, serverPod(sb.image, name, map[string]string{"bench": "prop5"}, true))
		direct := pod.GetStatus().GetPodIp() + ":8080"
		waitUntil(b, 30*time.Second, name+" answers on its IP", func() (bool, error) {
			body, err := sb.get(a.Lab.Path(), direct, "/")
			return body == name, err
		})
		for _, n := range others {
			waitUntil(b, 30*time.Second, "the VIP refuses on "+n.Agent.Name, func() (bool, error) {
				return refusedIn(sb, n.Lab.Path(), vip)
			})
		}
		ds, err := sb.propagationTo(a, others, direct, vip, name)
		if err != nil {
			b.Fatal(err)
		}
		for j, d := range ds {
			perNode[j] = append(perNode[j], d)
		}
		all = append(all, ds...)
		last = append(last, slices.Max(ds))
		deletePod(b, ctx, a.Pods, name)
	}
	var slowest time.Duration
	for j, ds := range perNode {
		b.Logf("%s: p50 %v, samples %v", others[j].Agent.Name, nearestRank(ds, 0.5), sorted(ds))
		slowest = max(slowest, nearestRank(ds, 0.99))
	}
	b.ReportMetric(ms(nearestRank(all, 0.5)), "p50-ms")
	b.ReportMetric(ms(nearestRank(all, 0.99)), "p99-ms")
	b.ReportMetric(ms(slowest), "max-ms")
	b.ReportMetric(ms(nearestRank(last, 0.5)), "all-p50-ms")
}

// propagationTo switches the pod ready and measures, for each node of
// clients, from agentd's report of ready=true on a to that node's first
// answer from the pod through the VIP. The clients poll concurrently.
func (sb *svcBench) propagationTo(a *acctest.ClusterNode, clients []*acctest.ClusterNode, direct, vip, name string) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	told := time.Now()
	if err := sb.tell(a, direct, "up"); err != nil {
		return nil, err
	}
	var (
		wg       sync.WaitGroup
		readyAt  time.Time
		readyErr error
		answered = make([]time.Time, len(clients))
		errs     = make([]error, len(clients))
	)
	wg.Go(func() { readyAt, readyErr = pollReady(ctx, a, name, told) })
	for j, n := range clients {
		wg.Go(func() {
			t, err := pollAnswerIn(ctx, sb, n.Lab.Path(), vip, name)
			if err != nil {
				err = fmt.Errorf("answer through the VIP on %s: %w", n.Agent.Name, err)
			}
			answered[j], errs[j] = t, err
		})
	}
	wg.Wait()
	if readyErr != nil {
		return nil, fmt.Errorf("pod %s ready: %w", name, readyErr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ds := make([]time.Duration, len(clients))
	for j, t := range answered {
		// Never negative: the clock starts before agentd could have said ready.
		ds[j] = max(t.Sub(readyAt), 0)
	}
	return ds, nil
}

// pollAnswerIn is pollAnswer from the namespace at netnsPath.
func pollAnswerIn(ctx context.Context, sb *svcBench, netnsPath, vip, name string) (time.Time, error) {
	for {
		body, err := sb.get(netnsPath, vip, "/")
		if err == nil && body == name {
			return time.Now(), nil
		}
		if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return time.Time{}, err
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("%w (last: %w %q)", ctx.Err(), err, body)
		}
		time.Sleep(time.Millisecond)
	}
}

// refusedIn is refused from the namespace at netnsPath.
func refusedIn(sb *svcBench, netnsPath, addr string) (bool, error) {
	conn, err := sb.dialIn(netnsPath, addr, 2*time.Second)
	if err == nil {
		conn.Close()
		return false, errors.New("connected")
	}
	return errors.Is(err, syscall.ECONNREFUSED), err
}

// BenchmarkDeadNode5 measures how long each survivor keeps routing to a
// dead node's endpoint. Per iteration, a fresh five-node cluster, a
// service with one ready pod on every node, and each node's backends map
// holding all five. Then node 5 dies: its eth0 goes down (its pods and its
// gossip become unreachable, as with a machine that lost power) and its
// agentd gets SIGKILL. For each of the four survivors, the clock stops
// when that node's own `table ip herd` backends map (read over netlink in
// its namespace every 2 ms) no longer holds the dead pod's address for the
// VIP. The VIP then answers 10 new connections from every survivor, none
// from the dead pod.
//
// One sample per (survivor, iteration):
//
//	from-kill-p50-ms, from-kill-max-ms  kill to the node's rules without the endpoint
//	detect-p50-ms                       kill to the node declaring the member dead
//	removal-p50-ms, removal-max-ms      the node declaring it dead to its rules without it
//
// Detection is memberlist's (500 ms probes, suspicion 3 x probe interval,
// see agentd/agent/cluster.go), so from-kill is mostly that; removal is
// herd's own part. The death is dated by ListMembers polled every 5 ms
// over gRPC, from the last poll that did not say dead: detect is a lower
// bound and removal an upper bound, by one poll (a few ms).
func BenchmarkDeadNode5(b *testing.B) {
	var fromKill, detect, removal []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		// A cluster per iteration (each lab in namespaces of its own, so
		// the subnet is reused), torn down before the next one starts.
		sb := newFive(b, fmt.Sprintf("bd%d", i), "10.72.0.0/24")
		vip := sb.applyService(b, "dead5")
		vipAddr := netip.MustParseAddrPort(vip).Addr()
		ips := map[string]netip.Addr{} // pod name -> IP
		for j, n := range sb.c.Nodes {
			name := fmt.Sprintf("dead5-%d", j+1)
			p := sb.applyPod(b, n, serverPod(sb.image, name, map[string]string{"bench": "dead5"}, false))
			ips[name] = netip.MustParseAddr(p.GetStatus().GetPodIp())
		}
		victim, survivors := sb.c.Nodes[4], sb.c.Nodes[:4]
		deadIP := ips["dead5-5"]
		nfts := make([]*nftReader, len(survivors))
		for j, n := range survivors {
			r, err := newNftReader(n.Lab.Path())
			if err != nil {
				b.Fatal(err)
			}
			nfts[j] = r
			waitUntil(b, 30*time.Second, n.Agent.Name+"'s rules hold all five endpoints", func() (bool, error) {
				got, err := r.backends(vipAddr)
				for _, ip := range ips {
					if !got[ip] {
						return false, fmt.Errorf("%v: %w", got, err)
					}
				}
				return true, nil
			})
		}
		b.StartTimer()

		killed := time.Now()
		if out, err := exec.Command("ip", "-n", victim.Lab.Netns, "link", "set", "eth0", "down").CombinedOutput(); err != nil {
			b.Fatalf("%s: eth0 down: %v: %s", victim.Agent.Name, err, out)
		}
		victim.Agent.Kill()

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var (
			wg     sync.WaitGroup
			gone   = make([]time.Time, len(survivors))
			dead   = make([]time.Time, len(survivors))
			viewed = make([]time.Time, len(survivors))
			errs   = make([]error, 2*len(survivors))
		)
		for j, n := range survivors {
			wg.Go(func() { gone[j], errs[2*j] = nfts[j].waitGone(ctx, vipAddr, deadIP) })
			wg.Go(func() { dead[j], viewed[j], errs[2*j+1] = waitDeadAndView(ctx, n, victim.Agent.Name, "dead5") })
		}
		wg.Wait()
		cancel()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		var line []string
		for j, n := range survivors {
			fromKill = append(fromKill, gone[j].Sub(killed))
			detect = append(detect, dead[j].Sub(killed))
			removal = append(removal, gone[j].Sub(dead[j]))
			line = append(line, fmt.Sprintf("%s: dead %v, view %v, rules %v", n.Agent.Name,
				dead[j].Sub(killed).Round(time.Millisecond), viewed[j].Sub(killed).Round(time.Millisecond),
				gone[j].Sub(killed).Round(time.Millisecond)))
		}
		b.Logf("iteration %d, after the kill: %s", i, strings.Join(line, "; "))
		for _, n := range survivors {
			if err := answersWithout(sb, n, vip, "dead5-5", 10); err != nil {
				b.Fatal(err)
			}
		}
		for _, r := range nfts {
			r.close()
		}
		teardown(sb, victim)
		b.StartTimer()
	}
	b.ReportMetric(ms(nearestRank(fromKill, 0.5)), "from-kill-p50-ms")
	b.ReportMetric(ms(slices.Max(fromKill)), "from-kill-max-ms")
	b.ReportMetric(ms(nearestRank(detect, 0.5)), "detect-p50-ms")
	b.ReportMetric(ms(nearestRank(removal, 0.5)), "removal-p50-ms")
	b.ReportMetric(ms(slices.Max(removal)), "removal-max-ms")
}

// waitDeadAndView polls n every 5 ms until its ListMembers says victim is
// dead (neither alive nor suspect) and its view of service svc lists no
// endpoint on victim. dead is when the last poll that still said alive or
// suspect was sent: the node declared the death after that (so removal,
// measured from it, is an upper bound by one poll). viewed is when the
// first view without the endpoint came back.
func waitDeadAndView(ctx context.Context, n *acctest.ClusterNode, victim, svc string) (dead, viewed time.Time, err error) {
	notDead := time.Now()
	for dead.IsZero() || viewed.IsZero() {
		if dead.IsZero() {
			sent := time.Now()
			l, err := n.Cluster.ListMembers(ctx, &herdv1.ListMembersRequest{})
			if err != nil {
				return dead, viewed, fmt.Errorf("%s: list members: %w", n.Agent.Name, err)
			}
			if slices.ContainsFunc(l.GetMembers(), func(m *herdv1.Member) bool {
				return m.GetName() == victim && m.GetState() != "alive" && m.GetState() != "suspect"
			}) {
				dead = notDead
			} else {
				notDead = sent
			}
		}
		if viewed.IsZero() {
			s, err := n.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: svc})
			if err != nil {
				return dead, viewed, fmt.Errorf("%s: get service %s: %w", n.Agent.Name, svc, err)
			}
			if !slices.ContainsFunc(s.GetStatus().GetEndpoints(), func(e *herdv1.ServiceEndpoint) bool { return e.GetNode() == victim }) {
				viewed = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return dead, viewed, fmt.Errorf("%s: %s dead at %v, gone from the view at %v: %w", n.Agent.Name, victim, dead, viewed, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return dead, viewed, nil
}

// answersWithout asks the VIP from n's namespace on tries new connections;
// each must be answered, none by the pod named deadPod.
func answersWithout(sb *svcBench, n *acctest.ClusterNode, vip, deadPod string, tries int) error {
	for range tries {
		body, err := sb.get(n.Lab.Path(), vip, "/")
		if err != nil {
			return fmt.Errorf("%s: the VIP after the dead endpoint left its rules: %w", n.Agent.Name, err)
		}
		if body == deadPod {
			return fmt.Errorf("%s: the VIP answered from the dead pod %s", n.Agent.Name, deadPod)
		}
	}
	return nil
}

// teardown stops this iteration's cluster now, so the next iteration is
// measured without it: pods and services deleted, agentds stopped, lab
// removed. The dead node's pods cannot be reached; they stay until the
// Env's containerd stops. The harness's own cleanups, later, find nothing
// left to do.
func teardown(sb *svcBench, dead *acctest.ClusterNode) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	zero := int64(0)
	for _, n := range sb.c.Nodes {
		if n == dead {
			continue
		}
		if l, err := n.Services.ListServices(ctx, &herdv1.ListServicesRequest{}); err == nil {
			for _, s := range l.GetServices() {
				_, _ = n.Services.DeleteService(ctx, &herdv1.DeleteServiceRequest{Namespace: s.GetSpec().GetNamespace(), Name: s.GetSpec().GetName()})
			}
		}
		if l, err := n.Pods.ListPods(ctx, &herdv1.ListPodsRequest{}); err == nil {
			for _, p := range l.GetPods() {
				_, _ = n.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: p.GetSpec().GetName(), GracePeriodSeconds: &zero, SkipDrain: true})
			}
		}
	}
	for _, n := range sb.c.Nodes {
		n.Agent.Stop()
	}
	sb.c.Lab.Close()
}

// nftReader reads herd's backends map in one network namespace over a
// netlink socket of that namespace.
type nftReader struct {
	ns   netns.NsHandle
	conn *nftables.Conn
}

func newNftReader(netnsPath string) (*nftReader, error) {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting())
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	return &nftReader{ns: ns, conn: conn}, nil
}

func (r *nftReader) close() {
	_ = r.conn.CloseLasting()
	r.ns.Close()
}

// backends returns the endpoint addresses the backends map holds for vip
// (any port, any slot). The map is looked up by name on every call: a full
// resync may replace it.
func (r *nftReader) backends(vip netip.Addr) (map[netip.Addr]bool, error) {
	set, err := r.conn.GetSetByName(&nftables.Table{Name: "herd", Family: nftables.TableFamilyIPv4}, "backends")
	if err != nil {
		return nil, fmt.Errorf("get map backends: %w", err)
	}
	elems, err := r.conn.GetSetElements(set)
	if err != nil {
		return nil, fmt.Errorf("list map backends: %w", err)
	}
	got := map[netip.Addr]bool{}
	for _, e := range elems {
		// key ip . l4proto . port . slot, value ip . port (4-byte fields)
		if len(e.Key) < 4 || len(e.Val) < 4 {
			continue
		}
		if netip.AddrFrom4([4]byte(e.Key[:4])) == vip {
			got[netip.AddrFrom4([4]byte(e.Val[:4]))] = true
		}
	}
	return got, nil
}

// waitGone polls the backends map every 2 ms until it holds no element of
// vip leading to ip, and returns when it first saw that.
func (r *nftReader) waitGone(ctx context.Context, vip, ip netip.Addr) (time.Time, error) {
	for {
		// An error (the map replaced between the two reads) is retried.
		got, err := r.backends(vip)
		if err == nil && !got[ip] {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s still in the backends of %s (last error %v): %w", ip, vip, err, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
