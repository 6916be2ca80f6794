package server

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Deployments is the deployment registry (agentd/deployments.Registry);
// nil when the node runs without a cluster.
type Deployments interface {
	Apply(ctx context.Context, req *herdv1.ApplyDeploymentRequest) (*herdv1.ApplyDeploymentResponse, error)
	Get(key string) (deployments.Record, bool)
	List() []deployments.Record
	Delete(key, uid string) (bool, error)
	Status(key string) (*herdv1.DeploymentStatus, bool)
}

// ClusterEvents is what WatchDeployment listens to (agentd/cluster.Cluster).
type ClusterEvents interface {
	Subscribe() <-chan cluster.Event
	Unsubscribe(ch <-chan cluster.Event)
}

type deploymentServer struct {
	herdv1.UnimplementedDeploymentServiceServer
	s *Server
}

// SetDeployments gives the server the deployment registry and the cluster
// events that wake deployment watches.
func (s *Server) SetDeployments(d Deployments, events ClusterEvents) {
	s.deployments, s.deploymentEvents = d, events
}

func (s *Server) registerDeployments(g *grpc.Server) {
	herdv1.RegisterDeploymentServiceServer(g, &deploymentServer{s: s})
}

func (x *deploymentServer) need() (Deployments, error) {
	if x.s.deployments == nil {
		return nil, status.Error(codes.FailedPrecondition, "deployments need a cluster (--cluster-cidr)")
	}
	return x.s.deployments, nil
}

// deploymentStatus maps a registry error: bad input with its paths, an
// unplaceable deployment with its per-node report and reason UNPLACEABLE.
func (x *deploymentServer) deploymentStatus(err error, doing string) error {
	if errors.Is(err, deployments.ErrUnplaceable) {
		return withReason(status.New(codes.FailedPrecondition, err.Error()), err).Err()
	}
	return x.s.status(err, doing)
}

func (x *deploymentServer) ApplyDeployment(ctx context.Context, req *herdv1.ApplyDeploymentRequest) (*herdv1.ApplyDeploymentResponse, error) {
	d, err := x.need()
	if err != nil {
		return nil, err
	}
	if req.GetSpec() == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: required")
	}
	for i, n := range req.GetPlacementHint() {
		if err := checkName("placement_hint", n); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "placement_hint[%d]: %v", i, status.Convert(err).Message())
		}
	}
	resp, err := d.Apply(ctx, req)
	if err != nil {
		return nil, x.deploymentStatus(err, "apply deployment "+req.GetSpec().GetName())
	}
	return resp, nil
}

func deploymentKey(namespace, name string) (string, error) {
	if err := checkServiceName(namespace, name); err != nil {
		return "", err
	}
	return deployments.Key(namespace, name), nil
}

// deployment is what the API answers: the stored deployment at its object
// version with the driver's status.
func deployment(d Deployments, rec deployments.Record) *herdv1.Deployment {
	out := proto.Clone(rec.GetDeployment()).(*herdv1.Deployment)
	out.Version = rec.Version
	key := deployments.Key(out.GetSpec().GetNamespace(), out.GetSpec().GetName())
	if st, ok := d.Status(key); ok {
		out.Status = st
	}
	return out
}

func (x *deploymentServer) GetDeployment(ctx context.Context, req *herdv1.GetDeploymentRequest) (*herdv1.Deployment, error) {
	d, err := x.need()
	if err != nil {
		return nil, err
	}
	key, err := deploymentKey(req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, err
	}
	rec, ok := d.Get(key)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "deployment %s not found", key)
	}
	return deployment(d, rec), nil
}

func (x *deploymentServer) ListDeployments(ctx context.Context, req *herdv1.ListDeploymentsRequest) (*herdv1.ListDeploymentsResponse, error) {
	d, err := x.need()
	if err != nil {
		return nil, err
	}
	ns := req.GetNamespace()
	if ns != "" {
		if err := checkName("namespace", ns); err != nil {
			return nil, err
		}
	}
	out := &herdv1.ListDeploymentsResponse{}
	for _, rec := range d.List() {
		if ns != "" && rec.GetDeployment().GetSpec().GetNamespace() != ns {
			continue
		}
		out.Deployments = append(out.Deployments, deployment(d, rec))
	}
	return out, nil
}

func (x *deploymentServer) DeleteDeployment(ctx context.Context, req *herdv1.DeleteDeploymentRequest) (*herdv1.DeleteDeploymentResponse, error) {
	d, err := x.need()
	if err != nil {
		return nil, err
	}
	key, err := deploymentKey(req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, err
	}
	if err := checkDeleteUID(req.GetUid()); err != nil {
		return nil, err
	}
	existed, err := d.Delete(key, req.GetUid())
	if errors.Is(err, spec.ErrOtherIncarnation) {
		return nil, replacedStatus("delete deployment "+key, err)
	}
	if err != nil {
		return nil, x.deploymentStatus(err, "delete deployment "+key)
	}
	if existed {
		x.s.log.Info("deployment deleted", "deployment", key)
	}
	return &herdv1.DeleteDeploymentResponse{Existed: existed}, nil
}

// WatchDeployment sends the deployment now and again whenever its spec or
// status object changes on this node, until the client leaves. A deleted
// deployment ends the stream with NotFound.
func (x *deploymentServer) WatchDeployment(req *herdv1.GetDeploymentRequest, stream grpc.ServerStreamingServer[herdv1.Deployment]) error {
	d, err := x.need()
	if err != nil {
		return err
	}
	key, err := deploymentKey(req.GetNamespace(), req.GetName())
	if err != nil {
		return err
	}
	var events <-chan cluster.Event
	if ev := x.s.deploymentEvents; ev != nil {
		events = ev.Subscribe() // before the first read: no change is missed
		defer ev.Unsubscribe(events)
	}
	var last *herdv1.Deployment
	send := func() error {
		rec, ok := d.Get(key)
		if !ok {
			return status.Errorf(codes.NotFound, "deployment %s not found", key)
		}
		dep := deployment(d, rec)
		if last != nil && proto.Equal(last, dep) {
			return nil
		}
		last = dep
		return stream.Send(dep)
	}
	if err := send(); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case e, ok := <-events:
			if !ok {
				return status.Error(codes.Unavailable, "the node is shutting down")
			}
			if e.Type != cluster.EventObject || e.Key != key || (e.Kind != deployments.KindDeployment && e.Kind != deployments.KindStatus) {
				continue
			}
			if err := send(); err != nil {
				return err
			}
		}
	}
}
