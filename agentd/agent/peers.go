package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
	"github.com/herd-project/terraform-provider-herd/agentd/pods"
	"github.com/herd-project/terraform-provider-herd/agentd/server"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// peerStack is what a clustered node needs to reach the other members: the
// connection pool (nil when the node has no certificate to dial with), the
// node-to-node calls (secret replication) made through it and served by
// PeerService.Call, and the drain of deleted pods.
type peerStack struct {
	pool     *peers.Pool
	handlers *peers.Handlers
	calls    *peers.Caller
	cl       *cluster.Cluster
	svcs     *svcStack
	log      *slog.Logger
}

// startPeers builds the peer pool of a clustered node; nil without a
// cluster. A node started without certificates (no --listen) cannot dial
// members: it still drains its own rules, and reports the others as not
// confirmed.
func startPeers(cfg Config, cl *cluster.Cluster, svcs *svcStack, certs *certReloader, log *slog.Logger) (*peerStack, error) {
	if cl == nil {
		return nil, nil
	}
	p := &peerStack{cl: cl, svcs: svcs, handlers: peers.NewHandlers(), log: log.With("component", "peers")}
	p.calls = peers.NewCaller(cl, p.handlers, nil)
	if cfg.CACert == "" || cfg.Cert == "" || cfg.Key == "" {
		return p, nil
	}
	var t peers.TLS
	for _, f := range []struct {
		flag, src string
		dst       *[]byte
	}{{"--ca-cert", cfg.CACert, &t.CA}, {"--cert", cfg.Cert, &t.Cert}, {"--key", cfg.Key, &t.Key}} {
		b, err := pki.LoadPEMOrFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
		*f.dst = b
	}
	if certs != nil {
		t.GetClientCertificate = certs.getClientCertificate
	}
	pool, err := peers.NewPool(cl, t)
	if err != nil {
		return nil, err
	}
	p.pool = pool
	p.calls.SetConns(pool)
	return p, nil
}

// publishAPI publishes the address of the mTLS listener bound at addr.
func (p *peerStack) publishAPI(addr string, cfg Config) {
	if p == nil {
		return
	}
	if a, err := peers.Publish(p.cl, addr, nodeIPOf(cfg)); err != nil {
		p.log.Error("publish API address: members cannot drive this node", "err", err)
	} else {
		p.log.Info("API address published", "addr", a)
	}
}

func (p *peerStack) close() {
	if p != nil && p.pool != nil {
		p.pool.Close()
	}
}

func (p *peerStack) drainHook() pods.DrainFunc {
	if p == nil {
		return nil
	}
	return p.drain
}

// drain publishes the terminating pod's endpoint (not ready) now and asks
// every live member, this one included, to confirm its rules dropped it,
// in parallel, until ctx ends.
func (p *peerStack) drain(ctx context.Context, pod string) pods.DrainResult {
	pub := p.svcs.pub.Load()
	if pub == nil {
		return pods.DrainResult{} // services not started yet: not published either
	}
	seq, ok, err := pub.PublishNow(ctx, pod)
	if err != nil {
		p.log.Warn("drain: publish endpoint", "pod", pod, "err", err)
		return pods.DrainResult{}
	}
	if !ok {
		return pods.DrainResult{}
	}
	self := p.cl.Name()
	var (
		mu  sync.Mutex
		res pods.DrainResult
		wg  sync.WaitGroup
	)
	for _, m := range p.cl.Members() {
		if m.State != cluster.StateAlive && m.State != cluster.StateSuspect {
			continue
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			var ok bool
			if name == self {
				ok = p.svcs.ctrl.WaitApplied(ctx, self, pod, seq)
			} else {
				ok = p.askPeer(ctx, name, pod, seq)
			}
			mu.Lock()
			if ok {
				res.Drained = append(res.Drained, name)
			} else {
				res.TimedOut = append(res.TimedOut, name)
			}
			mu.Unlock()
		}(m.Name)
	}
	wg.Wait()
	sort.Strings(res.Drained)
	sort.Strings(res.TimedOut)
	return res
}

// askPeer asks member name to confirm it applied seq of this node's
// endpoint for pod, again after failures that may pass (the member is
// unreachable for a moment, or its own wait ended first), until ctx ends.
func (p *peerStack) askPeer(ctx context.Context, name, pod string, seq uint64) bool {
	if p.pool == nil {
		return false
	}
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		conn, err := p.pool.Conn(ctx, name)
		if err != nil {
			last = err
			return false, nil //nolint:nilerr // its address may not have reached this node yet: ask again
		}
		timeout := server.MaxWaitEndpoints
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if timeout < time.Millisecond {
			return false, nil
		}
		resp, err := herdv1.NewPeerServiceClient(conn).WaitEndpointsApplied(ctx, &herdv1.WaitEndpointsAppliedRequest{
			Owner: p.cl.Name(), Pod: pod, Seq: seq, TimeoutMs: timeout.Milliseconds(),
		})
		switch status.Code(err) {
		case codes.OK:
			return resp.GetApplied(), nil
		case codes.PermissionDenied, codes.InvalidArgument, codes.Unimplemented, codes.FailedPrecondition:
			return false, err // it never will
		}
		last = err
		return false, nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || wait.Interrupted(err) {
			err = last
		}
		p.log.Warn("drain: member did not confirm", "member", name, "pod", pod, "err", err)
		return false
	}
	return true
}
