package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// BenchmarkServiceRPS compares requests per second to one server pod
// through its service's VIP with the same pod's IP directly, from a client
// pod on the other node, with a new TCP connection per request (every
// request goes through the service's NAT rules) and with keep-alive
// connections (only each connection's first packet does). Each iteration is
// one round: per mode, both targets in slices ordered ABBA (which target
// goes first alternates between rounds), so drift of a shared machine hits
// both alike. Medians over the rounds; the ratio is the median of each
// round's VIP / direct, with its quartiles.
//
// BENCH_RPS_SECONDS (default 1) is the time each target gets per round and
// mode, BENCH_RPS_WORKERS (default 4) the number of concurrent clients.
func BenchmarkServiceRPS(b *testing.B) {
	sb := newSvcBench(b, "br", "10.85.0.0/24")
	pod := sb.applyPod(b, sb.c.Nodes[0], serverPod(sb.image, "rps", map[string]string{"bench": "rps"}, false))
	targets := map[string]string{"vip": sb.applyService(b, "rps"), "direct": pod.GetStatus().GetPodIp() + ":8080"}
	waitUntil(b, 30*time.Second, "the VIP answers from node b", func() (bool, error) {
		body, err := sb.get(sb.client, targets["vip"], "/")
		return body == "rps", err
	})
	load := loadGen{sb: sb, netns: sb.client, dur: envDuration("BENCH_RPS_SECONDS", time.Second), workers: envInt("BENCH_RPS_WORKERS", 4)}

	rps := map[string][]float64{} // "vip/new" -> one figure per round
	for round := 0; b.Loop(); round++ {
		first, second := "vip", "direct"
		if round%2 == 1 {
			first, second = second, first
		}
		for _, mode := range []string{"new", "keepalive"} {
			r1, r2, err := load.abba(targets[first], targets[second], mode == "keepalive")
			if err != nil {
				b.Fatalf("round %d, %s connections: %v", round, mode, err)
			}
			rps[first+"/"+mode] = append(rps[first+"/"+mode], r1)
			rps[second+"/"+mode] = append(rps[second+"/"+mode], r2)
		}
	}
	b.Logf("rps per round: %v", rps)
	for _, mode := range []string{"new", "keepalive"} {
		vip, direct := rps["vip/"+mode], rps["direct/"+mode]
		b.ReportMetric(medianF(vip), "vip-"+mode+"-rps")
		b.ReportMetric(medianF(direct), "direct-"+mode+"-rps")
		ratios := pairedRatios(vip, direct)
		b.ReportMetric(100*medianF(ratios), "ratio-"+mode+"-pct")
		// The spread says how far to trust the median on this machine.
		b.ReportMetric(100*quantileF(ratios, 0.25), "ratio-"+mode+"-p25-pct")
		b.ReportMetric(100*quantileF(ratios, 0.75), "ratio-"+mode+"-p75-pct")
	}
}

// pairedRatios divides each round's VIP figure by the same round's direct
// one: the two ran seconds apart, so their ratio is spared most of the
// drift of a shared machine between rounds.
func pairedRatios(vip, direct []float64) []float64 {
	r := make([]float64, len(vip))
	for i := range vip {
		r[i] = vip[i] / direct[i]
	}
	return r
}

// loadGen runs closed-loop HTTP clients inside one network namespace.
type loadGen struct {
	sb      *svcBench
	netns   string
	dur     time.Duration
	workers int
}

// abbaRepeats is how many times a round repeats the ABBA pattern: short
// slices, because the other load on a shared machine comes in bursts
// shorter than a second, and a burst should fall on both targets alike.
const abbaRepeats = 4

// abba measures two targets in slices ordered first, second, second,
// first (abbaRepeats times, each slice an eighth of a measurement at the
// default) and returns their answers per second.
func (l loadGen) abba(first, second string, keepAlive bool) (float64, float64, error) {
	addrs := [2]string{first, second}
	slice := l.dur / (2 * abbaRepeats)
	var n [2]int
	var el [2]time.Duration
	for range abbaRepeats {
		for _, i := range []int{0, 1, 1, 0} {
			c, d, err := l.run(addrs[i], keepAlive, slice)
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", addrs[i], err)
			}
			n[i] += c
			el[i] += d
		}
	}
	return float64(n[0]) / el[0].Seconds(), float64(n[1]) / el[1].Seconds(), nil
}

// run drives addr with every worker for dur and returns the answers and
// the time they took. Each worker stays on one OS thread in the namespace
// for the whole run, so every socket it dials belongs there. Any failed
// request is an error: at this load nothing should fail.
func (l loadGen) run(addr string, keepAlive bool, dur time.Duration) (int, time.Duration, error) {
	if err := l.sb.inLab(addr); err != nil {
		return 0, 0, err
	}
	counts := make([]int, l.workers)
	errs := make([]error, l.workers)
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for w := range l.workers {
		wg.Go(func() {
			errs[w] = acctest.InNetns(l.netns, func() error {
				var err error
				counts[w], err = worker(addr, deadline, keepAlive)
				return err
			})
		})
	}
	wg.Wait()
	el := time.Since(start)
	total := 0
	for w := range l.workers {
		if errs[w] != nil {
			return 0, 0, fmt.Errorf("worker %d after %d requests: %w", w, counts[w], errs[w])
		}
		total += counts[w]
	}
	return total, el, nil
}

// worker sends GET / to addr until deadline, on a new connection per
// request or on one kept-alive connection, and counts the answers. It runs
// on a thread inside the client's namespace: net.Dial creates its socket
// on the calling thread.
func worker(addr string, deadline time.Time, keepAlive bool) (int, error) {
	n := 0
	var br *bufio.Reader
	for time.Now().Before(deadline) {
		conn, err := dialTCP(addr)
		if err != nil {
			return n, err
		}
		if !keepAlive {
			// Close with a reset: no side keeps the connection in
			// TIME_WAIT, so the tens of thousands of connections of a run
			// neither exhaust the client's ports nor meet an old
			// connection's TIME_WAIT when a port comes round again.
			if err := conn.(*net.TCPConn).SetLinger(0); err != nil {
				conn.Close()
				return n, fmt.Errorf("set linger: %w", err)
			}
		}
		if br == nil {
			br = bufio.NewReader(conn)
		} else {
			br.Reset(conn)
		}
		_ = conn.SetDeadline(deadline.Add(5 * time.Second))
		for {
			if _, err := roundTrip(conn, br, "/", !keepAlive); err != nil {
				conn.Close()
				return n, err
			}
			n++
			if !keepAlive || !time.Now().Before(deadline) {
				break
			}
		}
		conn.Close()
	}
	return n, nil
}

// dialTCP dials on the calling thread; callers are inside the client's
// namespace (and have checked addr with inLab).
func dialTCP(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, 2*time.Second)
}

func medianF(v []float64) float64 { return quantileF(v, 0.5) }

// quantileF interpolates linearly between the closest ranks.
func quantileF(v []float64, q float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo+1 >= len(s) {
		return s[lo]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return def
}
