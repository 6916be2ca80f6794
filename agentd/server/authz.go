package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Caller is who a request comes from.
type Caller struct {
	// Name is the certificate's common name ("local" on the socket).
	Name string
	// Node: a node certificate, i.e. another member's agentd.
	Node bool
	// Local: the unix socket, whose peer the listener checked (root or
	// the configured group).
	Local bool
	// Access is a client certificate's grant (admin on the socket).
	Access pki.Access
}

func (c Caller) String() string {
	switch {
	case c.Local:
		return "the local socket"
	case c.Node:
		return fmt.Sprintf("node %q", c.Name)
	}
	return fmt.Sprintf("client %q (%s)", c.Name, c.Access.Role)
}

// callerOf identifies the caller from the connection: the verified leaf
// certificate, or the unix socket.
func callerOf(ctx context.Context, deny DenyList) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, status.Error(codes.Unauthenticated, "no caller identity")
	}
	ti, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		if p.Addr != nil && p.Addr.Network() == "unix" {
			return Caller{Name: "local", Local: true, Access: pki.Access{Role: pki.RoleAdmin}}, nil
		}
		return Caller{}, status.Error(codes.Unauthenticated, "a client certificate is required")
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Caller{}, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	leaf := ti.State.VerifiedChains[0][0]
	// Checked on every call, not only at the handshake: a connection
	// opened before the revocation is refused from then on too.
	if deny != nil && deny.Revoked(SerialHex(leaf)) {
		return Caller{}, status.Error(codes.Unauthenticated, revokedErr(leaf).Error())
	}
	if pki.IsNode(leaf) {
		return Caller{Name: leaf.Subject.CommonName, Node: true}, nil
	}
	a, err := pki.ClientAccess(leaf)
	if err != nil {
		return Caller{}, status.Errorf(codes.PermissionDenied, "client certificate %q: %v", leaf.Subject.CommonName, err)
	}
	return Caller{Name: leaf.Subject.CommonName, Access: a}, nil
}

type callerKey struct{}

// CallerFrom returns the caller the authorization interceptor identified.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// A rule is what a method requires.
type rule struct {
	// role is the least client role that may call it; "" lets no client.
	role pki.Role
	// node lets node certificates call it (what members ask each other).
	node bool
	// logs lets a viewer with the logs grant call it.
	logs bool
	// ns is the namespace a request acts in, for callers limited to some
	// namespaces; nil marks a method that is not namespaced (the node,
	// the cluster). all is true when the request spans every namespace.
	ns func(req any) (ns string, all bool)
}

// inPods reads the namespace of a pod request: the spec's for ApplyPod
// (empty: default); for the others the request's namespace, whose absence
// means any namespace (the handler then matches a pod of any).
func inPods(req any) (string, bool) {
	switch r := req.(type) {
	case *herdv1.ApplyPodRequest:
		return spec.PodNamespace(r.GetSpec()), false
	case interface{ GetNamespace() string }:
		if ns := r.GetNamespace(); ns != "" {
			return ns, false
		}
	}
	return "", true
}

// inRequest reads the namespace a request names; an empty one in a list
// request means every namespace.
func inRequest(req any) (string, bool) {
	var ns string
	switch r := req.(type) {
	case interface{ GetSpec() *herdv1.ServiceSpec }:
		ns = r.GetSpec().GetNamespace()
	case interface{ GetSpec() *herdv1.DeploymentSpec }:
		ns = r.GetSpec().GetNamespace()
	case interface{ GetSpec() *herdv1.SecretSpec }:
		ns = r.GetSpec().GetNamespace()
	case interface{ GetSpec() *herdv1.VolumeSpec }:
		ns = r.GetSpec().GetNamespace()
	case interface{ GetNamespace() string }:
		ns = r.GetNamespace()
	}
	if ns == "" {
		switch req.(type) {
		case *herdv1.ListServicesRequest, *herdv1.ListDeploymentsRequest, *herdv1.ListSecretsRequest, *herdv1.ListVolumesRequest:
			return "", true
		}
		return "default", false
	}
	return ns, false
}

var (
	adminOnly = rule{role: pki.RoleAdmin}
	nodeOnly  = rule{node: true}
)

// methodRules is who may call what: every method served has a row (a
// test walks the server's methods), and a method without one is refused.
var methodRules = map[string]rule{
	herdv1.NodeService_GetNode_FullMethodName:       {role: pki.RoleViewer},
	herdv1.NodeService_SetNodeLabels_FullMethodName: adminOnly, // labels decide which nodes hold secrets

	// Node certificates place and observe deployment replicas.
	herdv1.PodService_ApplyPod_FullMethodName:  {role: pki.RoleOperator, node: true, ns: inPods},
	herdv1.PodService_GetPod_FullMethodName:    {role: pki.RoleViewer, node: true, ns: inPods},
	herdv1.PodService_ListPods_FullMethodName:  {role: pki.RoleViewer, node: true, ns: inPods},
	herdv1.PodService_DeletePod_FullMethodName: {role: pki.RoleOperator, node: true, ns: inPods},
	herdv1.PodService_PodLogs_FullMethodName:   {role: pki.RoleOperator, node: true, logs: true, ns: inPods},

	herdv1.ClusterService_ListMembers_FullMethodName: {role: pki.RoleViewer},
	herdv1.ClusterService_JoinCluster_FullMethodName: adminOnly,
	// The deny list decides who is refused: admins manage it.
	herdv1.ClusterService_RevokeCertificate_FullMethodName:       adminOnly,
	herdv1.ClusterService_ListRevokedCertificates_FullMethodName: adminOnly,
	// The gossip key admits processes to the cluster's gossip.
	herdv1.ClusterService_RotateGossipKey_FullMethodName: adminOnly,

	herdv1.ServiceService_ApplyService_FullMethodName:  {role: pki.RoleOperator, ns: inRequest},
	herdv1.ServiceService_GetService_FullMethodName:    {role: pki.RoleViewer, ns: inRequest},
	herdv1.ServiceService_ListServices_FullMethodName:  {role: pki.RoleViewer, ns: inRequest},
	herdv1.ServiceService_DeleteService_FullMethodName: {role: pki.RoleOperator, ns: inRequest},

	// Secrets: admin only, metadata included.
	herdv1.SecretService_ApplySecret_FullMethodName:  adminOnly,
	herdv1.SecretService_GetSecret_FullMethodName:    adminOnly,
	herdv1.SecretService_ListSecrets_FullMethodName:  adminOnly,
	herdv1.SecretService_DeleteSecret_FullMethodName: adminOnly,
	herdv1.SecretService_RevealSecret_FullMethodName: adminOnly,
	herdv1.SecretService_RotateKey_FullMethodName:    adminOnly,

	herdv1.DeploymentService_ApplyDeployment_FullMethodName:  {role: pki.RoleOperator, ns: inRequest},
	herdv1.DeploymentService_GetDeployment_FullMethodName:    {role: pki.RoleViewer, ns: inRequest},
	herdv1.DeploymentService_ListDeployments_FullMethodName:  {role: pki.RoleViewer, ns: inRequest},
	herdv1.DeploymentService_DeleteDeployment_FullMethodName: {role: pki.RoleOperator, ns: inRequest},
	herdv1.DeploymentService_WatchDeployment_FullMethodName:  {role: pki.RoleViewer, ns: inRequest},

	// A backup is every byte of the volume: operators of its namespace.
	herdv1.VolumeService_ApplyVolume_FullMethodName:   {role: pki.RoleOperator, ns: inRequest},
	herdv1.VolumeService_GetVolume_FullMethodName:     {role: pki.RoleViewer, ns: inRequest},
	herdv1.VolumeService_ListVolumes_FullMethodName:   {role: pki.RoleViewer, ns: inRequest},
	herdv1.VolumeService_DeleteVolume_FullMethodName:  {role: pki.RoleOperator, ns: inRequest},
	herdv1.VolumeService_BackupVolume_FullMethodName:  {role: pki.RoleOperator, ns: inRequest},
	herdv1.VolumeService_RestoreVolume_FullMethodName: {role: pki.RoleOperator, ns: inRequest},

	herdv1.PeerService_WaitEndpointsApplied_FullMethodName: nodeOnly,
	herdv1.PeerService_Call_FullMethodName:                 nodeOnly, // the handler refuses the socket too

	// A nested cluster's PKI is as sensitive as a secret.
	herdv1.NestedClusterService_ApplyNestedCluster_FullMethodName:         adminOnly,
	herdv1.NestedClusterService_GetNestedCluster_FullMethodName:           adminOnly,
	herdv1.NestedClusterService_ListNestedClusters_FullMethodName:         adminOnly,
	herdv1.NestedClusterService_DeleteNestedCluster_FullMethodName:        adminOnly,
	herdv1.NestedClusterService_GetNestedClusterKubeconfig_FullMethodName: adminOnly,

	healthpb.Health_Check_FullMethodName: {role: pki.RoleViewer, node: true},
	healthpb.Health_Watch_FullMethodName: {role: pki.RoleViewer, node: true},
	healthpb.Health_List_FullMethodName:  {role: pki.RoleViewer, node: true},
}

// authorize decides whether c may call method with req.
func authorize(c Caller, method string, req any) error {
	r, ok := methodRules[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s: no authorization rule: refused", method)
	}
	short := method[strings.LastIndexByte(method, '/')+1:]
	if c.Local {
		return nil
	}
	if c.Node {
		if !r.node {
			return status.Errorf(codes.PermissionDenied, "%s: %s: node certificates may not call this (use a client certificate)", short, c)
		}
		return nil
	}
	if r.role == "" {
		return status.Errorf(codes.PermissionDenied, "%s: %s: only cluster members (node certificates) may call this", short, c)
	}
	role := c.Access.Role
	grantedLogs := r.logs && role == pki.RoleViewer && c.Access.Logs
	if role.Rank() < r.role.Rank() && !grantedLogs {
		return status.Errorf(codes.PermissionDenied, "%s: %s: needs the %s role", short, c, r.role)
	}
	if r.ns == nil || c.Access.AllNamespaces() {
		return nil
	}
	ns, all := r.ns(req)
	if all {
		return status.Errorf(codes.PermissionDenied, "%s: %s may use only namespaces %s: name one", short, c, strings.Join(c.Access.Namespaces, ", "))
	}
	if !c.Access.InNamespace(ns) {
		return status.Errorf(codes.PermissionDenied, "%s: %s may not use namespace %q (its namespaces: %s)", short, c, ns, strings.Join(c.Access.Namespaces, ", "))
	}
	return nil
}

// UnaryAuthz refuses unary calls the caller may not make.
func UnaryAuthz() grpc.UnaryServerInterceptor { return UnaryAuthzDeny(nil) }

// StreamAuthz refuses server-streaming calls the caller may not make.
func StreamAuthz() grpc.StreamServerInterceptor { return StreamAuthzDeny(nil) }

// UnaryAuthzDeny is UnaryAuthz that also refuses certificates in deny.
func UnaryAuthzDeny(deny DenyList) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		c, err := callerOf(ctx, deny)
		if err != nil {
			return nil, err
		}
		if err := authorize(c, info.FullMethod, req); err != nil {
			return nil, err
		}
		return h(context.WithValue(ctx, callerKey{}, c), req)
	}
}

// StreamAuthzDeny is StreamAuthz that also refuses certificates in deny;
// the request is read before the handler runs so that its namespace can
// be checked.
func StreamAuthzDeny(deny DenyList) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		c, err := callerOf(ss.Context(), deny)
		if err != nil {
			return err
		}
		r, ok := methodRules[info.FullMethod]
		if !ok || r.ns == nil || c.Local || c.Node || c.Access.AllNamespaces() {
			if err := authorize(c, info.FullMethod, nil); err != nil {
				return err
			}
			return h(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, c)})
		}
		req := newStreamRequest(info.FullMethod)
		if req == nil {
			return status.Errorf(codes.PermissionDenied, "%s: no request type for its namespace check: refused", info.FullMethod)
		}
		if err := ss.RecvMsg(req); err != nil {
			return err
		}
		if err := authorize(c, info.FullMethod, req); err != nil {
			return err
		}
		return h(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, c), first: req})
	}
}

// newStreamRequest is an empty request of a namespaced streaming method.
func newStreamRequest(method string) any {
	switch method {
	case herdv1.PodService_PodLogs_FullMethodName:
		return new(herdv1.PodLogsRequest)
	case herdv1.DeploymentService_WatchDeployment_FullMethodName:
		return new(herdv1.GetDeploymentRequest)
	case herdv1.VolumeService_BackupVolume_FullMethodName:
		return new(herdv1.BackupVolumeRequest)
	case herdv1.VolumeService_RestoreVolume_FullMethodName:
		return new(herdv1.RestoreVolumeRequest) // the first message names the volume
	}
	return nil
}

// authedStream carries the caller and hands the handler the request the
// interceptor already read.
type authedStream struct {
	grpc.ServerStream
	ctx   context.Context
	first any
}

func (s *authedStream) Context() context.Context { return s.ctx }

func (s *authedStream) RecvMsg(m any) error {
	if s.first == nil {
		return s.ServerStream.RecvMsg(m)
	}
	src := s.first
	s.first = nil
	return copyMsg(m, src)
}

func copyMsg(dst, src any) error {
	d, ok1 := dst.(proto.Message)
	s, ok2 := src.(proto.Message)
	if !ok1 || !ok2 || d.ProtoReflect().Descriptor() != s.ProtoReflect().Descriptor() {
		return status.Error(codes.Internal, "stream request of another type")
	}
	proto.Reset(d)
	proto.Merge(d, s)
	return nil
}
