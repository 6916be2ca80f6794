package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// PeerCalls is the registry PeerService.Call dispatches to
// (agentd/peers.Handlers).
type PeerCalls interface {
	Lookup(method string) (func(ctx context.Context, from string, req []byte) ([]byte, error), bool)
}

// SetPeerCalls gives the server the node-to-node call handlers.
func (s *Server) SetPeerCalls(h PeerCalls) { s.peerCalls = h }

// Call runs the handler registered for the request's method. The caller
// is the name in its verified node certificate, whatever the payload says:
// that is the point of carrying these calls over mTLS. Payloads may hold
// secret values: no error or log line quotes them.
func (x *peerServer) Call(ctx context.Context, req *herdv1.PeerCallRequest) (*herdv1.PeerCallResponse, error) {
	c, ok := CallerFrom(ctx)
	if !ok || !c.Node || c.Name == "" {
		// The local socket passes the authorization interceptor, but it is
		// no member: a call needs a member's name to come from.
		return nil, status.Error(codes.PermissionDenied, "Call: only cluster members (node certificates) may call this")
	}
	if x.s.peerCalls == nil {
		return nil, status.Error(codes.FailedPrecondition, "Call: this node runs without a cluster")
	}
	h, ok := x.s.peerCalls.Lookup(req.GetMethod())
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "Call: no handler for method %q", req.GetMethod())
	}
	out, err := h(ctx, c.Name, req.GetPayload())
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Error(codes.Unknown, err.Error())
	}
	return &herdv1.PeerCallResponse{Payload: out}, nil
}
