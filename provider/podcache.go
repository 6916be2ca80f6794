package provider

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// podSnapshotTTL bounds how old a node's pod list may be when it answers a
// refresh. A plan refreshes all its pods within a few seconds, so one list
// per node serves them all; a long-lived provider process never answers
// from a list older than this.
const podSnapshotTTL = 5 * time.Second

// podCache answers the refresh of many pods on one node with one ListPods
// call instead of one GetPod per pod: a plan of 500 pods on a node makes
// one RPC to it, not 500.
//
// A snapshot is used only while no write went through any of the pool's
// connections since it was taken (each write bumps the generation before
// it is sent and after it returns, and a list fetched across a write is
// not kept), so a Read after this provider created, replaced or deleted a
// pod always asks the node again. Changes made behind the provider's back
// are seen at the next plan (a new provider process) or after
// podSnapshotTTL.
type podCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	gen     uint64 // bumped before and after every write
	writing int    // writes in flight
	nodes   map[podListKey]*nodePods
}

// podListKey is one node's pod list of one namespace ("": of every
// namespace): a certificate limited to namespaces may list only those.
type podListKey struct {
	node      poolKey
	namespace string
}

type nodePods struct {
	snap     *podSnapshot
	fetching chan struct{} // closed when the ListPods in flight ends
}

type podSnapshot struct {
	gen  uint64
	at   time.Time
	pods map[string]*herdv1.Pod
	// err is why the node could not be listed (e.g. a list bigger than a
	// gRPC message): refreshes ask for each pod instead until the TTL.
	err error
}

func newPodCache() *podCache {
	return &podCache{ttl: podSnapshotTTL, now: time.Now, nodes: map[podListKey]*nodePods{}}
}

// beginWrite and endWrite bracket an RPC that may change what a node
// reports.
func (c *podCache) beginWrite() {
	c.mu.Lock()
	c.gen++
	c.writing++
	c.mu.Unlock()
}

func (c *podCache) endWrite() {
	c.mu.Lock()
	c.gen++
	c.writing--
	c.mu.Unlock()
}

// validLocked returns the node's snapshot if it may answer now.
func (c *podCache) validLocked(np *nodePods) *podSnapshot {
	s := np.snap
	if s == nil || s.gen != c.gen || c.writing > 0 || c.now().Sub(s.at) >= c.ttl {
		return nil
	}
	return s
}

// get returns the named pod as the node's pod list (fetched at most once
// per TTL, shared by concurrent callers) reports it, or a NotFound error;
// it falls back to GetPod whenever the list cannot answer.
func (c *podCache) get(ctx context.Context, k podListKey, pc herdv1.PodServiceClient, name string) (*herdv1.Pod, error) {
	waited := false
	for {
		c.mu.Lock()
		np := c.nodes[k]
		if np == nil {
			np = &nodePods{}
			c.nodes[k] = np
		}
		if s := c.validLocked(np); s != nil {
			c.mu.Unlock()
			if s.err != nil {
				break
			}
			p, ok := s.pods[name]
			if !ok {
				return nil, status.Errorf(codes.NotFound, "pod %s not found", name)
			}
			return proto.Clone(p).(*herdv1.Pod), nil
		}
		if ch := np.fetching; ch != nil {
			c.mu.Unlock()
			if waited {
				// The list we waited for was not kept (a write
				// interleaved, or it failed): ask for this pod alone.
				break
			}
			waited = true
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if waited {
			c.mu.Unlock()
			break
		}
		ch := make(chan struct{})
		np.fetching = ch
		gen, writing := c.gen, c.writing
		c.mu.Unlock()

		resp, err := pc.ListPods(ctx, &herdv1.ListPodsRequest{Namespace: k.namespace})

		c.mu.Lock()
		np.fetching = nil
		close(ch)
		// A list that a write may have overtaken is not kept, nor one cut
		// short by this caller's context (not the node's answer).
		keep := writing == 0 && c.gen == gen && ctx.Err() == nil
		if keep {
			s := &podSnapshot{gen: gen, at: c.now(), err: err}
			if err == nil {
				s.pods = make(map[string]*herdv1.Pod, len(resp.GetPods()))
				for _, p := range resp.GetPods() {
					s.pods[p.GetSpec().GetName()] = p
				}
			}
			np.snap = s
		}
		c.mu.Unlock()
		waited = true
		if !keep || err != nil {
			break
		}
	}
	return pc.GetPod(ctx, &herdv1.GetPodRequest{Name: name, Namespace: k.namespace})
}

// readOnly reports whether an RPC cannot change what a node reports: its
// method reads (Get, List, Watch, health checks, logs, waits), or its
// request is a dry run. Anything else counts as a write.
func readOnly(method string, req any) bool {
	m := method[strings.LastIndexByte(method, '/')+1:]
	for _, p := range []string{"Get", "List", "Watch", "Check", "PodLogs", "WaitEndpointsApplied", "RevealSecret"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	if d, ok := req.(interface{ GetDryRun() bool }); ok && d.GetDryRun() {
		return true
	}
	return false
}

func (c *podCache) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if readOnly(method, req) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c.beginWrite()
	defer c.endWrite()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// streamInterceptor counts a write stream as a write while it is open.
func (c *podCache) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if readOnly(method, nil) {
		return streamer(ctx, desc, cc, method, opts...)
	}
	// A stream's request is sent after it opens; without it, the stream
	// counts as a write until it ends.
	c.beginWrite()
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		c.endWrite()
		return nil, err
	}
	return &writeStream{ClientStream: s, done: sync.OnceFunc(c.endWrite)}, nil
}

type writeStream struct {
	grpc.ClientStream
	done func()
}

func (s *writeStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.done()
	}
	return err
}

// ReadPod returns the named pod of the node nodeID as the refresh of a
// herd_pod sees it: from the node's pod list, fetched once for all the
// pods a plan refreshes on that node (see podCache), or a NotFound error.
// A pod of another namespace than namespace (unless empty) is not found.
func (p *Pool) ReadPod(ctx context.Context, nodeID, namespace, name string) (*herdv1.Pod, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	k, err := keyOf(nodeID)
	if err != nil {
		return nil, err
	}
	return p.pods.get(ctx, podListKey{k, namespace}, herdv1.NewPodServiceClient(cc), name)
}

func keyOf(nodeID string) (poolKey, error) {
	name, addr, err := ParseNodeID(nodeID)
	if err != nil {
		return poolKey{}, fmt.Errorf("node id %q: %w", nodeID, err)
	}
	return poolKey{name, addr}, nil
}
