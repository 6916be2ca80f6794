// Package server implements the herd.v1 gRPC services on top of the node's
// pod manager. It validates every request itself: agentd never trusts its
// client, so input the provider refuses at plan time is refused here too.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/herd-project/terraform-provider-herd/agentd/pods"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// maxDrainTimeoutMs bounds DeletePodRequest.drain_timeout_ms.
const maxDrainTimeoutMs = 60_000

// Pods is what the server needs from the pod manager.
type Pods interface {
	Apply(ctx context.Context, s *herdv1.PodSpec) (*herdv1.Pod, bool, error)
	Get(ctx context.Context, name string) (*herdv1.Pod, error)
	List(ctx context.Context, selector map[string]string) ([]*herdv1.Pod, error)
	DeleteWith(ctx context.Context, name string, opts pods.DeleteOptions) (pods.DeleteResult, error)
	Logs(ctx context.Context, pod, container string, follow bool, tailLines int64, send func(container string, data []byte) error) error
}

// Node is what the server needs to describe the node.
type Node interface {
	Node(ctx context.Context) (*herdv1.Node, error)
	SetLabels(ctx context.Context, labels map[string]string) (*herdv1.Node, error)
	// Health checks what agentd depends on: per dependency name, nil
	// when it works, else why not.
	Health(ctx context.Context) map[string]error
}

// Members lists the cluster's members; nil when the node runs alone.
type Members interface {
	ListMembers(ctx context.Context) ([]*herdv1.Member, error)
	// Join contacts members of a cluster and merges with it; it returns
	// how many nodes were contacted.
	Join(ctx context.Context, addrs []string) (int, error)
}

// ErrorMapper turns a domain error into a gRPC code; nil leaves it to the
// default mapping. It keeps this package free of the engine's error types.
type ErrorMapper func(error) (codes.Code, bool)

// Server implements the herd.v1 services and the standard grpc.health.v1
// health service.
type Server struct {
	herdv1.UnimplementedNodeServiceServer
	herdv1.UnimplementedPodServiceServer
	herdv1.UnimplementedClusterServiceServer
	herdv1.UnimplementedServiceServiceServer

	pods     Pods
	node     Node
	members  Members
	revoked  Revocations
	rotator  GossipKeyRotator // gossipkey.go
	services Services
	secrets  Secrets
	nested   NestedClusters
	volumes  Volumes         // volumes.go
	peer     EndpointsWaiter // peer.go
	mapErr   ErrorMapper
	log      *slog.Logger
	health   *healthWatcher

	peerCalls PeerCalls // peercall.go

	deployments      Deployments   // deployments.go
	deploymentEvents ClusterEvents // deployments.go
}

// New returns a server over the given node and pod manager.
func New(node Node, pods Pods, mapErr ErrorMapper, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{pods: pods, node: node, mapErr: mapErr, log: log, health: newHealthWatcher(node, log)}
}

// SetMembers gives the server the cluster's member list.
func (s *Server) SetMembers(m Members) { s.members = m }

// ListMembers lists the cluster's members as this node sees them.
func (s *Server) ListMembers(ctx context.Context, _ *herdv1.ListMembersRequest) (*herdv1.ListMembersResponse, error) {
	if s.members == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs without a cluster (start agentd with --cluster-cidr and --gossip-listen)")
	}
	ms, err := s.members.ListMembers(ctx)
	if err != nil {
		return nil, s.status(err, "list members")
	}
	return &herdv1.ListMembersResponse{Members: ms}, nil
}

// Register adds every herd.v1 service and the grpc.health.v1 service to g.
// Health needs no admin certificate: any client the listener admits may
// ask, as probes and load balancers do.
func (s *Server) Register(g *grpc.Server) {
	herdv1.RegisterClusterServiceServer(g, s)
	herdv1.RegisterNodeServiceServer(g, s)
	herdv1.RegisterPodServiceServer(g, s)
	healthpb.RegisterHealthServer(g, s.health.srv)
	herdv1.RegisterServiceServiceServer(g, s)
	s.registerSecrets(g)
	s.registerNested(g)
	s.registerPeer(g)
	s.registerDeployments(g)
	s.registerVolumes(g)
}

func (s *Server) GetNode(ctx context.Context, _ *herdv1.GetNodeRequest) (*herdv1.Node, error) {
	n, err := s.node.Node(ctx)
	return n, s.status(err, "get node")
}

func (s *Server) SetNodeLabels(ctx context.Context, req *herdv1.SetNodeLabelsRequest) (*herdv1.Node, error) {
	if errs := spec.ValidateLabels(spec.Path{}.Field("labels"), req.GetLabels()); len(errs) > 0 {
		return nil, invalid(errs)
	}
	n, err := s.node.SetLabels(ctx, req.GetLabels())
	return n, s.status(err, "set node labels")
}

func (s *Server) ApplyPod(ctx context.Context, req *herdv1.ApplyPodRequest) (*herdv1.ApplyPodResponse, error) {
	if req.GetSpec() == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: required")
	}
	if errs := spec.ValidatePod(req.GetSpec()); len(errs) > 0 {
		return nil, invalid(prefix(errs, "spec"))
	}
	if c, ok := CallerFrom(ctx); ok && c.Node && req.GetSpec().GetDeployment() == nil {
		return nil, status.Errorf(codes.PermissionDenied, "ApplyPod: %s: node certificates may create only deployment replicas", c)
	}
	pod, created, err := s.pods.Apply(ctx, req.GetSpec())
	if err != nil {
		return nil, s.status(err, "apply pod "+req.GetSpec().GetName())
	}
	if created {
		s.log.Info("pod applied", "pod", pod.GetSpec().GetName(), "uid", pod.GetUid())
	}
	return &herdv1.ApplyPodResponse{Pod: pod, Created: created}, nil
}

func (s *Server) GetPod(ctx context.Context, req *herdv1.GetPodRequest) (*herdv1.Pod, error) {
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := checkNamespace(req.GetNamespace()); err != nil {
		return nil, err
	}
	pod, err := s.podIn(ctx, req.GetName(), req.GetNamespace())
	return pod, s.status(err, "get pod "+req.GetName())
}

// podIn gets pod name, which must be in namespace ns unless ns is empty:
// a pod of another namespace is not found, as if it were not there.
func (s *Server) podIn(ctx context.Context, name, ns string) (*herdv1.Pod, error) {
	pod, err := s.pods.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if ns != "" && spec.PodNamespace(pod.GetSpec()) != ns {
		return nil, status.Errorf(codes.NotFound, "pod %s not found in namespace %s", name, ns)
	}
	return pod, nil
}

// nodeMayTouch refuses a node certificate a pod that is not a deployment
// replica: members place, watch and remove replicas on each other, and
// nothing else.
func nodeMayTouch(c Caller, method string, pod *herdv1.Pod) error {
	if c.Node && pod.GetSpec().GetDeployment() == nil {
		return status.Errorf(codes.PermissionDenied, "%s: %s: node certificates may touch only deployment replicas, and pod %s is none", method, c, pod.GetSpec().GetName())
	}
	return nil
}

// checkNamespace checks an optional namespace of a request.
func checkNamespace(ns string) error {
	if ns == "" {
		return nil
	}
	return checkName("namespace", ns)
}

func (s *Server) ListPods(ctx context.Context, req *herdv1.ListPodsRequest) (*herdv1.ListPodsResponse, error) {
	if errs := spec.ValidateLabels(spec.Path{}.Field("label_selector"), req.GetLabelSelector()); len(errs) > 0 {
		return nil, invalid(errs)
	}
	if err := checkNamespace(req.GetNamespace()); err != nil {
		return nil, err
	}
	all, err := s.pods.List(ctx, req.GetLabelSelector())
	if err != nil {
		return nil, s.status(err, "list pods")
	}
	out := all[:0]
	for _, p := range all {
		if ns := req.GetNamespace(); ns == "" || spec.PodNamespace(p.GetSpec()) == ns {
			out = append(out, p)
		}
	}
	return &herdv1.ListPodsResponse{Pods: out}, nil
}

func (s *Server) DeletePod(ctx context.Context, req *herdv1.DeletePodRequest) (*herdv1.DeletePodResponse, error) {
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	var grace *time.Duration
	if req.GracePeriodSeconds != nil {
		g := req.GetGracePeriodSeconds()
		if g < 0 || g > spec.MaxGracePeriod {
			return nil, status.Errorf(codes.InvalidArgument, "grace_period_seconds: must be between 0 and %d, got %d", spec.MaxGracePeriod, g)
		}
		d := time.Duration(g) * time.Second
		grace = &d
	}
	if len(req.GetUid()) > 64 {
		return nil, status.Errorf(codes.InvalidArgument, "uid: at most 64 characters, got %d", len(req.GetUid()))
	}
	if t := req.GetDrainTimeoutMs(); t < 0 || t > maxDrainTimeoutMs {
		return nil, status.Errorf(codes.InvalidArgument, "drain_timeout_ms: must be between 0 and %d, got %d", maxDrainTimeoutMs, t)
	}
	if err := checkNamespace(req.GetNamespace()); err != nil {
		return nil, err
	}
	uid := req.GetUid()
	c, _ := CallerFrom(ctx)
	if ns := req.GetNamespace(); ns != "" || c.Node {
		// One read answers both checks: a pod of another namespace is kept
		// (not found), and another member deletes only the replicas its
		// deployment driver placed. What was checked is what is deleted: a
		// pod made meanwhile is another incarnation.
		pod, err := s.podIn(ctx, req.GetName(), ns)
		if status.Code(err) == codes.NotFound || errors.Is(err, pods.ErrNotFound) {
			return &herdv1.DeletePodResponse{}, nil
		}
		if err != nil {
			return nil, s.status(err, "delete pod "+req.GetName())
		}
		if err := nodeMayTouch(c, "DeletePod", pod); err != nil {
			return nil, err
		}
		if uid == "" {
			uid = pod.GetUid()
		}
	}
	r, err := s.pods.DeleteWith(ctx, req.GetName(), pods.DeleteOptions{
		Grace:        grace,
		SkipDrain:    req.GetSkipDrain(),
		DrainTimeout: time.Duration(req.GetDrainTimeoutMs()) * time.Millisecond,
		UID:          uid,
	})
	if errors.Is(err, spec.ErrOtherIncarnation) {
		return nil, replacedStatus("delete pod "+req.GetName(), err)
	}
	if err != nil {
		return nil, s.status(err, "delete pod "+req.GetName())
	}
	if r.Existed {
		s.log.Info("pod deleted", "pod", req.GetName(), "drained", r.Drained, "drain_timed_out", r.TimedOut)
	}
	return &herdv1.DeletePodResponse{Existed: r.Existed, DrainedMembers: r.Drained, DrainTimedOut: r.TimedOut}, nil
}

func (s *Server) PodLogs(req *herdv1.PodLogsRequest, stream grpc.ServerStreamingServer[herdv1.LogChunk]) error {
	if err := checkName("pod", req.GetPod()); err != nil {
		return err
	}
	if req.GetContainer() != "" {
		if err := checkName("container", req.GetContainer()); err != nil {
			return err
		}
	}
	if req.GetTailLines() < 0 {
		return status.Error(codes.InvalidArgument, "tail_lines: must not be negative")
	}
	if err := checkNamespace(req.GetNamespace()); err != nil {
		return err
	}
	c, _ := CallerFrom(stream.Context())
	if req.GetNamespace() != "" || c.Node {
		pod, err := s.podIn(stream.Context(), req.GetPod(), req.GetNamespace())
		if err != nil {
			return s.status(err, "logs of pod "+req.GetPod())
		}
		if err := nodeMayTouch(c, "PodLogs", pod); err != nil {
			return err
		}
	}
	err := s.pods.Logs(stream.Context(), req.GetPod(), req.GetContainer(), req.GetFollow(), req.GetTailLines(),
		func(container string, data []byte) error {
			return stream.Send(&herdv1.LogChunk{Container: container, Data: data})
		})
	if err != nil && stream.Context().Err() != nil {
		// The client went away while following: not an error of ours.
		return nil //nolint:nilerr // see above
	}
	return s.status(err, "logs of pod "+req.GetPod())
}

func checkName(field, name string) error {
	if err := spec.ValidateName(name); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	}
	return nil
}

func prefix(errs spec.FieldErrors, field string) spec.FieldErrors {
	out := make(spec.FieldErrors, len(errs))
	for i, e := range errs {
		out[i] = spec.FieldError{Path: append(spec.Path{}.Field(field), e.Path...), Msg: e.Msg}
	}
	return out
}

func invalid(errs spec.FieldErrors) error {
	return status.Error(codes.InvalidArgument, errs.Error())
}

// status maps an engine error to a gRPC status whose message says what was
// being done.
func (s *Server) status(err error, doing string) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe spec.FieldErrors
	if errors.As(err, &fe) {
		return invalid(prefix(fe, "spec"))
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	code := codes.Internal
	if s.mapErr != nil {
		if c, ok := s.mapErr(err); ok {
			code = c
		}
	}
	if code == codes.Internal {
		s.log.Error("request failed", "op", doing, "err", err)
		return status.Error(code, fmt.Sprintf("%s: %v", doing, err))
	}
	// Domain errors already say which pod and container they concern.
	return withReason(status.New(code, err.Error()), err).Err()
}
