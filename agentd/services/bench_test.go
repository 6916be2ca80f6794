package services

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// nopPlane is a data plane that takes everything and does nothing: the
// figures below are the controller's own cost (agentd/network/nft's
// benchmarks time the kernel's part).
type nopPlane struct{}

func (nopPlane) Sync(context.Context, []nft.Service) error            { return nil }
func (nopPlane) Apply(context.Context, []nft.Service, []string) error { return nil }

// scaleStore holds n services selecting app=s<i>, each with eps endpoints
// spread over 5 owners.
func scaleStore(b testing.TB, n, eps int) *memStore {
	st := newMemStore()
	for i := range n {
		key := fmt.Sprintf("bench/s%d", i)
		svc := &herdv1.Service{
			Spec:   &herdv1.ServiceSpec{Namespace: "bench", Name: fmt.Sprintf("s%d", i), Type: TypeClusterIP, Selector: map[string]string{"app": fmt.Sprintf("s%d", i)}, Ports: []*herdv1.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: 8080}}},
			Status: &herdv1.ServiceStatus{ClusterIp: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}).String()},
		}
		v, err := encode(svc)
		if err != nil {
			b.Fatal(err)
		}
		st.svcs[key] = cluster.Object{Kind: KindService, Key: key, Value: v, Version: uint64(i + 1), Writer: "n1"}
		for j := range eps {
			k := i*eps + j
			e := endpoint{Pod: fmt.Sprintf("p%d", k), IP: netip.AddrFrom4([4]byte{10, 244, byte(k >> 8), byte(k)}).String(), Ready: true, Labels: map[string]string{"app": fmt.Sprintf("s%d", i)}}
			raw, _ := json.Marshal(e)
			st.entries[epKey{fmt.Sprintf("n%d", k%5), e.Pod}] = raw
		}
	}
	return st
}

// BenchmarkEndpointChange: one endpoint's readiness flips (the event in
// the store) and the controller computes and hands its rules to the data
// plane — per change, at 1k and 10k services of 10 endpoints. "before" is
// the from-scratch computation the controller did on every event until it
// became incremental, timed in the same run (at 1k only: at 10k it takes
// minutes).
func BenchmarkEndpointChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := scaleStore(b, n, 10)
			c := NewController(st, nopPlane{}, slog.New(slog.DiscardHandler))
			ctx := context.Background()
			t0 := time.Now()
			c.pass(ctx, passFull)
			full := time.Since(t0)
			k := epKey{"n3", "p13"}
			var e endpoint
			_ = json.Unmarshal(st.entries[k], &e)
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				e.Ready = i%2 == 1
				st.entries[k], _ = json.Marshal(e)
				t := time.Now()
				c.note(cluster.Event{Type: cluster.EventEntry, Kind: KindEndpoint, Key: k.pod, Node: k.owner})
				c.pass(ctx, passChanges)
				lat = append(lat, time.Since(t))
			}
			if got := len(c.want["bench/s1"].Ports[0].Endpoints); got != 9 && got != 10 {
				b.Fatalf("bench/s1 has %d endpoints", got)
			}
			b.ReportMetric(us(median(lat)), "change-us")
			b.ReportMetric(us(maxOf(lat)), "max-us")
			t0 = time.Now()
			c.pass(ctx, passFull)
			b.ReportMetric(ms(time.Since(t0)), "resync-ms")
			b.ReportMetric(ms(full), "first-sync-ms")
			if n <= 1000 {
				t0 = time.Now()
				reference(st, nil)
				b.ReportMetric(ms(time.Since(t0)), "before-ms")
			}
		})
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
