package server

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herd-project/terraform-provider-herd/agentd/nested"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// NestedClusters is the node's nested-cluster driver (agentd/nested); nil
// when agentd runs without --nested-kubeconfig.
type NestedClusters interface {
	Apply(ctx context.Context, s *herdv1.NestedClusterSpec) (*herdv1.NestedCluster, bool, error)
	Get(ctx context.Context, name string) (*herdv1.NestedCluster, error)
	List(ctx context.Context) ([]*herdv1.NestedCluster, error)
	Delete(ctx context.Context, name, uid string) (bool, error)
	Kubeconfig(ctx context.Context, name string) ([]byte, error)
	// Forbidden are the ranges nested CIDRs may not overlap.
	Forbidden() []spec.NestedRange
}

// SetNested gives the server the nested-cluster driver.
func (s *Server) SetNested(n NestedClusters) { s.nested = n }

// nestedServer implements NestedClusterService. Every method needs an
// admin certificate: a nested cluster's PKI is as sensitive as a secret.
type nestedServer struct {
	herdv1.UnimplementedNestedClusterServiceServer
	s *Server
}

func (s *Server) registerNested(g *grpc.Server) {
	herdv1.RegisterNestedClusterServiceServer(g, &nestedServer{s: s})
}

func (x *nestedServer) guard(ctx context.Context) error {
	if err := requireAdmin(ctx); err != nil {
		if status.Code(err) == codes.PermissionDenied {
			return status.Error(codes.PermissionDenied, "nested clusters: an admin client certificate is required (herdctl certs client NAME --admin)")
		}
		return err
	}
	if x.s.nested == nil {
		return status.Error(codes.FailedPrecondition, "this node has no host cluster: start agentd with --nested-kubeconfig")
	}
	return nil
}

// guardNamed is guard for a call about one cluster, whose name it checks.
func (x *nestedServer) guardNamed(ctx context.Context, name string) error {
	if err := x.guard(ctx); err != nil {
		return err
	}
	return checkName("name", name)
}

// nestedStatus maps the driver's errors; their text never holds key
// material.
func (x *nestedServer) status(err error, doing string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nested.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, nested.ErrProtected), errors.Is(err, nested.ErrImmutable),
		errors.Is(err, nested.ErrBusy), errors.Is(err, nested.ErrNotReady), errors.Is(err, nested.ErrKEKLost):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return x.s.status(err, doing)
}

func (x *nestedServer) ApplyNestedCluster(ctx context.Context, req *herdv1.ApplyNestedClusterRequest) (*herdv1.ApplyNestedClusterResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	sp := req.GetSpec()
	if sp == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: required")
	}
	if errs := spec.ValidateNestedCluster(sp, x.s.nested.Forbidden()); len(errs) > 0 {
		return nil, invalid(prefix(errs, "spec"))
	}
	c, changed, err := x.s.nested.Apply(ctx, sp)
	if err != nil {
		return nil, x.status(err, "apply nested cluster "+sp.GetName())
	}
	if changed {
		x.s.log.Info("nested cluster applied", "cluster", sp.GetName(), "phase", c.GetStatus().GetPhase(), "caller", CallerName(ctx))
	}
	return &herdv1.ApplyNestedClusterResponse{Cluster: c, Changed: changed}, nil
}

func (x *nestedServer) GetNestedCluster(ctx context.Context, req *herdv1.GetNestedClusterRequest) (*herdv1.NestedCluster, error) {
	if err := x.guardNamed(ctx, req.GetName()); err != nil {
		return nil, err
	}
	c, err := x.s.nested.Get(ctx, req.GetName())
	return c, x.status(err, "get nested cluster "+req.GetName())
}

func (x *nestedServer) ListNestedClusters(ctx context.Context, _ *herdv1.ListNestedClustersRequest) (*herdv1.ListNestedClustersResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	cs, err := x.s.nested.List(ctx)
	if err != nil {
		return nil, x.status(err, "list nested clusters")
	}
	return &herdv1.ListNestedClustersResponse{Clusters: cs}, nil
}

func (x *nestedServer) DeleteNestedCluster(ctx context.Context, req *herdv1.DeleteNestedClusterRequest) (*herdv1.DeleteNestedClusterResponse, error) {
	if err := x.guardNamed(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if err := checkDeleteUID(req.GetUid()); err != nil {
		return nil, err
	}
	existed, err := x.s.nested.Delete(ctx, req.GetName(), req.GetUid())
	if errors.Is(err, spec.ErrOtherIncarnation) {
		return nil, replacedStatus("delete nested cluster "+req.GetName(), err)
	}
	if err != nil {
		return nil, x.status(err, "delete nested cluster "+req.GetName())
	}
	if existed {
		x.s.log.Info("nested cluster deleted", "cluster", req.GetName(), "caller", CallerName(ctx))
	}
	return &herdv1.DeleteNestedClusterResponse{Existed: existed}, nil
}

func (x *nestedServer) GetNestedClusterKubeconfig(ctx context.Context, req *herdv1.GetNestedClusterKubeconfigRequest) (*herdv1.GetNestedClusterKubeconfigResponse, error) {
	if err := x.guardNamed(ctx, req.GetName()); err != nil {
		return nil, err
	}
	kc, err := x.s.nested.Kubeconfig(ctx, req.GetName())
	if err != nil {
		return nil, x.status(err, "kubeconfig of nested cluster "+req.GetName())
	}
	// Audit: who read which kubeconfig (never what).
	x.s.log.Info("nested cluster kubeconfig read", "cluster", req.GetName(), "caller", CallerName(ctx))
	return &herdv1.GetNestedClusterKubeconfigResponse{Kubeconfig: kc}, nil
}
