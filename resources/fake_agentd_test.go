package resources_test

import (
	"context"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/agentd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/agentd/spec"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// fakeAgentd is an in-memory stand-in for agentd, served on a unix socket,
// for testing the provider's own logic (waiting, failure handling, null vs
// empty, import) before the real agentd exists. How a pod's containers
// behave is chosen by their image:
//
//	test/crash  exits with code 3 at once, logging "boom: config missing"
//	test/hang   stays waiting in ContainerCreating
//	test/flaky  runs, then restarts after 300 ms
//	test/done   exits 0 at once (the pod succeeds unless restart_policy = Always)
//	anything else runs
//
// The acceptance tests against the real agentd replace none of this: they
// test agentd; this tests the provider.
type fakeAgentd struct {
	herdv1.UnimplementedNodeServiceServer
	herdv1.UnimplementedPodServiceServer

	name   string
	addr   string // unix:///... or 127.0.0.1:port
	server *grpc.Server

	mu     sync.Mutex
	labels map[string]string
	pods   map[string]*fakePod
	nextID int
}

type fakePod struct {
	pod     *herdv1.Pod
	applied time.Time
}

func startFakeAgentd(t *testing.T, name string) *fakeAgentd {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return serveFake(t, name, "unix://"+sock, lis)
}

// startFakeAgentdTLS serves the fake on 127.0.0.1 over mutual TLS, with a
// node certificate for certName issued by ca.
func startFakeAgentdTLS(t *testing.T, name, certName string, ca *pki.CA) *fakeAgentd {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueNode(certName, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ServerTLSConfig(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveFake(t, name, lis.Addr().String(), lis, grpc.Creds(credentials.NewTLS(tc)))
}

func serveFake(t *testing.T, name, addr string, lis net.Listener, opts ...grpc.ServerOption) *fakeAgentd {
	f := &fakeAgentd{name: name, addr: addr, server: grpc.NewServer(opts...), labels: map[string]string{}, pods: map[string]*fakePod{}}
	herdv1.RegisterNodeServiceServer(f.server, f)
	herdv1.RegisterPodServiceServer(f.server, f)
	go func() { _ = f.server.Serve(lis) }()
	t.Cleanup(f.server.Stop)
	return f
}

// nodeID is the herd_node id of the fake.
func (f *fakeAgentd) nodeID() string { return f.name + "@" + f.addr }

func (f *fakeAgentd) node() *herdv1.Node {
	labels := map[string]string{}
	for k, v := range f.labels {
		labels[k] = v
	}
	return &herdv1.Node{
		Name:          f.name,
		Labels:        labels,
		Capacity:      &herdv1.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30},
		Allocatable:   &herdv1.Resources{CpuMillis: 1800, MemoryBytes: 3 << 30},
		AgentVersion:  "0.0.0-fake",
		Os:            "linux",
		Arch:          "amd64",
		KernelVersion: "6.1.0-fake",
		Ready:         true,
	}
}

func (f *fakeAgentd) GetNode(context.Context, *herdv1.GetNodeRequest) (*herdv1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.node(), nil
}

func (f *fakeAgentd) SetNodeLabels(_ context.Context, req *herdv1.SetNodeLabelsRequest) (*herdv1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if errs := spec.ValidateLabels(spec.Path{}.Field("labels"), req.GetLabels()); len(errs) > 0 {
		return nil, status.Error(codes.InvalidArgument, errs.Error())
	}
	f.labels = map[string]string{}
	for k, v := range req.GetLabels() {
		f.labels[k] = v
	}
	return f.node(), nil
}

func (f *fakeAgentd) ApplyPod(_ context.Context, req *herdv1.ApplyPodRequest) (*herdv1.ApplyPodResponse, error) {
	if errs := spec.ValidatePod(req.GetSpec()); len(errs) > 0 {
		return nil, status.Error(codes.InvalidArgument, "spec."+errs.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := spec.Defaulted(req.GetSpec())
	if p, ok := f.pods[s.GetName()]; ok {
		if p.pod.GetSpecHash() != spec.Hash(s) {
			return nil, status.Errorf(codes.AlreadyExists, "pod %q exists with another spec", s.GetName())
		}
		return &herdv1.ApplyPodResponse{Pod: f.observe(p)}, nil
	}
	f.nextID++
	now := time.Now()
	p := &fakePod{applied: now, pod: &herdv1.Pod{
		Spec:      s,
		Uid:       "uid-" + string(rune('a'+f.nextID%26)) + time.Now().Format("150405.000000"),
		SpecHash:  spec.Hash(s),
		CreatedAt: timestamppb.New(now),
	}}
	f.pods[s.GetName()] = p
	return &herdv1.ApplyPodResponse{Pod: f.observe(p), Created: true}, nil
}

// observe computes a pod's status from its images and age.
func (f *fakeAgentd) observe(p *fakePod) *herdv1.Pod {
	age := time.Since(p.applied)
	start := timestamppb.New(p.applied.Truncate(time.Second))
	st := &herdv1.PodStatus{Phase: "Running", StartTime: start}
	allDone := true
	for i, c := range p.pod.GetSpec().GetContainers() {
		cs := &herdv1.ContainerStatus{Name: c.GetName()}
		code := func(v int32) *int32 { return &v }
		switch c.GetImage() {
		case "test/crash":
			cs.State, cs.Reason, cs.LastExitCode = "terminated", "Error", code(3)
		case "test/hang":
			cs.State, cs.Reason = "waiting", "ContainerCreating"
		case "test/done":
			cs.State, cs.Reason, cs.LastExitCode = "terminated", "Completed", code(0)
		case "test/flaky":
			cs.State, cs.Pid, cs.StartedAt = "running", uint32(1000+i), start
			if age > 300*time.Millisecond {
				cs.RestartCount, cs.LastExitCode = 1, code(137)
			}
		default:
			cs.State, cs.Pid, cs.StartedAt = "running", uint32(1000+i), start
		}
		if cs.GetState() != "terminated" || cs.GetLastExitCode() != 0 {
			allDone = false
		}
		st.Containers = append(st.Containers, cs)
	}
	if allDone && p.pod.GetSpec().GetRestartPolicy() != spec.RestartAlways {
		st.Phase = "Succeeded"
	}
	out := proto.Clone(p.pod).(*herdv1.Pod)
	out.Status = st
	return out
}

func (f *fakeAgentd) GetPod(_ context.Context, req *herdv1.GetPodRequest) (*herdv1.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod %q not found", req.GetName())
	}
	return f.observe(p), nil
}

func (f *fakeAgentd) ListPods(_ context.Context, req *herdv1.ListPodsRequest) (*herdv1.ListPodsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*herdv1.Pod
next:
	for _, p := range f.pods {
		for k, v := range req.GetLabelSelector() {
			if got, ok := p.pod.GetSpec().GetLabels()[k]; !ok || got != v {
				continue next
			}
		}
		out = append(out, f.observe(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetUid() < out[j].GetUid() })
	return &herdv1.ListPodsResponse{Pods: out}, nil
}

func (f *fakeAgentd) DeletePod(_ context.Context, req *herdv1.DeletePodRequest) (*herdv1.DeletePodResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pods[req.GetName()]
	delete(f.pods, req.GetName())
	return &herdv1.DeletePodResponse{Existed: ok}, nil
}

func (f *fakeAgentd) PodLogs(req *herdv1.PodLogsRequest, stream grpc.ServerStreamingServer[herdv1.LogChunk]) error {
	f.mu.Lock()
	p, ok := f.pods[req.GetPod()]
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "pod %q not found", req.GetPod())
	}
	for _, c := range p.pod.GetSpec().GetContainers() {
		if c.GetName() != req.GetContainer() {
			continue
		}
		var text string
		for i := 1; i <= 30; i++ {
			text += "line " + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "\n"
		}
		text += "boom: config missing\n"
		return stream.Send(&herdv1.LogChunk{Container: c.GetName(), Data: []byte(text)})
	}
	return status.Errorf(codes.NotFound, "no container %q", req.GetContainer())
}

// podNames lists the pods the fake holds.
func (f *fakeAgentd) podNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.pods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (f *fakeAgentd) deletePod(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, name)
}
