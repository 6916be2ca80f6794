package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// BenchmarkAgentdRSS: the memory of real agentds (a two-node cluster)
// holding many services. Each node runs 10 sleep pods labelled as the
// endpoints of the first 10 services (20 endpoints each, half of them
// remote); the other services select nothing. The services are created
// through node a's gRPC API from 32 goroutines at once, and replicate to
// node b through the cluster store.
//
// Reported: each agentd's resident set (VmRSS) before the pods and
// services and once node b holds them all, its peak (VmHWM), the time to
// create the services (apply-s) and the time from the first apply until
// node b lists every one of them (replicate-s). One iteration is enough:
// -benchtime 1x. Progress (services applied, each agentd's RSS) is logged
// every 30 s.
//
// Applying stops when the budget is spent: the figures are then those of
// the services applied so far ("services" says how many).
//
//	BENCH_RSS_SERVICES=10000      services
//	BENCH_RSS_APPLY_SECONDS=600   budget for applying them
func BenchmarkAgentdRSS(b *testing.B) {
	const (
		podsPerNode = 10
		selected    = 10 // services that select the pods
		workers     = 32
	)
	nsvc := envInt("BENCH_RSS_SERVICES", 10000)
	env := acctest.SharedEnv(b)
	c := env.NewCluster(b, acctest.ClusterOptions{
		Names:  []string{"brss-a", "brss-b"},
		Subnet: netip.MustParsePrefix("10.73.0.0/24"),
		// The default service range, 10.96.0.0/16, has room for every
		// service's cluster IP.
	})
	a, nb := c.Nodes[0], c.Nodes[1]
	ctx := context.Background()

	before := map[string]procMem{}
	for _, n := range c.Nodes {
		before[n.Agent.Name] = agentMem(b, n)
		b.Logf("%s: before: rss %.1f MB", n.Agent.Name, before[n.Agent.Name].rssMB())
	}

	// Endpoints: pods on both nodes, started together; they are not timed.
	epLabels := map[string]string{"rss-ep": "yes"}
	var pods []struct {
		n    *acctest.ClusterNode
		name string
	}
	for _, n := range c.Nodes {
		for i := range podsPerNode {
			name := fmt.Sprintf("ep-%s-%d", n.Agent.Name, i)
			spec := &herdv1.PodSpec{
				Name: name, Labels: epLabels,
				Containers: []*herdv1.ContainerSpec{{
					Name: "main", Image: env.Image, Command: sleepCmd,
					Ports: []*herdv1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}},
			}
			if _, err := n.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: spec}); err != nil {
				b.Fatalf("%s: apply pod %s: %v", n.Agent.Name, name, err)
			}
			pods = append(pods, struct {
				n    *acctest.ClusterNode
				name string
			}{n, name})
		}
	}
	for _, p := range pods {
		waitUntil(b, 5*time.Minute, p.n.Agent.Name+": pod "+p.name+" running with an IP", func() (bool, error) {
			got, err := p.n.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: p.name})
			if err != nil {
				return false, err
			}
			return got.GetStatus().GetPhase() == "Running" && got.GetStatus().GetPodIp() != "", nil
		})
	}
	for _, n := range c.Nodes {
		m := agentMem(b, n)
		b.Logf("%s: with %d pods: rss %.1f MB", n.Agent.Name, podsPerNode, m.rssMB())
	}

	svcName := func(i int) string { return fmt.Sprintf("rss-%05d", i) }
	budget := envDuration("BENCH_RSS_APPLY_SECONDS", 10*time.Minute)
	for b.Loop() {
		var (
			next, applied atomic.Int64
			wg            sync.WaitGroup
			mu            sync.Mutex
			failed        error
		)
		start := time.Now()
		stopProgress := progress(b, c.Nodes, &applied, start)
		for range workers {
			wg.Go(func() {
				for time.Since(start) < budget {
					i := int(next.Add(1)) - 1
					if i >= nsvc {
						return
					}
					sel := map[string]string{"rss-svc": svcName(i)} // selects no pod
					if i < selected {
						sel = epLabels
					}
					_, err := a.Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
						Name:     svcName(i),
						Selector: sel,
						Ports:    []*herdv1.ServicePort{{Name: "http", Port: 80, TargetPort: 8080}},
					}})
					if err != nil {
						mu.Lock()
						failed = fmt.Errorf("apply service %s: %w", svcName(i), err)
						mu.Unlock()
						next.Store(int64(nsvc)) // the others stop too
						return
					}
					applied.Add(1)
				}
			})
		}
		wg.Wait()
		apply := time.Since(start)
		stopProgress()
		if failed != nil {
			b.Fatal(failed)
		}
		// Past the budget the workers stop: on a slow machine the figures
		// are then those of fewer services (the "services" metric), which
		// says more than a benchmark killed by its timeout.
		held := int(applied.Load())
		if held < nsvc {
			b.Logf("apply budget %v spent: %d of %d services applied", budget, held, nsvc)
		}
		b.Logf("%d services applied on %s in %v", held, a.Agent.Name, apply)

		waitUntilEvery(b, 10*time.Minute, time.Second, nb.Agent.Name+" lists every service", func() (bool, error) {
			list, err := listServices(ctx, nb)
			if err != nil {
				return false, err
			}
			n := 0
			for _, s := range list {
				if strings.HasPrefix(s.GetSpec().GetName(), "rss-") {
					n++
				}
			}
			return n >= held, fmt.Errorf("%d of %d", n, held)
		})
		replicate := time.Since(start)
		b.Logf("%s holds all %d services %v after the first apply", nb.Agent.Name, held, replicate)

		// The endpoints reach node b's view too (every pod of both nodes).
		for i := range min(selected, held) {
			waitUntilEvery(b, 5*time.Minute, 200*time.Millisecond, nb.Agent.Name+": endpoints of "+svcName(i), func() (bool, error) {
				s, err := nb.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: svcName(i)})
				if err != nil {
					return false, err
				}
				n := len(s.GetStatus().GetEndpoints())
				return n == len(pods), fmt.Errorf("%d of %d endpoints", n, len(pods))
			})
		}

		for _, n := range c.Nodes {
			m0, m1 := before[n.Agent.Name], agentMem(b, n)
			b.Logf("%s: rss %.1f MB -> %.1f MB (peak %.1f MB)", n.Agent.Name, m0.rssMB(), m1.rssMB(), m1.hwmMB())
			key := "rss-" + strings.TrimPrefix(n.Agent.Name, "brss-")
			b.ReportMetric(m0.rssMB(), key+"-before-mb")
			b.ReportMetric(m1.rssMB(), key+"-mb")
			b.ReportMetric(m1.hwmMB(), key+"-peak-mb")
		}
		b.ReportMetric(float64(held), "services")
		b.ReportMetric(apply.Seconds(), "apply-s")
		b.ReportMetric(replicate.Seconds(), "replicate-s")
		// The services are left to the cluster's teardown: deleting them
		// here costs as long as creating them did.
	}
}

// progress logs every 30 s how many services are applied and each agentd's
// resident set, so a run cut short still shows how far it got; the
// returned func stops it.
func progress(b *testing.B, nodes []*acctest.ClusterNode, applied *atomic.Int64, start time.Time) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			line := fmt.Sprintf("%v: %d applied", time.Since(start).Round(time.Second), applied.Load())
			for _, n := range nodes {
				if m, err := readMem(n.Agent.PID()); err == nil {
					line += fmt.Sprintf(", %s rss %.1f MB", n.Agent.Name, m.rssMB())
				}
			}
			b.Log(line)
		}
	})
	return func() { close(done); wg.Wait() }
}

// listServices lists every service a node holds; at this size the answer
// outgrows gRPC's default 4 MiB limit for received messages.
func listServices(ctx context.Context, n *acctest.ClusterNode) ([]*herdv1.Service, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := n.Services.ListServices(ctx, &herdv1.ListServicesRequest{}, grpc.MaxCallRecvMsgSize(256<<20))
	return resp.GetServices(), err
}

// waitUntilEvery is waitUntil with a poll interval of its own: listing
// thousands of services every 20 ms would load the agentd measured.
func waitUntilEvery(b *testing.B, timeout, every time.Duration, what string, cond func() (bool, error)) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not after %s (last: %v)", what, timeout, err)
		}
		time.Sleep(every)
	}
}

// procMem is a process's resident set, now and at its peak, in kB.
type procMem struct{ rssKB, hwmKB int }

func (m procMem) rssMB() float64 { return float64(m.rssKB) / 1024 }
func (m procMem) hwmMB() float64 { return float64(m.hwmKB) / 1024 }

// agentMem reads VmRSS and VmHWM of the node's agentd.
func agentMem(b *testing.B, n *acctest.ClusterNode) procMem {
	b.Helper()
	m, err := readMem(n.Agent.PID())
	if err != nil {
		b.Fatalf("%s: %v", n.Agent.Name, err)
	}
	return m
}

// readMem reads VmRSS and VmHWM of a process from /proc.
func readMem(pid int) (procMem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	defer f.Close()
	var m procMem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v) // "123456 kB"
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.Atoi(fields[0])
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.rssKB = kb
		case "VmHWM":
			m.hwmKB = kb
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if m.rssKB == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}
