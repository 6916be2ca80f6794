package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// fakeDeploymentService answers as agentd's DeploymentService would: one
// deployment, and a watch that plays a rollout.
type fakeDeploymentService struct {
	herdv1.UnimplementedDeploymentServiceServer
	dep   *herdv1.Deployment
	watch []*herdv1.Deployment
}

func (f *fakeDeploymentService) ListDeployments(context.Context, *herdv1.ListDeploymentsRequest) (*herdv1.ListDeploymentsResponse, error) {
	return &herdv1.ListDeploymentsResponse{Deployments: []*herdv1.Deployment{f.dep}}, nil
}

func (f *fakeDeploymentService) GetDeployment(_ context.Context, req *herdv1.GetDeploymentRequest) (*herdv1.Deployment, error) {
	if req.GetName() != f.dep.GetSpec().GetName() || (req.GetNamespace() != "" && req.GetNamespace() != "default") {
		return nil, status.Error(codes.NotFound, "deployment not found")
	}
	return f.dep, nil
}

func (f *fakeDeploymentService) WatchDeployment(req *herdv1.GetDeploymentRequest, stream grpc.ServerStreamingServer[herdv1.Deployment]) error {
	for _, d := range f.watch {
		if err := stream.Send(d); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

// serveDeployments serves f on a unix socket (no TLS, as agentd's local
// socket) and returns the --node flag for it.
func serveDeployments(t *testing.T, f *fakeDeploymentService) []string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	herdv1.RegisterDeploymentServiceServer(g, f)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return []string{"--node", "node-1@unix://" + sock}
}

func sampleDeployment() *herdv1.Deployment {
	created := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	return &herdv1.Deployment{
		Spec: &herdv1.DeploymentSpec{
			Namespace: "default", Name: "web", Replicas: 3,
			NodeSelector: map[string]string{"role": "web"},
			Placement:    &herdv1.Placement{Strategy: spec.PlacementSpread, MaxPerNode: 2},
			Strategy:     &herdv1.DeploymentStrategy{Type: spec.StrategyRollingUpdate, MaxSurge: proto.Int32(1), MaxUnavailable: proto.Int32(0), ProgressDeadlineSeconds: 600},
		},
		Uid: "u-1", Revision: 2, Version: 9,
		Status: &herdv1.DeploymentStatus{
			CurrentRevision: 2, StableRevision: 2, Replicas: 3, ReadyReplicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3,
			Phase: spec.PhaseComplete, Driver: "node-2", ObservedVersion: 9,
			ReplicaStatus: []*herdv1.ReplicaStatus{
				{Pod: "web-2-abcde", Node: "node-1", Revision: 2, Phase: "Running", Ready: true, Available: true, PodIp: "10.42.0.5"},
				{Pod: "web-2-fghij", Node: "node-2", Revision: 2, Phase: "Running", Ready: true, Available: true, PodIp: "10.42.1.5"},
				{Pod: "web-2-klmno", Node: "node-3", Revision: 2, Phase: "Running", Ready: true, PodIp: "10.42.2.5"},
			},
			History: []*herdv1.DeploymentRevision{
				{Revision: 1, CreatedAt: created, Outcome: "Superseded"},
				{Revision: 2, CreatedAt: created, Outcome: spec.PhaseComplete, Change: "env V"},
			},
		},
	}
}

func TestDeploymentsCommands(t *testing.T) {
	f := &fakeDeploymentService{dep: sampleDeployment()}
	node := serveDeployments(t, f)

	var out, errb bytes.Buffer
	if code := run(append([]string{"deployments"}, node...), &out, &errb); code != 0 {
		t.Fatalf("deployments: exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAMESPACE/NAME READY/DESIRED UP-TO-DATE AVAILABLE REVISION PHASE" ||
		strings.Join(strings.Fields(lines[1]), " ") != "default/web 3/3 3 3 2 Complete" {
		t.Errorf("deployments output:\n%s", out.String())
	}

	out.Reset()
	if code := run(append([]string{"deployment", "web", "-n", "default"}, node...), &out, &errb); code != 0 {
		t.Fatalf("deployment: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{
		"default/web", "Complete", "node-2", "spread, at most 2 per node, nodes role=web",
		"RollingUpdate, surge 1 / unavailable 0", "auto rollback",
		"web-2-abcde", "node-1", "10.42.0.5", "true (not yet available)",
		"Superseded", "env V",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("deployment output lacks %q:\n%s", w, out.String())
		}
	}

	out.Reset()
	errb.Reset()
	if code := run(append([]string{"deployment", "nope"}, node...), &out, &errb); code != 1 || !strings.Contains(errb.String(), "NotFound") {
		t.Errorf("missing deployment: exit %d, stderr %s", code, errb.String())
	}
	if code := run(append([]string{"deployment"}, node...), &out, &errb); code != 2 {
		t.Errorf("no NAME: exit %d", code)
	}
}

func TestDeploymentWatch(t *testing.T) {
	step := func(version, observed uint64, ready, updated, avail int32, phase, msg string) *herdv1.Deployment {
		d := sampleDeployment()
		d.Revision, d.Version = 3, version
		d.Status = &herdv1.DeploymentStatus{CurrentRevision: 3, ReadyReplicas: ready, UpdatedReplicas: updated, AvailableReplicas: avail, Phase: phase, Message: msg, ObservedVersion: observed}
		return d
	}
	tests := []struct {
		name  string
		watch []*herdv1.Deployment
		code  int
		lines []string
	}{
		{
			name: "until complete; an old Complete does not end it; repeats print once",
			watch: []*herdv1.Deployment{
				step(10, 9, 3, 0, 3, spec.PhaseComplete, ""),
				step(10, 10, 3, 1, 3, spec.PhaseProgressing, "1 of 3 updated"),
				step(10, 10, 3, 1, 3, spec.PhaseProgressing, "1 of 3 updated"),
				step(10, 10, 3, 3, 3, spec.PhaseComplete, ""),
			},
			lines: []string{
				"revision 3: 3/3 ready, 0 updated, 3 available, Complete",
				"revision 3: 3/3 ready, 1 updated, 3 available, Progressing: 1 of 3 updated",
				"revision 3: 3/3 ready, 3 updated, 3 available, Complete",
			},
		},
		{
			name: "rolled back exits 1",
			watch: []*herdv1.Deployment{
				step(10, 10, 2, 1, 2, spec.PhaseProgressing, ""),
				step(10, 10, 3, 0, 3, spec.PhaseRolledBack, "web-3-abcde: readiness probe failed"),
			},
			code: 1,
			lines: []string{
				"revision 3: 2/3 ready, 1 updated, 2 available, Progressing",
				"revision 3: 3/3 ready, 0 updated, 3 available, RolledBack: web-3-abcde: readiness probe failed",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := serveDeployments(t, &fakeDeploymentService{dep: sampleDeployment(), watch: tt.watch})
			var out, errb bytes.Buffer
			if code := run(append([]string{"deployment", "web", "--watch"}, node...), &out, &errb); code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errb.String())
			}
			if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(tt.lines, "\n") {
				t.Errorf("watch output:\n%s\nwant:\n%s", out.String(), strings.Join(tt.lines, "\n"))
			}
		})
	}
}
