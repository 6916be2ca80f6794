package server

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultHealthInterval is how often the health service re-checks agentd's
// dependencies: often enough for a load balancer to notice a dead
// containerd quickly, rarely enough to cost containerd nothing.
const DefaultHealthInterval = 5 * time.Second

// healthWatcher keeps the standard grpc.health.v1 service current: service
// "" is agentd as a whole (SERVING only when every dependency works) and
// each dependency the node reports ("containerd", "store") is a service of
// its own. The protocol carries no reason, so a change is logged with it.
type healthWatcher struct {
	srv  *health.Server
	node Node
	log  *slog.Logger
	last map[string]healthpb.HealthCheckResponse_ServingStatus
}

func newHealthWatcher(node Node, log *slog.Logger) *healthWatcher {
	h := &healthWatcher{srv: health.NewServer(), node: node, log: log, last: map[string]healthpb.HealthCheckResponse_ServingStatus{}}
	// Not SERVING before the first check: health.NewServer starts "" as
	// SERVING, which would claim what nobody has checked yet.
	h.srv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	return h
}

// probe checks every dependency once and publishes the result.
func (h *healthWatcher) probe(ctx context.Context) {
	results := h.node.Health(ctx)
	overall := healthpb.HealthCheckResponse_SERVING
	for _, name := range slices.Sorted(maps.Keys(results)) {
		err := results[name]
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			overall = st
		}
		if prev, seen := h.last[name]; !seen || prev != st {
			if err != nil {
				h.log.Warn("dependency unhealthy", "dependency", name, "err", err)
			} else if seen {
				h.log.Info("dependency healthy again", "dependency", name)
			}
		}
		h.last[name] = st
		h.srv.SetServingStatus(name, st)
	}
	h.srv.SetServingStatus("", overall)
}

// run re-checks every interval until ctx is done, then reports every
// service NOT_SERVING so that clients stop sending work to a stopping
// agentd.
func (h *healthWatcher) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.srv.Shutdown()
			return
		case <-t.C:
			h.probe(ctx)
		}
	}
}

// StartHealth checks the dependencies once, so that the first health check
// a client makes is already true, then keeps checking every interval in the
// background until ctx is done. Call it before serving.
func (s *Server) StartHealth(ctx context.Context, every time.Duration) {
	s.health.probe(ctx)
	go s.health.run(ctx, every)
}
