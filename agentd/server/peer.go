package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// MaxWaitEndpoints bounds WaitEndpointsApplied (a request's timeout_ms
// of 0 or above it means this).
const MaxWaitEndpoints = 10 * time.Second

// EndpointsWaiter is this node's service controller
// (agentd/services.Controller).
type EndpointsWaiter interface {
	// WaitApplied reports whether this node's service rules reflect seq
	// (or later) of owner's endpoint entry for pod before ctx ends.
	WaitApplied(ctx context.Context, owner, pod string, seq uint64) bool
}

// SetPeer gives the server what PeerService answers from.
func (s *Server) SetPeer(w EndpointsWaiter) { s.peer = w }

type peerServer struct {
	herdv1.UnimplementedPeerServiceServer
	s *Server
}

func (s *Server) registerPeer(g *grpc.Server) {
	herdv1.RegisterPeerServiceServer(g, &peerServer{s: s})
}

// requireNode refuses callers without a node certificate (valid for server
// and client authentication, as members have; admin and other client
// certificates are not). The local socket is allowed: root on this node.
func requireNode(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "peer: no caller identity")
	}
	ti, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		if p.Addr != nil && p.Addr.Network() == "unix" {
			return nil
		}
		return status.Error(codes.PermissionDenied, "peer: a node certificate is required")
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 || !pki.IsNode(ti.State.VerifiedChains[0][0]) {
		return status.Error(codes.PermissionDenied, "peer: only cluster members (node certificates) may call this")
	}
	return nil
}

func (x *peerServer) WaitEndpointsApplied(ctx context.Context, req *herdv1.WaitEndpointsAppliedRequest) (*herdv1.WaitEndpointsAppliedResponse, error) {
	if err := requireNode(ctx); err != nil {
		return nil, err
	}
	if x.s.peer == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs without a cluster")
	}
	if err := pki.ValidateName(req.GetOwner()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "owner: %v", err)
	}
	if err := checkName("pod", req.GetPod()); err != nil {
		return nil, err
	}
	if req.GetSeq() == 0 {
		return nil, status.Error(codes.InvalidArgument, "seq: required")
	}
	if req.GetTimeoutMs() < 0 {
		return nil, status.Error(codes.InvalidArgument, "timeout_ms: must not be negative")
	}
	timeout := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	if timeout == 0 || timeout > MaxWaitEndpoints {
		timeout = MaxWaitEndpoints
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	applied := x.s.peer.WaitApplied(wctx, req.GetOwner(), req.GetPod(), req.GetSeq())
	if !applied && ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &herdv1.WaitEndpointsAppliedResponse{Applied: applied}, nil
}
