package server

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// errReached is what a call allowed past authorization gets back: the
// test server answers in place of the handlers.
var errReached = status.Error(codes.Aborted, "reached the handler")

// The callers of the role table test.
const (
	admin      = "admin"
	operator   = "operator"
	viewer     = "viewer"
	viewerLogs = "viewer+logs"
	node       = "node"
	local      = "socket"
)

var allCallers = []string{admin, operator, viewer, viewerLogs, node, local}

// wantAllowed is the role table as the documentation states it, written
// out apart from the server's: a method the server serves without a row
// here fails the test.
var wantAllowed = map[string][]string{
	"herd.v1.NodeService/GetNode":       {admin, operator, viewer, viewerLogs, local},
	"herd.v1.NodeService/SetNodeLabels": {admin, local},

	"herd.v1.PodService/ApplyPod":  {admin, operator, node, local},
	"herd.v1.PodService/GetPod":    {admin, operator, viewer, viewerLogs, node, local},
	"herd.v1.PodService/ListPods":  {admin, operator, viewer, viewerLogs, node, local},
	"herd.v1.PodService/DeletePod": {admin, operator, node, local},
	"herd.v1.PodService/PodLogs":   {admin, operator, viewerLogs, node, local},

	"herd.v1.ClusterService/ListMembers":             {admin, operator, viewer, viewerLogs, local},
	"herd.v1.ClusterService/JoinCluster":             {admin, local},
	"herd.v1.ClusterService/RevokeCertificate":       {admin, local},
	"herd.v1.ClusterService/ListRevokedCertificates": {admin, local},
	"herd.v1.ClusterService/RotateGossipKey":         {admin, local},

	"herd.v1.ServiceService/ApplyService":  {admin, operator, local},
	"herd.v1.ServiceService/GetService":    {admin, operator, viewer, viewerLogs, local},
	"herd.v1.ServiceService/ListServices":  {admin, operator, viewer, viewerLogs, local},
	"herd.v1.ServiceService/DeleteService": {admin, operator, local},

	"herd.v1.SecretService/ApplySecret":  {admin, local},
	"herd.v1.SecretService/GetSecret":    {admin, local},
	"herd.v1.SecretService/ListSecrets":  {admin, local},
	"herd.v1.SecretService/DeleteSecret": {admin, local},
	"herd.v1.SecretService/RevealSecret": {admin, local},
	"herd.v1.SecretService/RotateKey":    {admin, local},

	"herd.v1.DeploymentService/ApplyDeployment":  {admin, operator, local},
	"herd.v1.DeploymentService/GetDeployment":    {admin, operator, viewer, viewerLogs, local},
	"herd.v1.DeploymentService/ListDeployments":  {admin, operator, viewer, viewerLogs, local},
	"herd.v1.DeploymentService/DeleteDeployment": {admin, operator, local},
	"herd.v1.DeploymentService/WatchDeployment":  {admin, operator, viewer, viewerLogs, local},

	"herd.v1.VolumeService/ApplyVolume":   {admin, operator, local},
	"herd.v1.VolumeService/GetVolume":     {admin, operator, viewer, viewerLogs, local},
	"herd.v1.VolumeService/ListVolumes":   {admin, operator, viewer, viewerLogs, local},
	"herd.v1.VolumeService/DeleteVolume":  {admin, operator, local},
	"herd.v1.VolumeService/BackupVolume":  {admin, operator, local},
	"herd.v1.VolumeService/RestoreVolume": {admin, operator, local},

	"herd.v1.PeerService/WaitEndpointsApplied": {node, local},
	"herd.v1.PeerService/Call":                 {node, local}, // past the interceptor; the handler refuses the socket

	"herd.v1.NestedClusterService/ApplyNestedCluster":         {admin, local},
	"herd.v1.NestedClusterService/GetNestedCluster":           {admin, local},
	"herd.v1.NestedClusterService/ListNestedClusters":         {admin, local},
	"herd.v1.NestedClusterService/DeleteNestedCluster":        {admin, local},
	"herd.v1.NestedClusterService/GetNestedClusterKubeconfig": {admin, local},

	"grpc.health.v1.Health/Check": {admin, operator, viewer, viewerLogs, node, local},
	"grpc.health.v1.Health/Watch": {admin, operator, viewer, viewerLogs, node, local},
	"grpc.health.v1.Health/List":  {admin, operator, viewer, viewerLogs, node, local},
}

// authzServer serves every herd service behind the authorization
// interceptors, over mTLS on loopback and over a unix socket, and answers
// errReached for every call they let through.
type authzServer struct {
	ca     *pki.CA
	tcp    string
	socket string
	g      *grpc.Server
}

func startAuthzServer(t *testing.T) *authzServer {
	t.Helper()
	ca, err := pki.NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueNode("node-a", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ServerTLSConfig(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	reachedUnary := func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return nil, errReached
	}
	reachedStream := func(_ any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, _ grpc.StreamHandler) error {
		if _, ok := CallerFrom(ss.Context()); !ok {
			return status.Error(codes.Internal, "no caller in the handler's context")
		}
		return errReached
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(UnaryAuthz(), reachedUnary),
		grpc.ChainStreamInterceptor(StreamAuthz(), reachedStream),
	}
	s := New(nil, nil, nil, nil)
	tlsServer := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, opts...)...)
	s.Register(tlsServer)
	unixServer := grpc.NewServer(opts...)
	s.Register(unixServer)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	ulis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = tlsServer.Serve(lis) }()
	go func() { _ = unixServer.Serve(ulis) }()
	t.Cleanup(func() { tlsServer.Stop(); unixServer.Stop(); _ = os.Remove(sock) })
	return &authzServer{ca: ca, tcp: lis.Addr().String(), socket: sock, g: tlsServer}
}

// conn dials the server as caller (a role name, node or socket).
func (a *authzServer) conn(t *testing.T, caller string, namespaces ...string) *grpc.ClientConn {
	t.Helper()
	var (
		c   *grpc.ClientConn
		err error
	)
	if caller == local {
		c, err = grpc.NewClient("unix://"+a.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		var certPEM, keyPEM []byte
		switch caller {
		case node:
			certPEM, keyPEM, err = a.ca.IssueNode("node-b", nil, nil)
		case viewerLogs:
			certPEM, keyPEM, err = a.ca.IssueClientAccess("bob", pki.Access{Role: pki.RoleViewer, Namespaces: namespaces, Logs: true})
		default:
			certPEM, keyPEM, err = a.ca.IssueClientAccess("bob", pki.Access{Role: pki.Role(caller), Namespaces: namespaces})
		}
		if err != nil {
			t.Fatal(err)
		}
		tc, err := pki.ClientTLSConfig(a.ca.CertPEM, certPEM, keyPEM, "node-a")
		if err != nil {
			t.Fatal(err)
		}
		c, err = grpc.NewClient("passthrough:///"+a.tcp, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// methodInputs maps every method of herd's and the health service's
// descriptors to its request type.
func methodInputs() map[string]protoreflect.MessageDescriptor {
	out := map[string]protoreflect.MessageDescriptor{}
	for _, f := range []protoreflect.FileDescriptor{herdv1.File_herd_v1_herd_proto, healthpb.File_grpc_health_v1_health_proto} {
		for i := 0; i < f.Services().Len(); i++ {
			svc := f.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				m := svc.Methods().Get(j)
				out["/"+string(svc.FullName())+"/"+string(m.Name())] = m.Input()
			}
		}
	}
	return out
}

// call makes one call of method with req and returns its error.
func call(ctx context.Context, c *grpc.ClientConn, method string, req proto.Message, stream bool) error {
	if !stream {
		return c.Invoke(ctx, method, req, new(emptyReply))
	}
	s, err := c.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	return s.RecvMsg(new(emptyReply))
}

// emptyReply takes the reply; none comes (calls end with errReached or
// are refused).
type emptyReply = emptypb.Empty

func isStream(t *testing.T, g *grpc.Server, method string) bool {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	for _, m := range g.GetServiceInfo()[svc].Methods {
		if m.Name == name {
			return m.IsServerStream
		}
	}
	t.Fatalf("%s is not served", method)
	return false
}

// TestRoleTable calls every served method as each role, a node
// certificate and the local socket: each is allowed or refused exactly
// as the documented table says, and every served method has a row.
func TestRoleTable(t *testing.T) {
	a := startAuthzServer(t)
	inputs := methodInputs()
	var served []string
	for svc, info := range a.g.GetServiceInfo() {
		for _, m := range info.Methods {
			served = append(served, "/"+svc+"/"+m.Name)
		}
	}
	sort.Strings(served)
	for _, m := range served {
		if _, ok := wantAllowed[strings.TrimPrefix(m, "/")]; !ok {
			t.Errorf("%s is served but the role table test has no row for it", m)
		}
		if _, ok := methodRules[m]; !ok {
			t.Errorf("%s is served but the server's role table has no row for it", m)
		}
	}
	for m := range methodRules {
		if _, ok := inputs[m]; !ok {
			t.Errorf("the server's role table has a row for %s, which is not a method", m)
		}
	}
	conns := map[string]*grpc.ClientConn{}
	for _, c := range allCallers {
		conns[c] = a.conn(t, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, m := range served {
		allowed := wantAllowed[strings.TrimPrefix(m, "/")]
		stream := isStream(t, a.g, m)
		for _, c := range allCallers {
			req := dynamicpb.NewMessage(inputs[m])
			err := call(ctx, conns[c], m, req, stream)
			want := contains(allowed, c)
			switch {
			case want && !errors.Is(err, errReached) && status.Code(err) != codes.Aborted:
				t.Errorf("%s as %s: %v, want allowed", m, c, err)
			case !want && status.Code(err) != codes.PermissionDenied:
				t.Errorf("%s as %s: %v, want PermissionDenied", m, c, err)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNamespaceLimits: a certificate limited to namespaces reaches only
// objects of those namespaces, must name one to list, and cannot touch
// pods of other namespaces; a pod request without a namespace means any
// namespace, so it must name one.
func TestNamespaceLimits(t *testing.T) {
	a := startAuthzServer(t)
	web := a.conn(t, operator, "web")
	webViewer := a.conn(t, viewerLogs, "web", "default")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc := func(ns string) *herdv1.ApplyServiceRequest {
		return &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{Namespace: ns, Name: "x"}}
	}
	for _, tc := range []struct {
		name   string
		conn   *grpc.ClientConn
		method string
		req    proto.Message
		stream bool
		allow  bool
	}{
		{"service in its namespace", web, herdv1.ServiceService_ApplyService_FullMethodName, svc("web"), false, true},
		{"service in another namespace", web, herdv1.ServiceService_ApplyService_FullMethodName, svc("db"), false, false},
		{"service with no namespace (default)", web, herdv1.ServiceService_ApplyService_FullMethodName, svc(""), false, false},
		{"get in another namespace", web, herdv1.ServiceService_GetService_FullMethodName, &herdv1.GetServiceRequest{Namespace: "db", Name: "x"}, false, false},
		{"list of every namespace", web, herdv1.ServiceService_ListServices_FullMethodName, &herdv1.ListServicesRequest{}, false, false},
		{"list of its namespace", web, herdv1.ServiceService_ListServices_FullMethodName, &herdv1.ListServicesRequest{Namespace: "web"}, false, true},
		{"deployment in another namespace", web, herdv1.DeploymentService_DeleteDeployment_FullMethodName, &herdv1.DeleteDeploymentRequest{Namespace: "db", Name: "x"}, false, false},
		{"watch in another namespace", web, herdv1.DeploymentService_WatchDeployment_FullMethodName, &herdv1.GetDeploymentRequest{Namespace: "db", Name: "x"}, true, false},
		{"watch in its namespace", web, herdv1.DeploymentService_WatchDeployment_FullMethodName, &herdv1.GetDeploymentRequest{Namespace: "web", Name: "x"}, true, true},
		{"pod with no namespace (default)", web, herdv1.PodService_ApplyPod_FullMethodName, &herdv1.ApplyPodRequest{}, false, false},
		{"pod in its namespace", web, herdv1.PodService_ApplyPod_FullMethodName, &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{Namespace: "web"}}, false, true},
		{"pod in another namespace", web, herdv1.PodService_ApplyPod_FullMethodName, &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{Namespace: "db"}}, false, false},
		{"get pod of any namespace", web, herdv1.PodService_GetPod_FullMethodName, &herdv1.GetPodRequest{Name: "x"}, false, false},
		{"get pod in its namespace", web, herdv1.PodService_GetPod_FullMethodName, &herdv1.GetPodRequest{Name: "x", Namespace: "web"}, false, true},
		{"delete pod of any namespace", web, herdv1.PodService_DeletePod_FullMethodName, &herdv1.DeletePodRequest{Name: "x"}, false, false},
		{"delete pod in another namespace", web, herdv1.PodService_DeletePod_FullMethodName, &herdv1.DeletePodRequest{Name: "x", Namespace: "db"}, false, false},
		{"list pods of every namespace", web, herdv1.PodService_ListPods_FullMethodName, &herdv1.ListPodsRequest{}, false, false},
		{"list pods of its namespace", web, herdv1.PodService_ListPods_FullMethodName, &herdv1.ListPodsRequest{Namespace: "web"}, false, true},
		{"pod logs of any namespace", web, herdv1.PodService_PodLogs_FullMethodName, &herdv1.PodLogsRequest{Pod: "x"}, true, false},
		{"pod logs in another namespace", web, herdv1.PodService_PodLogs_FullMethodName, &herdv1.PodLogsRequest{Pod: "x", Namespace: "db"}, true, false},
		{"pod logs for a viewer granted logs in default", webViewer, herdv1.PodService_PodLogs_FullMethodName, &herdv1.PodLogsRequest{Pod: "x", Namespace: "default"}, true, true},
		{"a viewer may not write", webViewer, herdv1.ServiceService_ApplyService_FullMethodName, svc("web"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := call(ctx, tc.conn, tc.method, tc.req, tc.stream)
			if tc.allow && status.Code(err) != codes.Aborted {
				t.Errorf("%v, want allowed", err)
			}
			if !tc.allow && status.Code(err) != codes.PermissionDenied {
				t.Errorf("%v, want PermissionDenied", err)
			}
		})
	}
}
