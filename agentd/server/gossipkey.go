package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// GossipKeyRotator replaces the cluster's gossip key on every member.
type GossipKeyRotator interface {
	Rotate(ctx context.Context) (members, notReached []string, err error)
}

// SetGossipKeyRotator gives the server what RotateGossipKey runs.
func (s *Server) SetGossipKeyRotator(r GossipKeyRotator) { s.rotator = r }

// RotateGossipKey replaces the gossip key on every live member.
func (s *Server) RotateGossipKey(ctx context.Context, _ *herdv1.RotateGossipKeyRequest) (*herdv1.RotateGossipKeyResponse, error) {
	if s.rotator == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs without a cluster")
	}
	members, notReached, err := s.rotator.Rotate(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "rotate the gossip key: %v", err)
	}
	s.log.Warn("gossip key rotated", "members", members, "not_reached", notReached, "by", CallerName(ctx))
	return &herdv1.RotateGossipKeyResponse{Members: members, NotReached: notReached}, nil
}
