package cluster

// Point-to-point request/response between members. Gossip reaches everyone;
// a call reaches one member only: it travels over memberlist's reliable
// user-message stream (one TCP connection per message, encrypted with the
// gossip key), is never queued for gossip nor relayed, and nothing of it is
// persisted. memberlist does not tell NotifyMsg who sent a message, so a
// request names its caller and carries an id; the answer is sent back with
// SendReliable to the member of that name (as memberlist knows it, never to
// an address the request claims) and matched to the waiting Call by id.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrNoMember is returned (wrapped) by Call when the node is not a live
// member as this node sees it.
var ErrNoMember = errors.New("cluster: no such live member")

// ErrNoHandler is returned (wrapped) by Call when the called member has no
// handler for the method.
var ErrNoHandler = errors.New("cluster: no handler for method")

// RemoteError is a handler's error as the caller receives it: only its text
// crosses the wire.
type RemoteError struct {
	Node   string // the member whose handler failed
	Method string
	Msg    string // the handler's error text
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("cluster: call %s on %s: handler failed: %s", e.Method, e.Node, e.Msg)
}

// handlerFunc answers calls of one method.
type handlerFunc func(ctx context.Context, from string, req []byte) ([]byte, error)

// Message kinds. Gossip envelopes are JSON objects, so they begin with '{';
// call messages begin with one of these bytes instead, which no JSON text
// can begin with. Nodes without calls log them as bad messages and drop them.
const (
	msgCall  byte = 0x01
	msgReply byte = 0x02
)

// maxCallPayload bounds requests and responses. memberlist refuses streams
// over 20 MiB after its LZW compression, which expands incompressible data
// (a secret, say) by about 1.4x; 8 MiB stays well inside that.
const maxCallPayload = 8 << 20

// memberCheckEvery is how often a waiting Call checks that its member is
// still the live process it sent the request to.
const memberCheckEvery = 250 * time.Millisecond

// lookupCallerWait is how long a member that received a call waits to learn
// about a caller it does not know yet (one that has just joined) before it
// drops the call.
const lookupCallerWait = 2 * time.Second

// Reply statuses.
const (
	replyOK        = ""
	replyNoHandler = "nohandler"
	replyError     = "error"
)

// callHeader precedes the payload of a call message. Only names, ids and
// error text go here: payloads may carry secrets and are never logged.
type callHeader struct {
	ID      uint64 `json:"id"`
	From    string `json:"f"`
	Method  string `json:"m,omitempty"`
	Timeout int64  `json:"t,omitempty"` // request: the caller's remaining time, ns (0: none)
	Status  string `json:"s,omitempty"` // reply
	Msg     string `json:"msg,omitempty"`
}

// encodeCall frames a call message: kind byte, uvarint header length, JSON
// header, raw payload (raw, not JSON: base64 would grow a 1 MiB secret by a third).
func encodeCall(kind byte, h callHeader, payload []byte) ([]byte, error) {
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(hb)+len(payload))
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(hb)))
	b = append(b, hb...)
	return append(b, payload...), nil
}

// decodeCall parses a call message. The payload is copied: memberlist may
// reuse b once NotifyMsg returns.
func decodeCall(b []byte) (byte, callHeader, []byte, error) {
	var h callHeader
	if len(b) == 0 {
		return 0, h, nil, errors.New("empty message")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return 0, h, nil, errors.New("bad header length")
	}
	start := 1 + k
	if err := json.Unmarshal(b[start:start+int(n)], &h); err != nil {
		return 0, h, nil, fmt.Errorf("header: %w", err)
	}
	return b[0], h, bytes.Clone(b[start+int(n):]), nil
}

type callReply struct {
	status  string
	msg     string
	payload []byte
}

func (r callReply) result(node, method string) ([]byte, error) {
	switch r.status {
	case replyOK:
		return r.payload, nil
	case replyNoHandler:
		return nil, fmt.Errorf("cluster: call %s on %s: %w", method, node, ErrNoHandler)
	case replyError:
		return nil, &RemoteError{Node: node, Method: method, Msg: r.msg}
	}
	return nil, fmt.Errorf("cluster: call %s on %s: unknown reply status %q", method, node, r.status)
}

// pendingCall is a Call waiting for its reply.
type pendingCall struct {
	node string // only this member may answer
	ch   chan callReply
}

// Handle registers the handler for method (before or after start; replacing
// is allowed, a nil h removes it). Handlers run on their own goroutine, with
// a context cancelled when the cluster shuts down or, for remote calls, when
// the caller's deadline passes; from is the calling member's name (as it
// claims: every member holds the gossip key, but the answer only ever goes
// to the member of that name).
func (c *Cluster) Handle(method string, h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	if h == nil {
		delete(c.handlers, method)
		return
	}
	c.handlers[method] = h
}

// Call sends req to the live member node and waits for its handler's answer.
// It travels over memberlist's reliable (TCP) user-message stream, encrypted
// by the gossip key; it is never gossiped or relayed, and nothing of it is
// persisted. Calling this node's own name runs the handler directly.
//
// Errors wrap ErrNoMember (node is not a live member, or died, left or
// restarted before answering), ErrNoHandler (it has no handler for method),
// the context's error, or ErrClosed; a handler's error comes back as
// *RemoteError. The caller's deadline travels with the request and bounds the
// handler's context. Requests and responses are limited to 8 MiB. Error texts
// never include payloads.
func (c *Cluster) Call(ctx context.Context, node, method string, req []byte) ([]byte, error) {
	if c.closed() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: call %s on %s: %w", method, node, err)
	}
	if len(req) > maxCallPayload {
		return nil, fmt.Errorf("cluster: call %s on %s: request of %d bytes exceeds the limit of %d", method, node, len(req), maxCallPayload)
	}
	if node == c.name {
		return c.callSelf(ctx, method, req)
	}
	epoch := c.epochOf(node) // of the process the request goes to
	to := c.liveNode(node)
	if to == nil {
		return nil, fmt.Errorf("cluster: call %s on %s: %w", method, node, ErrNoMember)
	}
	id := c.nextID.Add(1)
	h := callHeader{ID: id, From: c.name, Method: method}
	if dl, ok := ctx.Deadline(); ok {
		h.Timeout = max(int64(time.Until(dl)), 1)
	}
	msg, err := encodeCall(msgCall, h, req)
	if err != nil {
		return nil, fmt.Errorf("cluster: call %s on %s: encode: %w", method, node, err)
	}
	p := &pendingCall{node: node, ch: make(chan callReply, 1)}
	c.callMu.Lock()
	c.pending[id] = p
	c.callMu.Unlock()
	// Forget the call however it ends: a late reply then finds nothing and
	// is dropped.
	defer func() {
		c.callMu.Lock()
		delete(c.pending, id)
		c.callMu.Unlock()
	}()

	// SendReliable blocks (dial, compress, write) and knows no context.
	sent := make(chan error, 1)
	go func() { sent <- c.ml.SendReliable(to, msg) }()
	// A member that dies or restarts never answers: do not wait for it
	// until the deadline (there may be none).
	check := time.NewTicker(memberCheckEvery)
	defer check.Stop()
	for {
		select {
		case <-check.C:
			if c.liveNode(node) == nil || c.epochOf(node) != epoch {
				return nil, fmt.Errorf("cluster: call %s on %s: member died, left or restarted before answering: %w", method, node, ErrNoMember)
			}
		case r := <-p.ch:
			return r.result(node, method)
		case err := <-sent:
			if err != nil {
				return nil, fmt.Errorf("cluster: call %s on %s: send: %w", method, node, err)
			}
			sent = nil // sent; keep waiting for the reply
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: call %s on %s: %w", method, node, ctx.Err())
		case <-c.stop:
			return nil, ErrClosed
		}
	}
}

// callSelf runs this node's handler as a remote member would: on its own
// goroutine, on copies of the payloads, errors turned into the same values.
func (c *Cluster) callSelf(ctx context.Context, method string, req []byte) ([]byte, error) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	done := make(chan callReply, 1)
	req = bytes.Clone(req)
	go func() { done <- c.runHandler(hctx, c.name, method, req) }()
	select {
	case r := <-done:
		r.payload = bytes.Clone(r.payload)
		return r.result(c.name, method)
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: call %s on %s: %w", method, c.name, ctx.Err())
	case <-c.stop:
		return nil, ErrClosed
	}
}

func (c *Cluster) runHandler(ctx context.Context, from, method string, req []byte) callReply {
	c.callMu.Lock()
	h := c.handlers[method]
	c.callMu.Unlock()
	if h == nil {
		return callReply{status: replyNoHandler}
	}
	resp, err := h(ctx, from, req)
	switch {
	case err != nil:
		return callReply{status: replyError, msg: err.Error()}
	case len(resp) > maxCallPayload:
		return callReply{status: replyError, msg: fmt.Sprintf("response of %d bytes exceeds the limit of %d", len(resp), maxCallPayload)}
	}
	return callReply{payload: resp}
}

// liveNode is the member called name if it is alive, as a Node for
// SendReliable. It comes from this package's view (kept by the event
// delegate), not from memberlist.Members, whose nodes memberlist keeps
// updating in place after it returns them.
func (c *Cluster) liveNode(name string) *memberlist.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodes[name]
	if ni == nil || ni.state != StateAlive || !ni.addr.IsValid() {
		return nil
	}
	return &memberlist.Node{Name: name, Addr: ni.addr.Addr().AsSlice(), Port: ni.addr.Port()}
}

// epochOf is the epoch (start time) of a member's current process.
func (c *Cluster) epochOf(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ni := c.nodes[name]; ni != nil {
		return ni.meta.Epoch
	}
	return 0
}

// notifyCall handles a call message; it must not block (it runs on
// memberlist's receive path).
func (c *Cluster) notifyCall(b []byte) {
	kind, h, payload, err := decodeCall(b)
	if err != nil {
		c.log.Warn("bad call message", "err", err)
		return
	}
	switch kind {
	case msgCall:
		go c.serveCall(h, payload)
	case msgReply:
		c.callMu.Lock()
		p := c.pending[h.ID]
		if p != nil && p.node == h.From {
			delete(c.pending, h.ID)
		} else {
			p = nil
		}
		c.callMu.Unlock()
		if p == nil {
			c.log.Debug("reply to no pending call dropped", "from", h.From, "id", h.ID)
			return
		}
		p.ch <- callReply{status: h.Status, msg: h.Msg, payload: payload} // buffered, sole sender
	}
}

// serveCall runs the handler for a request and sends its reply to the caller.
func (c *Cluster) serveCall(h callHeader, req []byte) {
	to := c.waitLiveNode(h.From)
	if to == nil {
		c.log.Warn("call from a member not known to be live dropped", "from", h.From, "method", h.Method)
		return
	}
	ctx := c.ctx
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(h.Timeout))
		defer cancel()
	}
	r := c.runHandler(ctx, h.From, h.Method, req)
	if ctx.Err() != nil {
		return // the caller has given up (or this node is shutting down)
	}
	msg, err := encodeCall(msgReply, callHeader{ID: h.ID, From: c.name, Status: r.status, Msg: r.msg}, r.payload)
	if err != nil {
		c.log.Error("encode call reply", "to", h.From, "method", h.Method, "err", err)
		return
	}
	if err := c.ml.SendReliable(to, msg); err != nil {
		c.log.Debug("send call reply", "to", h.From, "method", h.Method, "err", err)
	}
}

// waitLiveNode is liveNode, giving a caller that has just joined (whose
// alive message may still be on its way here) a moment to become known.
func (c *Cluster) waitLiveNode(name string) *memberlist.Node {
	deadline := time.Now().Add(lookupCallerWait)
	for {
		if n := c.liveNode(name); n != nil {
			return n
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-c.stop:
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}
