package deployments

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func TestOwner(t *testing.T) {
	members := []string{"n1", "n2", "n3", "n4"}
	if Owner("default/web", nil) != "" {
		t.Fatal("an owner without members")
	}
	counts := map[string]int{}
	moved := 0
	for i := range 400 {
		key := fmt.Sprintf("default/app-%d", i)
		o := Owner(key, members)
		if o2 := Owner(key, []string{"n4", "n2", "n3", "n1"}); o2 != o {
			t.Fatalf("%s: owner depends on the member order: %s vs %s", key, o, o2)
		}
		counts[o]++
		// without n2, only n2's deployments move
		rest := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == "n2" })
		if o3 := Owner(key, rest); o3 != o {
			if o != "n2" {
				t.Fatalf("%s moved from %s to %s when n2 left", key, o, o3)
			}
			moved++
		}
	}
	for _, m := range members {
		if counts[m] < 50 {
			t.Errorf("member %s owns %d of 400 deployments: %v", m, counts[m], counts)
		}
	}
	if moved != counts["n2"] {
		t.Errorf("%d moved, n2 owned %d", moved, counts["n2"])
	}
}

// fakeStore is an in-memory cluster store.
type fakeStore struct {
	name string
	mu   sync.Mutex
	ver  uint64
	objs map[string]cluster.Object
	subs []chan cluster.Event
	// lag: members (by name) that hold no object yet (Versions 0)
	lag map[string]bool
}

func newFakeStore(name string) *fakeStore {
	return &fakeStore{name: name, objs: map[string]cluster.Object{}, lag: map[string]bool{}}
}

func (s *fakeStore) Name() string { return s.name }

func (s *fakeStore) Get(kind, key string) (cluster.Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[kind+"\x00"+key]
	return o, ok
}

func (s *fakeStore) List(kind string) []cluster.Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []cluster.Object
	for _, k := range slices.Sorted(maps.Keys(s.objs)) {
		if o := s.objs[k]; o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (s *fakeStore) Put(kind, key string, value []byte) (uint64, error) {
	s.mu.Lock()
	s.ver++
	v := s.ver
	s.objs[kind+"\x00"+key] = cluster.Object{Kind: kind, Key: key, Value: value, Version: v, Writer: s.name}
	subs := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, c := range subs {
		select {
		case c <- cluster.Event{Type: cluster.EventObject, Kind: kind, Key: key}:
		default:
		}
	}
	return v, nil
}

func (s *fakeStore) Delete(kind, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objs, kind+"\x00"+key)
	return nil
}

func (s *fakeStore) Versions(kind, key string) map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.objs[kind+"\x00"+key].Version
	out := map[string]uint64{}
	for _, n := range []string{"n1", "n2", "n3"} {
		if !s.lag[n] {
			out[n] = v
		}
	}
	return out
}

func (s *fakeStore) Subscribe() <-chan cluster.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan cluster.Event, 64)
	s.subs = append(s.subs, c)
	return c
}

func (s *fakeStore) Unsubscribe(c <-chan cluster.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = slices.DeleteFunc(s.subs, func(x chan cluster.Event) bool { return x == c })
}

// fakeNodes are members running pods in memory, as agentd would: replicas
// get the deployment labels; a pod is ready at once unless notReady says
// otherwise.
type fakeNodes struct {
	mu       sync.Mutex
	live     []string
	pods     map[string]map[string]*herdv1.Pod // node -> name -> pod
	notReady func(*herdv1.PodSpec) bool
	full     map[string]bool // nodes refusing with INSUFFICIENT_RESOURCES
	mute     map[string]bool // nodes whose ListPods fails
	now      func() time.Time
	applied  int
	deleted  []string
}

func newFakeNodes(now func() time.Time, names ...string) *fakeNodes {
	f := &fakeNodes{live: names, pods: map[string]map[string]*herdv1.Pod{}, full: map[string]bool{}, mute: map[string]bool{}, now: now}
	for _, n := range names {
		f.pods[n] = map[string]*herdv1.Pod{}
	}
	return f
}

func (f *fakeNodes) Nodes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.live))
}

func (f *fakeNodes) Pods(_ context.Context, node string) (herdv1.PodServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.live, node) {
		return nil, fmt.Errorf("%s: no API address", node)
	}
	return &fakePodClient{f: f, node: node}, nil
}

// view is the scheduler's: every live node, plenty of room.
func (f *fakeNodes) view() []schedule.Node {
	var out []schedule.Node
	for _, n := range f.Nodes() {
		out = append(out, schedule.Node{Name: n, Ready: true,
			Allocatable: schedule.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30},
			Free:        schedule.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30}})
	}
	return out
}

func (f *fakeNodes) all() []*herdv1.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*herdv1.Pod
	for _, n := range slices.Sorted(maps.Keys(f.pods)) {
		for _, name := range slices.Sorted(maps.Keys(f.pods[n])) {
			out = append(out, f.pods[n][name])
		}
	}
	return out
}

type fakePodClient struct {
	herdv1.PodServiceClient
	f    *fakeNodes
	node string
}

func (c *fakePodClient) ApplyPod(_ context.Context, req *herdv1.ApplyPodRequest, _ ...grpc.CallOption) (*herdv1.ApplyPodResponse, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full[c.node] {
		st, _ := status.New(codes.FailedPrecondition, "memory 1Gi requested > 0 free").WithDetails(errInfo(herdv1.ReasonInsufficientResources))
		return nil, st.Err()
	}
	s := proto.Clone(req.GetSpec()).(*herdv1.PodSpec)
	if ref := s.GetDeployment(); ref != nil {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[spec.LabelDeployment] = spec.DeploymentLabel(ref.GetNamespace(), ref.GetName())
		s.Labels[spec.LabelRevision] = strconv.FormatInt(ref.GetRevision(), 10)
	}
	ready := f.notReady == nil || !f.notReady(s)
	now := f.now()
	p := &herdv1.Pod{Spec: s, Uid: "uid-" + s.GetName(), CreatedAt: timestamppb.New(now), Status: &herdv1.PodStatus{
		Phase: "Running", Ready: ready, PodIp: "10.0.0.1",
		Containers: []*herdv1.ContainerStatus{{Name: s.GetContainers()[0].GetName(), State: "running", Ready: ready}},
	}}
	if ready {
		p.Status.ReadySince = timestamppb.New(now)
	} else {
		p.Status.Containers[0].Message = "Readiness probe failed: HTTP probe failed with statuscode: 503"
	}
	f.pods[c.node][s.GetName()] = p
	f.applied++
	return &herdv1.ApplyPodResponse{Pod: p, Created: true}, nil
}

func (c *fakePodClient) ListPods(_ context.Context, req *herdv1.ListPodsRequest, _ ...grpc.CallOption) (*herdv1.ListPodsResponse, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mute[c.node] {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	resp := &herdv1.ListPodsResponse{}
	for _, name := range slices.Sorted(maps.Keys(f.pods[c.node])) {
		p := f.pods[c.node][name]
		ok := true
		for k, v := range req.GetLabelSelector() {
			if p.GetSpec().GetLabels()[k] != v {
				ok = false
			}
		}
		if ok {
			resp.Pods = append(resp.Pods, proto.Clone(p).(*herdv1.Pod))
		}
	}
	return resp, nil
}

func (c *fakePodClient) DeletePod(_ context.Context, req *herdv1.DeletePodRequest, _ ...grpc.CallOption) (*herdv1.DeletePodResponse, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pods[c.node][req.GetName()]
	delete(f.pods[c.node], req.GetName())
	if ok {
		f.deleted = append(f.deleted, req.GetName())
	}
	return &herdv1.DeletePodResponse{Existed: ok}, nil
}

func (c *fakePodClient) PodLogs(_ context.Context, req *herdv1.PodLogsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[herdv1.LogChunk], error) {
	return &fakeLogs{data: []byte("starting " + req.GetPod() + "\nlistening on :8080\n")}, nil
}

type fakeLogs struct {
	grpc.ClientStream
	data []byte
	done bool
}

func (l *fakeLogs) Recv() (*herdv1.LogChunk, error) {
	if l.done {
		return nil, io.EOF
	}
	l.done = true
	return &herdv1.LogChunk{Data: l.data}, nil
}

func (l *fakeLogs) Header() (metadata.MD, error) { return nil, nil }
func (l *fakeLogs) CloseSend() error             { return nil }

// clock is a test clock moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness runs a driver's passes by hand.
type harness struct {
	t     *testing.T
	st    *fakeStore
	nodes *fakeNodes
	clk   *clock
	d     *Driver
	l     *loop
	ver   uint64
	rec   *herdv1.DeploymentRecord
}

func newHarness(t *testing.T) *harness {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := &harness{t: t, st: newFakeStore("n1"), clk: clk}
	h.nodes = newFakeNodes(clk.now, "n1", "n2", "n3")
	h.d = NewDriver(DriverConfig{
		Store: h.st, Peers: h.nodes, Nodes: h.nodes.view, Now: clk.now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	h.l = newLoop(h.d, "default/web")
	return h
}

func template(env string) *herdv1.PodSpec {
	return &herdv1.PodSpec{
		Labels: map[string]string{"app": "web"},
		Containers: []*herdv1.ContainerSpec{{
			Name: "web", Image: "webapp:1", Env: map[string]string{"REVISION": env},
			CpuRequest: "100m", MemoryRequest: "64Mi",
		}},
	}
}

// apply writes the deployment as the registry would: a template change
// makes a new revision.
func (h *harness) apply(replicas int32, tmpl *herdv1.PodSpec, mutate ...func(*herdv1.DeploymentSpec)) {
	h.t.Helper()
	sp := &herdv1.DeploymentSpec{Name: "web", Replicas: replicas, Selector: map[string]string{"app": "web"}, Template: tmpl}
	for _, m := range mutate {
		m(sp)
	}
	sp = spec.DefaultDeployment(sp)
	if h.rec == nil {
		h.rec = &herdv1.DeploymentRecord{Deployment: &herdv1.Deployment{Uid: "u1", Revision: 0, CreatedAt: timestamppb.New(h.clk.now())}}
	}
	dep := h.rec.Deployment
	last := templateOf(h.rec, dep.GetRevision())
	if last == nil || !proto.Equal(last, tmpl) {
		dep.Revision++
		h.rec.Templates = append(h.rec.Templates, &herdv1.RevisionTemplate{Revision: dep.Revision, Template: tmpl, CreatedAt: timestamppb.New(h.clk.now())})
	}
	dep.Spec = sp
	b, err := proto.Marshal(h.rec)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.ver, err = h.st.Put(kindRecord, "default/web", b); err != nil {
		h.t.Fatal(err)
	}
}

// pass runs one pass and waits for its deletes.
func (h *harness) pass() *herdv1.DeploymentStatus {
	h.t.Helper()
	h.l.pass(context.Background())
	h.l.wg.Wait()
	st, _ := h.l.status()
	return st
}

// converge runs passes until the status says phase (at most n passes),
// calling check after each.
func (h *harness) converge(phase string, n int, check func(*herdv1.DeploymentStatus)) *herdv1.DeploymentStatus {
	h.t.Helper()
	var st *herdv1.DeploymentStatus
	for range n {
		st = h.pass()
		if check != nil {
			check(st)
		}
		if st.GetPhase() == phase && st.GetObservedVersion() == h.ver {
			return st
		}
		h.clk.add(time.Second)
	}
	h.t.Fatalf("not %s after %d passes: %v", phase, n, st)
	return nil
}

func (h *harness) revisions() map[int64]int {
	out := map[int64]int{}
	for _, p := range h.nodes.all() {
		out[p.GetSpec().GetDeployment().GetRevision()]++
	}
	return out
}

func errInfo(reason string) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Reason: reason, Domain: herdv1.ErrorDomain}
}

// TestDriverLifecycle: a new deployment gets its replicas and completes;
// a new revision rolls out within surge and unavailability bounds; a
// scale keeps the survivors; an out-of-band deletion is healed; strays
// of an older deployment of the same name go; a deletion removes every
// replica and then the status.
func TestDriverLifecycle(t *testing.T) {
	h := newHarness(t)
	h.apply(3, template("1"))
	st := h.converge(spec.PhaseComplete, 10, nil)
	if got := h.revisions(); got[1] != 3 || len(got) != 1 {
		t.Fatalf("replicas by revision %v, want 3 of revision 1", got)
	}
	if st.GetStableRevision() != 1 || st.GetCurrentRevision() != 1 || st.GetReadyReplicas() != 3 || st.GetDriver() != "n1" || len(st.GetReplicaStatus()) != 3 {
		t.Fatalf("status %v", st)
	}
	if len(st.GetHistory()) != 1 || st.GetHistory()[0].GetOutcome() != spec.PhaseComplete {
		t.Fatalf("history %v", st.GetHistory())
	}
	// Nothing changes: no write.
	before, _ := h.st.Get(kindStatusObj, "default/web")
	h.pass()
	if after, _ := h.st.Get(kindStatusObj, "default/web"); after.Version != before.Version {
		t.Fatal("a pass without change wrote the status")
	}

	// Rolling update, surge 1 / unavailable 0.
	h.apply(3, template("2"))
	st = h.converge(spec.PhaseComplete, 30, func(*herdv1.DeploymentStatus) {
		pods := h.nodes.all()
		ready := 0
		for _, p := range pods {
			if p.GetStatus().GetReady() {
				ready++
			}
		}
		if len(pods) > 4 || ready < 3 {
			t.Fatalf("%d replicas, %d ready during the rollout; want at most 4 and at least 3", len(pods), ready)
		}
	})
	if got := h.revisions(); got[2] != 3 || len(got) != 1 {
		t.Fatalf("after the rollout: %v", got)
	}
	if st.GetStableRevision() != 2 || !strings.Contains(st.GetHistory()[1].GetChange(), "web: env") {
		t.Fatalf("status %v", st)
	}

	// Scale 3 -> 5 -> 2: survivors keep their uid.
	uids := map[string]bool{}
	for _, p := range h.nodes.all() {
		uids[p.GetUid()] = true
	}
	h.apply(5, template("2"))
	h.converge(spec.PhaseComplete, 10, nil)
	if n := len(h.nodes.all()); n != 5 {
		t.Fatalf("%d replicas after scaling to 5", n)
	}
	for _, p := range h.nodes.all() {
		delete(uids, p.GetUid())
	}
	if len(uids) != 0 {
		t.Fatalf("scaling up replaced replicas: %v", uids)
	}
	h.apply(2, template("2"))
	h.converge(spec.PhaseComplete, 10, nil)
	if n := len(h.nodes.all()); n != 2 {
		t.Fatalf("%d replicas after scaling to 2", n)
	}

	// Out of band: one deleted, one stray of an older deployment.
	victim := h.nodes.all()[0]
	h.nodes.mu.Lock()
	for n := range h.nodes.pods {
		delete(h.nodes.pods[n], victim.GetSpec().GetName())
	}
	stray := proto.Clone(victim).(*herdv1.Pod)
	stray.Spec.Name = "web-1-stray"
	stray.Spec.Deployment.Uid = "old"
	h.nodes.pods["n3"]["web-1-stray"] = stray
	h.nodes.mu.Unlock()
	h.pass()
	h.pass()
	if n := len(h.nodes.all()); n != 2 {
		t.Fatalf("%d replicas after healing, want 2", n)
	}
	for _, p := range h.nodes.all() {
		if p.GetSpec().GetName() == victim.GetSpec().GetName() || p.GetSpec().GetName() == "web-1-stray" {
			t.Fatalf("%s still there", p.GetSpec().GetName())
		}
	}

	// Deleted: replicas, then the status.
	if err := h.st.Delete(kindRecord, "default/web"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if h.l.pass(context.Background()) {
			break
		}
		h.l.wg.Wait()
	}
	if n := len(h.nodes.all()); n != 0 {
		t.Fatalf("%d replicas after the deletion", n)
	}
	if _, ok := h.st.Get(kindStatusObj, "default/web"); ok {
		t.Fatal("status object left after the deletion")
	}
}

// TestDriverRollback: a revision that never becomes ready fails at its
// progress deadline and is rolled back; the message names the replica,
// its probe message and its log lines. A first revision cannot roll back.
func TestDriverRollback(t *testing.T) {
	h := newHarness(t)
	short := func(sp *herdv1.DeploymentSpec) { sp.Strategy = &herdv1.DeploymentStrategy{ProgressDeadlineSeconds: 20} }
	h.apply(3, template("1"), short)
	h.converge(spec.PhaseComplete, 10, nil)
	h.nodes.notReady = func(s *herdv1.PodSpec) bool { return s.GetContainers()[0].GetEnv()["REVISION"] == "bad" }
	h.apply(3, template("bad"), short)
	st := h.converge(spec.PhaseRolledBack, 60, func(*herdv1.DeploymentStatus) {
		ready := 0
		for _, p := range h.nodes.all() {
			if p.GetStatus().GetReady() {
				ready++
			}
		}
		if ready < 3 {
			t.Fatalf("%d ready replicas during a failing rollout", ready)
		}
	})
	if got := h.revisions(); got[1] != 3 || len(got) != 1 {
		t.Fatalf("after the rollback: %v", got)
	}
	if st.GetFailedRevision() != 2 || st.GetCurrentRevision() != 1 ||
		!strings.Contains(st.GetMessage(), "HTTP probe failed with statuscode: 503") || !strings.Contains(st.GetMessage(), "listening on :8080") {
		t.Fatalf("status %v", st)
	}
	if h := st.GetHistory(); len(h) != 2 || h[1].GetOutcome() != spec.PhaseRolledBack {
		t.Fatalf("history %v", h)
	}
	// The same failing spec stays rolled back; a fixed one rolls out.
	h.pass()
	h.nodes.notReady = nil
	h.apply(3, template("3"), short)
	st = h.converge(spec.PhaseComplete, 30, nil)
	if st.GetCurrentRevision() != 3 || st.GetFailedRevision() != 0 {
		t.Fatalf("status %v", st)
	}

	first := newHarness(t)
	first.nodes.notReady = func(*herdv1.PodSpec) bool { return true }
	first.apply(2, template("1"), short)
	st = first.converge(spec.PhaseFailed, 40, nil)
	if !strings.Contains(st.GetMessage(), "not available after 20s") {
		t.Fatalf("status %v", st)
	}
}

// TestDriverRefusedNode: a node that refuses for want of resources is
// left out and the replica placed on another.
func TestDriverRefusedNode(t *testing.T) {
	h := newHarness(t)
	h.nodes.full["n1"] = true
	h.nodes.full["n2"] = true
	h.apply(2, template("1"))
	h.converge(spec.PhaseComplete, 10, nil)
	for _, p := range h.nodes.all() {
		h.nodes.mu.Lock()
		_, onN3 := h.nodes.pods["n3"][p.GetSpec().GetName()]
		h.nodes.mu.Unlock()
		if !onN3 {
			t.Fatalf("%s not on n3", p.GetSpec().GetName())
		}
	}
}

// TestDriverBlueGreen: the new replicas all come up before the switch;
// the old ones go only after it, once every member holds the status.
func TestDriverBlueGreen(t *testing.T) {
	h := newHarness(t)
	bg := func(sp *herdv1.DeploymentSpec) {
		sp.Strategy = &herdv1.DeploymentStrategy{Type: spec.StrategyBlueGreen}
	}
	h.apply(2, template("1"), bg)
	st := h.converge(spec.PhaseComplete, 10, nil)
	if st.GetServingRevision() != 1 {
		t.Fatalf("serving %d", st.GetServingRevision())
	}
	h.apply(2, template("2"), bg)
	h.st.lag["n2"] = true
	for range 5 {
		st = h.pass()
		h.clk.add(time.Second)
	}
	if got := h.revisions(); got[1] != 2 || got[2] != 2 || st.GetServingRevision() != 2 {
		t.Fatalf("while n2 lags: %v, serving %d", got, st.GetServingRevision())
	}
	h.st.lag["n2"] = false
	st = h.converge(spec.PhaseComplete, 10, nil)
	if got := h.revisions(); got[2] != 2 || len(got) != 1 || st.GetServingRevision() != 2 {
		t.Fatalf("after the switch: %v, serving %d", got, st.GetServingRevision())
	}
}

// TestServingGate: only BlueGreen deployments with a serving revision
// filter their endpoints.
func TestServingGate(t *testing.T) {
	st := newFakeStore("n1")
	put := func(kind string, m proto.Message) {
		b, _ := proto.Marshal(m)
		_, _ = st.Put(kind, "default/web", b)
	}
	gate := ServingGate(st)
	admit := gate.Admit
	l := func(rev string) map[string]string {
		return map[string]string{"app": "web", spec.LabelDeployment: "default.web", spec.LabelRevision: rev}
	}
	if !admit(l("1")) || !admit(map[string]string{"app": "x"}) {
		t.Fatal("refused without a deployment")
	}
	put(kindRecord, &herdv1.DeploymentRecord{Deployment: &herdv1.Deployment{Spec: &herdv1.DeploymentSpec{Strategy: &herdv1.DeploymentStrategy{Type: spec.StrategyBlueGreen}}}})
	put(kindStatusObj, &herdv1.DeploymentStatus{ServingRevision: 2})
	if admit(l("1")) || !admit(l("2")) {
		t.Fatal("BlueGreen: revision 1 admitted or 2 refused")
	}
	put(kindRecord, &herdv1.DeploymentRecord{Deployment: &herdv1.Deployment{Spec: &herdv1.DeploymentSpec{Strategy: &herdv1.DeploymentStrategy{Type: spec.StrategyRollingUpdate}}}})
	if !admit(l("1")) {
		t.Fatal("RollingUpdate: revision 1 refused")
	}
	// The events that may change admission name the deployment's replicas.
	for _, tc := range []struct {
		ev   cluster.Event
		want map[string]string
	}{
		{cluster.Event{Type: cluster.EventObject, Kind: kindStatusObj, Key: "default/web"}, map[string]string{spec.LabelDeployment: "default.web"}},
		{cluster.Event{Type: cluster.EventObject, Kind: kindRecord, Key: "prod/api"}, map[string]string{spec.LabelDeployment: "prod.api"}},
		{cluster.Event{Type: cluster.EventObject, Kind: "service", Key: "default/web"}, nil},
		{cluster.Event{Type: cluster.EventEntry, Kind: kindStatusObj, Key: "default/web"}, nil},
	} {
		if got := gate.Affected(tc.ev); !maps.Equal(got, tc.want) {
			t.Errorf("Affected(%+v) = %v, want %v", tc.ev, got, tc.want)
		}
	}
}

func TestTemplateChange(t *testing.T) {
	a := template("1")
	b := template("2")
	b.Containers[0].Image = "webapp:2"
	b.RestartPolicy = "OnFailure"
	if got := templateChange(a, b); got != "web: image, env; pod: restart_policy" {
		t.Fatalf("got %q", got)
	}
	if got := templateChange(nil, a); got != "first revision" {
		t.Fatalf("got %q", got)
	}
}

// TestDriverUnreachableMember: the replicas recorded on a live member that
// does not answer are carried over, not replaced; a member that is gone
// takes its replicas with it and they are placed again.
func TestDriverUnreachableMember(t *testing.T) {
	h := newHarness(t)
	h.apply(3, template("1"), func(sp *herdv1.DeploymentSpec) { sp.Placement = &herdv1.Placement{Strategy: spec.PlacementSpread} })
	h.converge(spec.PhaseComplete, 10, nil)
	applied := h.nodes.applied
	h.nodes.mute["n2"] = true
	for range 3 {
		st := h.pass()
		if len(st.GetReplicaStatus()) != 3 {
			t.Fatalf("replicas %v", st.GetReplicaStatus())
		}
	}
	if h.nodes.applied != applied {
		t.Fatalf("%d replicas created while n2 did not answer", h.nodes.applied-applied)
	}
	h.nodes.mu.Lock()
	h.nodes.live = []string{"n1", "n3"}
	h.nodes.mu.Unlock()
	h.pass()
	if h.nodes.applied != applied+1 {
		t.Fatalf("%d replicas created after n2 left, want 1", h.nodes.applied-applied)
	}
}
