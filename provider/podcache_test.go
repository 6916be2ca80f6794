package provider

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// fakePods is a PodService holding pods by name, counting the calls the
// cache cares about.
type fakePods struct {
	herdv1.UnimplementedPodServiceServer

	mu      sync.Mutex
	pods    map[string]*herdv1.Pod
	lists   atomic.Int32
	gets    atomic.Int32
	listErr error
	// duringList, when set, runs once inside ListPods after the list is
	// taken and before it is returned.
	duringList func()
}

func (f *fakePods) put(name, uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[name] = &herdv1.Pod{Spec: &herdv1.PodSpec{Name: name}, Uid: uid}
}

func (f *fakePods) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, name)
}

func (f *fakePods) ListPods(context.Context, *herdv1.ListPodsRequest) (*herdv1.ListPodsResponse, error) {
	f.lists.Add(1)
	if f.listErr != nil {
		return nil, f.listErr
	}
	f.mu.Lock()
	out := &herdv1.ListPodsResponse{}
	for _, p := range f.pods {
		out.Pods = append(out.Pods, proto.Clone(p).(*herdv1.Pod))
	}
	during := f.duringList
	f.duringList = nil
	f.mu.Unlock()
	if during != nil {
		during()
	}
	return out, nil
}

func (f *fakePods) GetPod(_ context.Context, req *herdv1.GetPodRequest) (*herdv1.Pod, error) {
	f.gets.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod %s not found", req.GetName())
	}
	return proto.Clone(p).(*herdv1.Pod), nil
}

func (f *fakePods) ApplyPod(_ context.Context, req *herdv1.ApplyPodRequest) (*herdv1.ApplyPodResponse, error) {
	f.put(req.GetSpec().GetName(), "applied")
	return &herdv1.ApplyPodResponse{Created: true}, nil
}

func (f *fakePods) DeletePod(_ context.Context, req *herdv1.DeletePodRequest) (*herdv1.DeletePodResponse, error) {
	f.remove(req.GetName())
	return &herdv1.DeletePodResponse{Existed: true}, nil
}

// fakeDeployments answers every ApplyDeployment, dry run or not.
type fakeDeployments struct {
	herdv1.UnimplementedDeploymentServiceServer
}

func (fakeDeployments) ApplyDeployment(context.Context, *herdv1.ApplyDeploymentRequest) (*herdv1.ApplyDeploymentResponse, error) {
	return &herdv1.ApplyDeploymentResponse{}, nil
}

// servePods serves f on a unix socket and returns the node id to reach it.
func servePods(t *testing.T, f *fakePods) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	herdv1.RegisterPodServiceServer(s, f)
	herdv1.RegisterDeploymentServiceServer(s, fakeDeployments{})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return "node-a@unix://" + sock
}

// A plan's refreshes of many pods on one node share one ListPods; any
// write through the provider's connections (not a dry run) makes the next
// refresh ask the node again, so a Read never reports a pod older than the
// provider's own last write; a pod missing from the list is NotFound.
func TestPoolReadPodCache(t *testing.T) {
	type step struct {
		// do runs before the read: a write through the pool, a change
		// behind its back, or time passing.
		do       func(t *testing.T, p *Pool, f *fakePods, node string, clock *time.Time)
		read     string
		wantUID  string // "" : want NotFound
		lists    int32  // ListPods calls so far
		gets     int32  // GetPod calls so far
		parallel int    // reads of the same pod at once (default 1)
	}
	podClient := func(t *testing.T, p *Pool, node string) herdv1.PodServiceClient {
		pc, err := p.PodClient(node)
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	outOfBand := func(name, uid string) func(*testing.T, *Pool, *fakePods, string, *time.Time) {
		return func(_ *testing.T, _ *Pool, f *fakePods, _ string, _ *time.Time) {
			if uid == "" {
				f.remove(name)
			} else {
				f.put(name, uid)
			}
		}
	}
	cases := []struct {
		name    string
		listErr error
		steps   []step
	}{
		{
			name: "one list answers every pod of the node",
			steps: []step{
				{read: "a", wantUID: "uid-a", lists: 1, parallel: 20},
				{read: "b", wantUID: "uid-b", lists: 1},
				{read: "gone", lists: 1},
			},
		},
		{
			name: "ApplyPod through the pool invalidates",
			steps: []step{
				{read: "a", wantUID: "uid-a", lists: 1},
				{do: func(t *testing.T, p *Pool, _ *fakePods, node string, _ *time.Time) {
					if _, err := podClient(t, p, node).ApplyPod(context.Background(), &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{Name: "c"}}); err != nil {
						t.Fatal(err)
					}
				}, read: "c", wantUID: "applied", lists: 2},
				{read: "a", wantUID: "uid-a", lists: 2},
			},
		},
		{
			name: "DeletePod through the pool invalidates",
			steps: []step{
				{read: "a", wantUID: "uid-a", lists: 1},
				{do: func(t *testing.T, p *Pool, _ *fakePods, node string, _ *time.Time) {
					if _, err := podClient(t, p, node).DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: "a"}); err != nil {
						t.Fatal(err)
					}
				}, read: "a", lists: 2},
			},
		},
		{
			name: "a write of another service through the pool invalidates, its dry run does not",
			steps: []step{
				{read: "a", wantUID: "uid-a", lists: 1},
				{do: func(t *testing.T, p *Pool, _ *fakePods, node string, _ *time.Time) {
					dc, err := p.DeploymentClient(node)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := dc.ApplyDeployment(context.Background(), &herdv1.ApplyDeploymentRequest{DryRun: true}); err != nil {
						t.Fatal(err)
					}
				}, read: "a", wantUID: "uid-a", lists: 1},
				{do: func(t *testing.T, p *Pool, _ *fakePods, node string, _ *time.Time) {
					dc, err := p.DeploymentClient(node)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := dc.ApplyDeployment(context.Background(), &herdv1.ApplyDeploymentRequest{}); err != nil {
						t.Fatal(err)
					}
				}, read: "a", wantUID: "uid-a", lists: 2},
			},
		},
		{
			name: "a change behind the provider's back is seen once the snapshot expires",
			steps: []step{
				{read: "a", wantUID: "uid-a", lists: 1},
				{do: outOfBand("a", ""), read: "b", wantUID: "uid-b", lists: 1},
				{do: func(_ *testing.T, _ *Pool, f *fakePods, _ string, clock *time.Time) {
					*clock = clock.Add(podSnapshotTTL)
				}, read: "a", lists: 2},
				{do: outOfBand("b", "uid-b2"), read: "b", wantUID: "uid-b", lists: 2},
				{do: func(_ *testing.T, _ *Pool, _ *fakePods, _ string, clock *time.Time) {
					*clock = clock.Add(podSnapshotTTL)
				}, read: "b", wantUID: "uid-b2", lists: 3},
			},
		},
		{
			name: "a list a write overtook is not kept",
			steps: []step{
				{do: func(t *testing.T, p *Pool, f *fakePods, node string, _ *time.Time) {
					f.mu.Lock()
					defer f.mu.Unlock()
					f.duringList = func() {
						if _, err := podClient(t, p, node).DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: "a"}); err != nil {
							t.Error(err)
						}
					}
				}, read: "a", lists: 1, gets: 1},
				{read: "b", wantUID: "uid-b", lists: 2, gets: 1},
			},
		},
		{
			name:    "a node that cannot list is asked pod by pod",
			listErr: status.Error(codes.ResourceExhausted, "message larger than max"),
			steps: []step{
				{read: "a", wantUID: "uid-a", lists: 1, gets: 1},
				{read: "b", wantUID: "uid-b", lists: 1, gets: 2},
				{read: "gone", lists: 1, gets: 3},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakePods{pods: map[string]*herdv1.Pod{}, listErr: tc.listErr}
			f.put("a", "uid-a")
			f.put("b", "uid-b")
			node := servePods(t, f)
			p := NewPool(PoolConfig{})
			t.Cleanup(func() { _ = p.Close() })
			clock := time.Unix(1_000_000, 0)
			p.pods.now = func() time.Time { return clock }
			for i, s := range tc.steps {
				if s.do != nil {
					s.do(t, p, f, node, &clock)
				}
				n := max(s.parallel, 1)
				errs := make([]error, n)
				uids := make([]string, n)
				var wg sync.WaitGroup
				for j := range n {
					wg.Go(func() {
						pod, err := p.ReadPod(context.Background(), node, "", s.read)
						errs[j], uids[j] = err, pod.GetUid()
					})
				}
				wg.Wait()
				for j := range n {
					switch {
					case s.wantUID == "" && status.Code(errs[j]) != codes.NotFound:
						t.Errorf("step %d: ReadPod(%s) = %q, %v; want NotFound", i, s.read, uids[j], errs[j])
					case s.wantUID != "" && (errs[j] != nil || uids[j] != s.wantUID):
						t.Errorf("step %d: ReadPod(%s) = %q, %v; want %q", i, s.read, uids[j], errs[j], s.wantUID)
					}
				}
				if got := f.lists.Load(); got != s.lists {
					t.Errorf("step %d: %d ListPods calls, want %d", i, got, s.lists)
				}
				if got := f.gets.Load(); got != s.gets {
					t.Errorf("step %d: %d GetPod calls, want %d", i, got, s.gets)
				}
			}
		})
	}
}
