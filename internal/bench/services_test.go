package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// BenchmarkEndpointPropagation measures, per iteration, the time from a new
// pod becoming Ready on node a to the first answer from that pod through
// the service's VIP, asked by a pod on node b on new connections.
//
// Each iteration applies a new pod that starts not ready (benchserver
// -ready=false behind an HTTP readiness probe asked every second), waits
// until the VIP refuses from node b (the service has no ready endpoint:
// the previous pod is gone), switches it ready through its own IP and
// measures; then deletes it. So any answer through the VIP proves that the
// new endpoint reached node b's rules.
//
// A new pod per iteration, applied after a random pause, because endpoint
// changes travel on memberlist's gossip ticks (every 200 ms): one pod
// flipped again and again would become ready on its probe's 1 s ticks, at
// the same phase of the gossip ticks every time, and measure one point of
// the distribution over and over.
//
// "Became Ready" is when agentd on node a reports ready=true in GetPod,
// polled every 2 ms; the clock starts at the sending of the last poll that
// still said not ready, so the figure is an upper bound (by one poll, a few
// ms). The probe's own delay (up to its 1 s period) is not counted: it is
// the kubelet-like part, the same with or without services.
func BenchmarkEndpointPropagation(b *testing.B) {
	sb := newSvcBench(b, "bp", "10.84.0.0/24")
	a := sb.c.Nodes[0]
	vip := sb.applyService(b, "prop")
	ctx := context.Background()

	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("prop-%d", i)
		time.Sleep(rand.N(time.Second))
		pod := sb.applyPod(b, a, serverPod(sb.image, name, map[string]string{"bench": "prop"}, true))
		direct := pod.GetStatus().GetPodIp() + ":8080"
		// Running is reported before benchserver listens.
		waitUntil(b, 30*time.Second, name+" answers on its IP", func() (bool, error) {
			body, err := sb.get(a.Lab.Path(), direct, "/")
			return body == name, err
		})
		waitUntil(b, 30*time.Second, "the VIP refuses from node b", func() (bool, error) {
			return sb.refused(vip)
		})
		d, err := sb.propagation(a, direct, vip, name)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
		deletePod(b, ctx, a.Pods, name)
	}
	b.Logf("propagation over %d: %v", len(lat), sorted(lat))
	b.ReportMetric(ms(nearestRank(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(nearestRank(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(slices.Max(lat)), "max-ms")
}

// propagation switches the pod ready and measures from agentd's report of
// ready=true to the first answer from the pod through the VIP.
func (sb *svcBench) propagation(a *acctest.ClusterNode, direct, vip, name string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readyAt := make(chan time.Time, 1)
	errc := make(chan error, 1)
	told := time.Now()
	if err := sb.tell(a, direct, "up"); err != nil {
		return 0, err
	}
	go func() {
		t, err := pollReady(ctx, a, name, told)
		readyAt <- t
		errc <- err
	}()
	answered, err := sb.pollAnswer(ctx, vip, name)
	if err != nil {
		return 0, fmt.Errorf("answer through the VIP: %w", err)
	}
	t0 := <-readyAt
	if err := <-errc; err != nil {
		return 0, fmt.Errorf("pod %s ready: %w", name, err)
	}
	// Never negative: the clock starts before agentd could have said ready.
	return max(answered.Sub(t0), 0), nil
}

// pollReady polls GetPod every 2 ms until the pod is ready, and returns
// when the last poll that still said not ready was sent (or since, if the
// first poll already says ready): the pod became ready after that.
func pollReady(ctx context.Context, n *acctest.ClusterNode, name string, since time.Time) (time.Time, error) {
	notReady := since
	for {
		sent := time.Now()
		p, err := n.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: name})
		if err != nil {
			return time.Time{}, err
		}
		if p.GetStatus().GetReady() {
			return notReady, nil
		}
		notReady = sent
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// pollAnswer asks the VIP from the client pod until name answers, and
// returns the time of that answer. Refusals (no ready endpoint yet) are
// retried at once; they cost well under a millisecond.
func (sb *svcBench) pollAnswer(ctx context.Context, vip, name string) (time.Time, error) {
	for {
		body, err := sb.get(sb.client, vip, "/")
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

// refused reports whether a new connection to addr from the client pod is
// refused (a service without ready endpoints rejects).
func (sb *svcBench) refused(addr string) (bool, error) {
	conn, err := sb.dialIn(sb.client, addr, 2*time.Second)
	if err == nil {
		conn.Close()
		return false, errors.New("connected")
	}
	return errors.Is(err, syscall.ECONNREFUSED), err
}

// tell switches benchserver's readiness ("up" or "down") through the
// pod's own IP, from its node's namespace.
func (sb *svcBench) tell(n *acctest.ClusterNode, direct, state string) error {
	if _, err := sb.get(n.Lab.Path(), direct, "/ready/"+state); err != nil {
		return fmt.Errorf("tell %s ready/%s: %w", direct, state, err)
	}
	return nil
}

// nearestRank is the p-th percentile by the nearest-rank method: with 20
// samples p99 is the largest, the honest reading of so few.
func nearestRank(ds []time.Duration, p float64) time.Duration {
	s := sorted(ds)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}
