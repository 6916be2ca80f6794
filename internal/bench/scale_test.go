package bench

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// scaleMember is one scalenode process and its output, line by line.
type scaleMember struct {
	name  string
	ns    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	addr  string
	mu    sync.Mutex
	// lines read but not yet asked for (a change can be applied before
	// the member reports that it published it)
	backlog []string
}

func (m *scaleMember) send(b *testing.B, format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := fmt.Fprintf(m.stdin, format+"\n", args...); err != nil {
		b.Fatalf("%s: %v", m.name, err)
	}
}

// tryExpect is expect without failing: ok is false after timeout.
func (m *scaleMember) tryExpect(prefix string, timeout time.Duration) ([]string, bool) {
	for i, l := range m.backlog {
		if strings.HasPrefix(l, prefix) {
			m.backlog = slices.Delete(m.backlog, i, i+1)
			return strings.Fields(l), true
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-m.lines:
			if !ok {
				return nil, false
			}
			if strings.HasPrefix(l, prefix) {
				return strings.Fields(l), true
			}
			m.backlog = append(m.backlog, l)
		case <-deadline:
			return nil, false
		}
	}
}

// expect is tryExpect that fails the benchmark on a timeout.
func (m *scaleMember) expect(b *testing.B, prefix string, timeout time.Duration) []string {
	f, ok := m.tryExpect(prefix, timeout)
	if !ok {
		b.Fatalf("%s: no %q within %v (or it exited)", m.name, prefix, timeout)
	}
	return f
}

func statField(f []string, key string) int {
	for _, kv := range f {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// BenchmarkServicesScale: a cluster of 5 members — agentd's cluster store
// and services controller over real nftables, each in a network namespace
// of its own — holding 10k services and 100k endpoints (10 per service,
// spread over the members), without pods (the endpoints are synthetic: one
// machine cannot run 100k containers). Per iteration one member publishes a
// new endpoint of one service: the time from the store write to the
// transaction that puts it in the nft rules, on that member (event to
// rule) and on each of the other four (propagation); every member's kernel
// table is then checked for it, and it is withdrawn again. The measuring
// starts once every member holds everything and has gossiped its initial
// load out (100k entries published in seconds keep memberlist's queues full
// for minutes, and its receivers then drop messages: a real limit of a bulk
// start, repaired by push/pull, but not the steady state measured here).
// Also: memory per member, the time to converge, and a full resync.
//
//	BENCH_SCALE_SERVICES=10000  services (10 endpoints each)
func BenchmarkServicesScale(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, nftables)")
	}
	const nodes, eps = 5, 10
	nsvc := 10000
	if v, err := strconv.Atoi(os.Getenv("BENCH_SCALE_SERVICES")); err == nil && v > 0 {
		nsvc = v
	}
	root, err := acctest.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "scalenode")
	build := exec.Command("go", "build", "-o", bin, "./internal/bench/scalenode")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build scalenode: %v\n%s", err, out)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var ms_ []*scaleMember
	start := time.Now()
	for i := range nodes {
		m := &scaleMember{name: fmt.Sprintf("scale-%d", i), ns: fmt.Sprintf("herdscale-%d-%d", os.Getpid(), i), lines: make(chan string, 1024)}
		if out, err := exec.Command("ip", "netns", "add", m.ns).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v %s", err, out)
		}
		b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", m.ns).Run() })
		args := []string{"-name", m.name, "-key", hex.EncodeToString(key), "-netns", "/run/netns/" + m.ns,
			"-nodes", strconv.Itoa(nodes), "-index", strconv.Itoa(i), "-eps", strconv.Itoa(eps), "-total-services", strconv.Itoa(nsvc)}
		if i == 0 {
			args = append(args, "-services", strconv.Itoa(nsvc))
		} else {
			args = append(args, "-join", ms_[0].addr)
		}
		m.cmd = exec.Command(bin, args...)
		m.cmd.Stderr = os.Stderr
		stdout, err := m.cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if m.stdin, err = m.cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		if err := m.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = m.stdin.Close()
			done := make(chan struct{})
			go func() { _ = m.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = m.cmd.Process.Kill()
				<-done
			}
		})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				m.lines <- sc.Text()
			}
			close(m.lines)
		}()
		m.addr = m.expect(b, "addr", 30*time.Second)[1]
		m.expect(b, "loaded", 5*time.Minute)
		ms_ = append(ms_, m)
	}
	members := ms_
	// converged: every member's rules hold every service and endpoint
	var stats [nodes][]string
	lastLog := time.Now()
	waitUntil(b, 20*time.Minute, "every member's rules hold every endpoint", func() (bool, error) {
		done := true
		for i, m := range members {
			m.send(b, "stat")
			stats[i] = m.expect(b, "stat", time.Minute)
			// converged, and the initial load gossiped out (its messages
			// crowd out the ones measured otherwise)
			if statField(stats[i], "applied") != nsvc || statField(stats[i], "backends") != nsvc*eps || statField(stats[i], "queued") != 0 {
				done = false
			}
		}
		if !done && time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			for i := range members {
				fmt.Fprintf(os.Stderr, "%s after %s: %v\n", members[i].name, time.Since(start).Round(time.Second), stats[i][1:])
			}
		}
		return done, nil
	})
	converge := time.Since(start)
	var rss []float64
	for i := range members {
		rss = append(rss, float64(statField(stats[i], "rss_kb"))/1024)
		b.Logf("%s: %v", members[i].name, stats[i][1:])
	}

	var local, remote, removal []time.Duration
	unreported := 0
	for i := 0; b.Loop(); i++ {
		svc := (i*7919 + 13) % nsvc
		key := fmt.Sprintf("bench/s%d", svc)
		for _, m := range members {
			m.backlog = nil
			m.send(b, "watch %s", key)
		}
		origin := members[i%nodes]
		pod := fmt.Sprintf("x%d", i)
		for _, step := range []struct {
			cmd  string
			want int
		}{{fmt.Sprintf("pub %s s%d %d", pod, svc, nsvc*eps+i), eps + 1}, {"unpub " + pod, eps}} {
			origin.send(b, "%s", step.cmd)
			f := origin.expect(b, strings.Fields(step.cmd)[0]+" ", time.Minute)
			t0, _ := strconv.ParseInt(f[2], 10, 64)
			for _, m := range members {
				var at int64
				waited := time.Now()
				for at == 0 && time.Since(waited) < 3*time.Minute {
					f, ok := m.tryExpect("applied "+key+" ", 10*time.Second)
					if !ok {
						continue
					}
					if n, _ := strconv.Atoi(f[3]); n == step.want {
						at, _ = strconv.ParseInt(f[2], 10, 64)
					}
				}
				d := time.Duration(at - t0)
				switch {
				case at == 0:
					// the rules may have changed without the member's
					// report: the kernel check below says whether they did
					unreported++
					fmt.Fprintf(os.Stderr, "%s: no report of %s with %d endpoints\n", m.name, key, step.want)
				case step.want < eps+1:
					removal = append(removal, d)
				case m == origin:
					local = append(local, d)
				default:
					remote = append(remote, d)
				}
				if step.want == eps+1 {
					// the kernel holds it: the service's port has 11 slots
					out, err := exec.Command("ip", "netns", "exec", m.ns, "nft", "get", "element", "ip", "herd", "classes",
						fmt.Sprintf("{ 10.96.%d.%d . tcp . 80 }", byte(svc>>8), byte(svc))).CombinedOutput()
					if err != nil || !strings.Contains(string(out), fmt.Sprintf("slots-%d", eps+1)) {
						b.Fatalf("%s: the kernel's rules for %s lack the new endpoint: %v\n%s", m.name, key, err, out)
					}
				}
			}
		}
	}
	// a full resync at this size, on one member
	members[1].send(b, "resync")
	f := members[1].expect(b, "synced ", 5*time.Minute)
	rs, _ := strconv.ParseInt(f[1], 10, 64)

	slices.Sort(rss)
	b.Logf("event to rule on the writing member: %v", sorted(local))
	b.Logf("propagation to the other members: %v", sorted(remote))
	b.Logf("removal, every member: %v", sorted(removal))
	for _, r := range []struct {
		ds   []time.Duration
		p    float64
		name string
	}{{local, 0.5, "local-p50-ms"}, {local, 0.99, "local-p99-ms"}, {remote, 0.5, "remote-p50-ms"},
		{remote, 0.99, "remote-p99-ms"}, {removal, 0.5, "removal-p50-ms"}, {removal, 0.99, "removal-p99-ms"}} {
		if len(r.ds) > 0 {
			b.ReportMetric(ms(nearestRank(r.ds, r.p)), r.name)
		}
	}
	b.ReportMetric(float64(rs)/1e6, "resync-ms")
	b.ReportMetric(rss[len(rss)/2], "rss-mb-median")
	b.ReportMetric(rss[len(rss)-1], "rss-mb-max")
	b.ReportMetric(converge.Seconds(), "converge-s")
	b.ReportMetric(float64(unreported), "unreported")
}
