package peers

// Node-to-node calls (secret replication) over the members' gRPC API:
// PeerService.Call, mTLS with node certificates on both ends. The callee
// takes the caller's name from the caller's verified certificate, so a
// member cannot speak for another; the request names no caller.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// MaxCallResponse bounds a call's answer as the caller receives it. A
// fetched secret is at most 1 MiB of keys and values, about 3 MiB as
// JSON in the worst case (many tiny keys); requests are bounded by the
// server's receive limit instead.
const MaxCallResponse = 8 << 20

// ErrUnreachable is Call's error (wrapped) when the member cannot be
// reached: it is not live, published no API address, or the connection
// failed.
var ErrUnreachable = errors.New("member not reachable")

// ErrNoHandler is Call's error (wrapped) when the member has no handler
// for the method.
var ErrNoHandler = errors.New("no handler for method")

// Handler answers one method; from is the calling member's name.
type Handler func(ctx context.Context, from string, req []byte) ([]byte, error)

// Handlers is the registry of call handlers, by method name.
type Handlers struct {
	mu sync.RWMutex
	m  map[string]Handler
}

// NewHandlers returns an empty registry.
func NewHandlers() *Handlers { return &Handlers{m: map[string]Handler{}} }

// Handle registers h for method (replacing is allowed; a nil h removes it).
func (h *Handlers) Handle(method string, f func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f == nil {
		delete(h.m, method)
		return
	}
	h.m[method] = f
}

// Lookup returns the handler of method.
func (h *Handlers) Lookup(method string) (func(ctx context.Context, from string, req []byte) ([]byte, error), bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f, ok := h.m[method]
	return f, ok
}

// Membership is the part of agentd/cluster.Cluster a Caller passes on.
type Membership interface {
	Name() string
	Members() []cluster.Member
	Subscribe() <-chan cluster.Event
	Unsubscribe(ch <-chan cluster.Event)
}

// Conns dials members (a *Pool).
type Conns interface {
	Conn(ctx context.Context, node string) (*grpc.ClientConn, error)
}

// Caller makes node-to-node calls: to another member over PeerService.Call,
// to this node's own name by running the local handler. It also serves
// membership from the cluster, so it is what agentd/secrets calls Peers.
type Caller struct {
	ms       Membership
	handlers *Handlers

	mu    sync.RWMutex
	conns Conns // nil until SetConns: calls to others fail as unreachable
}

// NewCaller returns a caller; handlers are the ones this node serves (the
// server dispatches PeerService.Call to them too).
func NewCaller(ms Membership, handlers *Handlers, conns Conns) *Caller {
	return &Caller{ms: ms, handlers: handlers, conns: conns}
}

// SetConns sets how members are dialed.
func (c *Caller) SetConns(conns Conns) {
	c.mu.Lock()
	c.conns = conns
	c.mu.Unlock()
}

func (c *Caller) Name() string                        { return c.ms.Name() }
func (c *Caller) Members() []cluster.Member           { return c.ms.Members() }
func (c *Caller) Subscribe() <-chan cluster.Event     { return c.ms.Subscribe() }
func (c *Caller) Unsubscribe(ch <-chan cluster.Event) { c.ms.Unsubscribe(ch) }

// Handle registers this node's handler for method.
func (c *Caller) Handle(method string, h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	c.handlers.Handle(method, h)
}

// Call sends req to member node's handler for method and returns its
// answer, within ctx's deadline (which travels with the call). Errors wrap
// ErrUnreachable, ErrNoHandler or the context's error; a handler's error
// arrives as its text. Error texts never include payloads.
func (c *Caller) Call(ctx context.Context, node, method string, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("call %s on %s: %w", method, node, err)
	}
	if node == c.ms.Name() {
		return c.callSelf(ctx, method, req)
	}
	c.mu.RLock()
	conns := c.conns
	c.mu.RUnlock()
	if conns == nil {
		return nil, fmt.Errorf("call %s on %s: %w: this node has no certificate to dial members with", method, node, ErrUnreachable)
	}
	conn, err := conns.Conn(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("call %s on %s: %w: %w", method, node, ErrUnreachable, err)
	}
	resp, err := herdv1.NewPeerServiceClient(conn).Call(ctx,
		&herdv1.PeerCallRequest{Method: method, Payload: req},
		grpc.MaxCallRecvMsgSize(MaxCallResponse))
	if err != nil {
		return nil, callError(ctx, node, method, err)
	}
	return resp.GetPayload(), nil
}

// callError turns a gRPC error into one that reads like the replicator
// expects; the status message is the handler's or the transport's text.
func callError(ctx context.Context, node, method string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("call %s on %s: %w", method, node, ctx.Err())
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("call %s on %s: %w: %s", method, node, ErrUnreachable, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("call %s on %s: %w", method, node, ErrNoHandler)
	case codes.DeadlineExceeded:
		return fmt.Errorf("call %s on %s: %w", method, node, context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("call %s on %s: %w", method, node, context.Canceled)
	case codes.Unknown:
		return fmt.Errorf("call %s on %s: handler failed: %s", method, node, st.Message())
	}
	return fmt.Errorf("call %s on %s: %s: %s", method, node, st.Code(), st.Message())
}

// callSelf runs this node's handler as a remote member would: on its own
// goroutine, on copies of the payloads, errors turned into the same values.
func (c *Caller) callSelf(ctx context.Context, method string, req []byte) ([]byte, error) {
	self := c.ms.Name()
	h, ok := c.handlers.Lookup(method)
	if !ok {
		return nil, fmt.Errorf("call %s on %s: %w", method, self, ErrNoHandler)
	}
	type result struct {
		out []byte
		err error
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	req = bytes.Clone(req)
	go func() {
		out, err := h(hctx, self, req)
		done <- result{bytes.Clone(out), err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("call %s on %s: handler failed: %s", method, self, r.err.Error())
		}
		return r.out, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("call %s on %s: %w", method, self, ctx.Err())
	}
}
