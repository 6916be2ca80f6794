package server

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

type fakeDeployments struct {
	mu     sync.Mutex
	recs   map[string]deployments.Record
	status map[string]*herdv1.DeploymentStatus
	err    error // Apply's
}

func (f *fakeDeployments) Apply(_ context.Context, req *herdv1.ApplyDeploymentRequest) (*herdv1.ApplyDeploymentResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	if errs := spec.ValidateDeployment(req.GetSpec()); len(errs) > 0 {
		return nil, errs
	}
	return &herdv1.ApplyDeploymentResponse{Changed: true}, nil
}

func (f *fakeDeployments) Get(key string) (deployments.Record, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[key]
	return r, ok
}

func (f *fakeDeployments) List() []deployments.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []deployments.Record
	for _, r := range f.recs {
		out = append(out, r)
	}
	return out
}

func (f *fakeDeployments) Delete(key, _ string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.recs[key]
	delete(f.recs, key)
	return ok, nil
}

func (f *fakeDeployments) Status(key string) (*herdv1.DeploymentStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.status[key]
	return st, ok
}

func (f *fakeDeployments) setPhase(key, phase string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[key] = &herdv1.DeploymentStatus{Phase: phase}
}

type fakeEvents struct{ ch chan cluster.Event }

func (e *fakeEvents) Subscribe() <-chan cluster.Event     { return e.ch }
func (e *fakeEvents) Unsubscribe(ch <-chan cluster.Event) {}

func deploymentClient(t *testing.T, s *Server) herdv1.DeploymentServiceClient {
	t.Helper()
	g := grpc.NewServer()
	s.registerDeployments(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return herdv1.NewDeploymentServiceClient(conn)
}

func TestDeploymentService(t *testing.T) {
	ctx := context.Background()
	// Without a cluster.
	alone := deploymentClient(t, New(nil, nil, nil, nil))
	_, err := alone.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "web"})
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "deployments need a cluster (--cluster-cidr)" {
		t.Fatalf("without a cluster: %v", err)
	}

	f := &fakeDeployments{
		recs: map[string]deployments.Record{"default/web": {DeploymentRecord: &herdv1.DeploymentRecord{Deployment: &herdv1.Deployment{
			Spec: &herdv1.DeploymentSpec{Namespace: "default", Name: "web", Replicas: 3}, Uid: "u1", Revision: 2,
		}}, Version: 7}},
		status: map[string]*herdv1.DeploymentStatus{"default/web": {Phase: spec.PhaseProgressing}},
	}
	ev := &fakeEvents{ch: make(chan cluster.Event, 10)}
	s := New(nil, nil, nil, nil)
	s.SetDeployments(f, ev)
	c := deploymentClient(t, s)

	_, err = c.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: &herdv1.DeploymentSpec{Name: "web", Replicas: -1}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "spec.replicas:") {
		t.Errorf("bad input: %v", err)
	}
	f.err = &deployments.UnplaceableError{Report: "cannot place 1 of 1 replicas of default/web: node-1 not ready (no API address)"}
	_, err = c.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: &herdv1.DeploymentSpec{Name: "web"}})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != f.err.Error() {
		t.Errorf("unplaceable: %v", err)
	}
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != herdv1.ReasonUnplaceable {
		t.Errorf("unplaceable reason %q", reason)
	}

	d, err := c.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "web"})
	if err != nil || d.GetVersion() != 7 || d.GetUid() != "u1" || d.GetStatus().GetPhase() != spec.PhaseProgressing {
		t.Errorf("get: %v %v", d, err)
	}
	if _, err := c.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("get missing: %v", err)
	}
	if _, err := c.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: "Bad_Name"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("get bad name: %v", err)
	}
	if l, err := c.ListDeployments(ctx, &herdv1.ListDeploymentsRequest{Namespace: "other"}); err != nil || len(l.GetDeployments()) != 0 {
		t.Errorf("list other: %v %v", l, err)
	}
	if l, err := c.ListDeployments(ctx, &herdv1.ListDeploymentsRequest{}); err != nil || len(l.GetDeployments()) != 1 {
		t.Errorf("list: %v %v", l, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := c.WatchDeployment(wctx, &herdv1.GetDeploymentRequest{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetStatus().GetPhase() != spec.PhaseProgressing {
		t.Fatalf("watch first: %v %v", first, err)
	}
	ev.ch <- cluster.Event{Type: cluster.EventObject, Kind: "service", Key: "default/web"} // not about it
	f.setPhase("default/web", spec.PhaseComplete)
	ev.ch <- cluster.Event{Type: cluster.EventObject, Kind: deployments.KindStatus, Key: "default/web"}
	next, err := w.Recv()
	if err != nil || next.GetStatus().GetPhase() != spec.PhaseComplete {
		t.Fatalf("watch after the status changed: %v %v", next, err)
	}

	if r, err := c.DeleteDeployment(ctx, &herdv1.DeleteDeploymentRequest{Name: "web"}); err != nil || !r.GetExisted() {
		t.Errorf("delete: %v %v", r, err)
	}
	ev.ch <- cluster.Event{Type: cluster.EventObject, Kind: deployments.KindDeployment, Key: "default/web"}
	if _, err := w.Recv(); status.Code(err) != codes.NotFound {
		t.Errorf("watch after delete: %v, want NotFound", err)
	}
}

// The agent hands the server the registry and the cluster.
var (
	_ Deployments   = (*deployments.Registry)(nil)
	_ ClusterEvents = (*cluster.Cluster)(nil)
)
