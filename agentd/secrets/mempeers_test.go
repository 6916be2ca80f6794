package secrets

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
)

// memPeers carries the replicator's calls between the test's nodes in
// memory; membership comes from the real cluster. agentd carries them over
// mTLS (agentd/peers, PeerService.Call), which has tests of its own; here
// the caller is the calling node's name, as a node certificate makes it.
type memPeers struct {
	*cluster.Cluster
	mu       sync.RWMutex
	handlers map[string]func(ctx context.Context, from string, req []byte) ([]byte, error)
}

var (
	memNodesMu sync.RWMutex
	memNodes   = map[string]*memPeers{}
)

func newMemPeers(t *testing.T, cl *cluster.Cluster) *memPeers {
	p := &memPeers{Cluster: cl, handlers: map[string]func(context.Context, string, []byte) ([]byte, error){}}
	memNodesMu.Lock()
	memNodes[cl.Name()] = p
	memNodesMu.Unlock()
	t.Cleanup(func() {
		memNodesMu.Lock()
		if memNodes[cl.Name()] == p {
			delete(memNodes, cl.Name())
		}
		memNodesMu.Unlock()
	})
	return p
}

func (p *memPeers) Handle(method string, h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers[method] = h
}

// Call reaches node only if this node sees it alive, like a dial of its
// published address; the handler runs on its own goroutine on copies.
func (p *memPeers) Call(ctx context.Context, node, method string, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	alive := node == p.Name()
	for _, m := range p.Members() {
		if m.Name == node && m.State == cluster.StateAlive {
			alive = true
		}
	}
	memNodesMu.RLock()
	to := memNodes[node]
	memNodesMu.RUnlock()
	if !alive || to == nil {
		return nil, fmt.Errorf("call %s on %s: member not reachable", method, node)
	}
	to.mu.RLock()
	h := to.handlers[method]
	to.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("call %s on %s: no handler for method", method, node)
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	req = bytes.Clone(req)
	go func() {
		out, err := h(ctx, p.Name(), req)
		done <- result{bytes.Clone(out), err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("call %s on %s: handler failed: %s", method, node, r.err.Error())
		}
		return r.out, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
