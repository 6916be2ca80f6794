package server

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herd-project/terraform-provider-herd/agentd/services"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Services is the cluster-scoped service registry; nil when the node runs
// without a cluster.
type Services interface {
	Apply(s *herdv1.ServiceSpec) (*herdv1.Service, bool, error)
	Get(namespace, name string) (*herdv1.Service, error)
	List(namespace string) []*herdv1.Service
	Delete(namespace, name, uid string) (bool, error)
}

// SetServices gives the server the service registry.
func (s *Server) SetServices(svcs Services) { s.services = svcs }

func (s *Server) needServices() error {
	if s.services == nil {
		return status.Error(codes.FailedPrecondition, "this node runs without a cluster: services need agentd started with --cluster-cidr, --gossip-listen and --gossip-key")
	}
	return nil
}

func (s *Server) ApplyService(ctx context.Context, req *herdv1.ApplyServiceRequest) (*herdv1.ApplyServiceResponse, error) {
	if err := s.needServices(); err != nil {
		return nil, err
	}
	if req.GetSpec() == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: required")
	}
	if errs := spec.ValidateService(req.GetSpec()); len(errs) > 0 {
		return nil, invalid(prefix(errs, "spec"))
	}
	svc, changed, err := s.services.Apply(req.GetSpec())
	if err != nil {
		return nil, s.status(err, "apply service "+req.GetSpec().GetName())
	}
	if changed {
		s.log.Info("service applied", "namespace", svc.GetSpec().GetNamespace(), "service", svc.GetSpec().GetName(),
			"cluster_ip", svc.GetStatus().GetClusterIp(), "version", svc.GetStatus().GetVersion())
	}
	return &herdv1.ApplyServiceResponse{Service: svc, Changed: changed}, nil
}

func checkServiceName(namespace, name string) error {
	if namespace != "" {
		if err := checkName("namespace", namespace); err != nil {
			return err
		}
	}
	return checkName("name", name)
}

func (s *Server) GetService(ctx context.Context, req *herdv1.GetServiceRequest) (*herdv1.Service, error) {
	if err := s.needServices(); err != nil {
		return nil, err
	}
	if err := checkServiceName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	svc, err := s.services.Get(req.GetNamespace(), req.GetName())
	return svc, s.status(err, "get service "+req.GetName())
}

func (s *Server) ListServices(ctx context.Context, req *herdv1.ListServicesRequest) (*herdv1.ListServicesResponse, error) {
	if err := s.needServices(); err != nil {
		return nil, err
	}
	if ns := req.GetNamespace(); ns != "" {
		if err := checkName("namespace", ns); err != nil {
			return nil, err
		}
	}
	return &herdv1.ListServicesResponse{Services: s.services.List(req.GetNamespace())}, nil
}

func (s *Server) DeleteService(ctx context.Context, req *herdv1.DeleteServiceRequest) (*herdv1.DeleteServiceResponse, error) {
	if err := s.needServices(); err != nil {
		return nil, err
	}
	if err := checkServiceName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	if err := checkDeleteUID(req.GetUid()); err != nil {
		return nil, err
	}
	existed, err := s.services.Delete(req.GetNamespace(), req.GetName(), req.GetUid())
	if errors.Is(err, spec.ErrOtherIncarnation) {
		return nil, replacedStatus("delete service "+services.Key(req.GetNamespace(), req.GetName()), err)
	}
	if err != nil {
		return nil, s.status(err, "delete service "+req.GetName())
	}
	if existed {
		s.log.Info("service deleted", "namespace", req.GetNamespace(), "service", req.GetName())
	}
	return &herdv1.DeleteServiceResponse{Existed: existed}, nil
}

// JoinCluster makes this node join the cluster of the given members.
func (s *Server) JoinCluster(ctx context.Context, req *herdv1.JoinClusterRequest) (*herdv1.JoinClusterResponse, error) {
	if s.members == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs without a cluster (start agentd with --cluster-cidr and --gossip-listen)")
	}
	if len(req.GetAddresses()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "addresses: at least one gossip address is required")
	}
	for i, a := range req.GetAddresses() {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
			return nil, status.Errorf(codes.InvalidArgument, "addresses[%d]: want HOST:PORT, got %q", i, a)
		}
	}
	n, err := s.members.Join(ctx, req.GetAddresses())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "join cluster: %v", err)
	}
	return &herdv1.JoinClusterResponse{Contacted: int32(n)}, nil
}
