package deployments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/agentd/services"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

const regGi = int64(1) << 30

// regStore is a single member's view of the cluster: objects with
// versions, members and entries.
type regStore struct {
	mu      sync.Mutex
	objs    map[string]cluster.Object
	version uint64
	members []cluster.Member
	entries []cluster.Entry
	puts    int
}

func testRegistry(st Store) *Registry {
	return NewRegistry(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func newRegStore() *regStore { return &regStore{objs: map[string]cluster.Object{}} }

func (f *regStore) Name() string { return "node-1" }

func (f *regStore) Get(kind, key string) (cluster.Object, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objs[kind+"\x00"+key]
	return o, ok
}

func (f *regStore) List(kind string) []cluster.Object {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Object
	for _, o := range f.objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (f *regStore) Put(kind, key string, value []byte) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	f.puts++
	f.objs[kind+"\x00"+key] = cluster.Object{Kind: kind, Key: key, Value: value, Version: f.version, Writer: "node-1"}
	return f.version, nil
}

func (f *regStore) Delete(kind, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objs, kind+"\x00"+key)
	return nil
}

func (f *regStore) DeleteIf(kind, key string, check func(cluster.Object) error) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objs[kind+"\x00"+key]
	if !ok {
		return false, nil
	}
	if err := check(o); err != nil {
		return false, err
	}
	delete(f.objs, kind+"\x00"+key)
	return true, nil
}

func (f *regStore) Members() []cluster.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cluster.Member(nil), f.members...)
}

func (f *regStore) Entries(kind string) []cluster.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Entry
	for _, e := range f.entries {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (f *regStore) writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts
}

// addNode adds a live member with an API address and its capacity.
func (f *regStore) addNode(t *testing.T, name string, alloc, requested capacity.Resources, labels map[string]string) {
	t.Helper()
	b, err := capacity.Info{Allocatable: alloc, Requested: requested, Ready: true}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f.members = append(f.members, cluster.Member{Name: name, State: cluster.StateAlive, Labels: labels})
	f.entries = append(f.entries,
		cluster.Entry{Owner: name, Kind: capacity.Kind, Key: capacity.Key, Value: b},
		cluster.Entry{Owner: name, Kind: peers.KindAgent, Key: peers.KeyAPI, Value: []byte("10.0.0.1:7443")})
}

func rsc(cpu int64, mem int64) capacity.Resources {
	return capacity.Resources{CPUMillis: cpu, MemoryBytes: mem}
}

func regNodes(t *testing.T) *regStore {
	f := newRegStore()
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		f.addNode(t, n, rsc(4000, 8*regGi), rsc(0, 0), map[string]string{"role": "web"})
	}
	return f
}

func regSpec(replicas int32, env string) *herdv1.DeploymentSpec {
	return &herdv1.DeploymentSpec{
		Name:     "web",
		Replicas: replicas,
		Selector: map[string]string{"app": "web"},
		Template: &herdv1.PodSpec{
			Labels: map[string]string{"app": "web"},
			Containers: []*herdv1.ContainerSpec{{
				Name: "web", Image: "nginx:1.27", Env: map[string]string{"V": env},
				Cpu: "500m", Memory: "512Mi",
			}},
		},
		Placement: &herdv1.Placement{Strategy: spec.PlacementSpread},
	}
}

func regApply(t *testing.T, r *Registry, s *herdv1.DeploymentSpec, dryRun bool) *herdv1.ApplyDeploymentResponse {
	t.Helper()
	resp, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: s, DryRun: dryRun})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return resp
}

func regService(t *testing.T, f *regStore, name string, selector map[string]string) {
	t.Helper()
	b, err := proto.Marshal(&herdv1.Service{Spec: &herdv1.ServiceSpec{Namespace: "default", Name: name, Selector: selector}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Put(services.KindService, services.Key("default", name), b); err != nil {
		t.Fatal(err)
	}
}

// putStatus records the replicas the driver would have running: one per
// node of revision rev, all available.
func regStatus(t *testing.T, r *Registry, rev int64, nodes ...string) {
	t.Helper()
	st := &herdv1.DeploymentStatus{CurrentRevision: rev, StableRevision: rev, Phase: spec.PhaseComplete}
	for i, n := range nodes {
		st.ReplicaStatus = append(st.ReplicaStatus, &herdv1.ReplicaStatus{
			Pod: fmt.Sprintf("web-%d-%05d", rev, i), Node: n, Revision: rev, Ready: true, Available: true,
			CreatedAt: timestamppb.New(time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)),
		})
	}
	if err := r.PutStatus(Key("default", "web"), st); err != nil {
		t.Fatal(err)
	}
}

func TestApplyCreate(t *testing.T) {
	f := regNodes(t)
	regService(t, f, "web", map[string]string{"app": "web"})
	regService(t, f, "other", map[string]string{"app": "other"})
	r := testRegistry(f)
	resp := regApply(t, r, regSpec(3, "one"), false)
	d := resp.GetDeployment()
	if !resp.GetChanged() || d.GetRevision() != 1 || d.GetUid() == "" || d.GetCreatedAt() == nil || d.GetVersion() == 0 {
		t.Fatalf("create: changed %v deployment %v", resp.GetChanged(), d)
	}
	want := "default/web: create revision 1, 3 replicas: node-1 +1, node-2 +1, node-3 +1; service default/web endpoints change on every node; pods that restart: none"
	if got := resp.GetPlan().GetSummary(); got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
	var planned []string
	for _, pr := range resp.GetPlan().GetReplicas() {
		if pr.GetAction() == ActionCreate {
			planned = append(planned, pr.GetNode())
		}
	}
	if strings.Join(planned, ",") != "node-1,node-2,node-3" {
		t.Errorf("planned %v", planned)
	}
	rec, ok := r.Get("default/web")
	if !ok || rec.Version != d.GetVersion() || rec.GetDeployment().GetSpec().GetStrategy().GetType() != spec.StrategyRollingUpdate ||
		rec.GetDeployment().GetSpec().GetNamespace() != "default" || len(rec.GetTemplates()) != 1 {
		t.Fatalf("stored %v (ok %v): want the defaulted spec at the answer's version with one template", rec.DeploymentRecord, ok)
	}

	// The same spec again changes nothing and writes nothing.
	before := f.writes()
	again := regApply(t, r, regSpec(3, "one"), false)
	if again.GetChanged() || f.writes() != before || again.GetDeployment().GetVersion() != d.GetVersion() {
		t.Errorf("identical apply: changed %v, %d writes, version %d (was %d)", again.GetChanged(), f.writes()-before, again.GetDeployment().GetVersion(), d.GetVersion())
	}
	if got := again.GetPlan().GetSummary(); got != "default/web: no change (revision 1, 3 replicas)" {
		t.Errorf("identical summary %q", got)
	}
	if l := r.List(); len(l) != 1 || l[0].GetDeployment().GetUid() != d.GetUid() {
		t.Errorf("List = %v", l)
	}
	if existed, err := r.Delete("default/web", ""); !existed || err != nil {
		t.Errorf("Delete = %v, %v", existed, err)
	}
	if existed, err := r.Delete("default/web", ""); existed || err != nil {
		t.Errorf("second Delete = %v, %v", existed, err)
	}
}

func TestApplyRevisions(t *testing.T) {
	f := regNodes(t)
	r := testRegistry(f)
	first := regApply(t, r, regSpec(3, "v1"), false).GetDeployment()

	// Defaults spelled out are no template change.
	same := regSpec(3, "v1")
	same.Template.RestartPolicy = spec.RestartAlways
	if resp := regApply(t, r, same, false); resp.GetDeployment().GetRevision() != 1 {
		t.Errorf("defaults spelled out: revision %d", resp.GetDeployment().GetRevision())
	}

	scaled := regApply(t, r, regSpec(5, "v1"), false)
	if !scaled.GetChanged() || scaled.GetDeployment().GetRevision() != 1 {
		t.Errorf("scale: changed %v revision %d, want a change at revision 1", scaled.GetChanged(), scaled.GetDeployment().GetRevision())
	}
	surge2 := regSpec(5, "v1")
	surge2.Strategy = &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(2)}
	if resp := regApply(t, r, surge2, false); !resp.GetChanged() || resp.GetDeployment().GetRevision() != 1 {
		t.Errorf("strategy only: changed %v revision %d", resp.GetChanged(), resp.GetDeployment().GetRevision())
	}

	for i := 2; i <= 12; i++ {
		resp := regApply(t, r, regSpec(3, fmt.Sprintf("v%d", i)), false)
		d := resp.GetDeployment()
		if d.GetRevision() != int64(i) {
			t.Fatalf("template change %d: revision %d", i, d.GetRevision())
		}
		if d.GetUid() != first.GetUid() || !d.GetCreatedAt().AsTime().Equal(first.GetCreatedAt().AsTime()) {
			t.Fatalf("uid/created_at changed: %v %v, first %v %v", d.GetUid(), d.GetCreatedAt(), first.GetUid(), first.GetCreatedAt())
		}
	}
	rec, _ := r.Get("default/web")
	var revs []int64
	for _, tm := range rec.GetTemplates() {
		revs = append(revs, tm.GetRevision())
	}
	if fmt.Sprint(revs) != "[3 4 5 6 7 8 9 10 11 12]" {
		t.Errorf("templates kept for revisions %v, want the last 10", revs)
	}
	if tm, ok := r.Template(rec, 7); !ok || tm.GetContainers()[0].GetEnv()["V"] != "v7" {
		t.Errorf("Template(7) = %v, %v", tm, ok)
	}
	if _, ok := r.Template(rec, 2); ok {
		t.Error("Template(2) still kept")
	}
}

func TestApplyRefusesBadInput(t *testing.T) {
	f := regNodes(t)
	r := testRegistry(f)
	bad := regSpec(-1, "x")
	bad.Template.Labels = map[string]string{"app": "other"}
	_, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: bad})
	var fe spec.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want spec.FieldErrors", err)
	}
	paths := map[string]bool{}
	for _, e := range fe {
		paths[e.Path.String()] = true
	}
	if !paths["replicas"] || !paths["template.labels"] {
		t.Errorf("paths %v, want replicas and template.labels", paths)
	}
	if f.writes() != 0 {
		t.Errorf("%d writes", f.writes())
	}
	if _, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{}); !errors.As(err, &fe) {
		t.Errorf("no spec: %v", err)
	}
}

func TestApplyUnplaceable(t *testing.T) {
	f := newRegStore()
	f.addNode(t, "node-1", rsc(8000, 16*regGi), rsc(0, 7*regGi+8*regGi/10), map[string]string{"role": "web"})
	f.addNode(t, "node-2", rsc(8000, 16*regGi), rsc(0, 0), map[string]string{"role": "db"})
	f.addNode(t, "node-3", rsc(4000, 16*regGi), rsc(1500, 0), map[string]string{"role": "web"})
	r := testRegistry(f)
	s := regSpec(5, "x")
	s.NodeSelector = map[string]string{"role": "web"}
	s.Placement = nil
	s.Template.Containers[0].Cpu, s.Template.Containers[0].Memory = "2", "3584Mi"
	for _, dry := range []bool{true, false} {
		_, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: s, DryRun: dry})
		want := "cannot place 2 of 5 replicas of default/web: node-1 memory 3.5Gi requested > 1.2Gi free; node-2 does not match node_selector role=web; node-3 cpu 2 requested > 500m free"
		if !errors.Is(err, ErrUnplaceable) || err.Error() != want {
			t.Errorf("dry run %v: err =\n%v\nwant\n%s", dry, err, want)
		}
	}
	if f.writes() != 0 {
		t.Errorf("%d writes after refusals", f.writes())
	}

	// max_per_node that no placement can meet.
	mp := regSpec(4, "x")
	mp.Placement = &herdv1.Placement{MaxPerNode: 1}
	_, err := testRegistry(regNodes(t)).Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: mp, DryRun: true})
	if want := spec.MaxPerNodeError(4, 1, 3); !errors.Is(err, ErrUnplaceable) || !strings.Contains(err.Error(), want) {
		t.Errorf("max_per_node: %v, want %q", err, want)
	}

	// A node without an API address takes nothing.
	g := regNodes(t)
	g.entries = g.entries[:len(g.entries)-1] // node-3's API address
	mp.Replicas = 3
	_, err = testRegistry(g).Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: mp, DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "node-3 not ready (no API address)") {
		t.Errorf("no API address: %v", err)
	}
}

func TestDryRun(t *testing.T) {
	f := regNodes(t)
	regService(t, f, "web", map[string]string{"app": "web"})
	r := testRegistry(f)
	for _, env := range []string{"v1", "v2", "v3"} {
		regApply(t, r, regSpec(3, env), false)
	}
	regStatus(t, r, 3, "node-1", "node-2", "node-3")
	before := f.writes()
	rec, _ := r.Get("default/web")

	resp := regApply(t, r, regSpec(3, "v4"), true)
	want := "default/web: revision 3 → 4, 3 replicas, surge 1 / unavailable 0: 3 steps; node-1 +1 −1, node-2 +1 −1, node-3 +1 −1; service default/web endpoints change on every node; pods that restart: none"
	if got := resp.GetPlan().GetSummary(); got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
	if p := resp.GetPlan(); p.GetFromRevision() != 3 || p.GetToRevision() != 4 || p.GetSteps() != 3 || len(p.GetNodes()) != 3 || len(p.GetReplicas()) != 6 {
		t.Errorf("plan %v", p)
	}
	if resp.GetDeployment().GetRevision() != 4 || resp.GetDeployment().GetVersion() != rec.Version {
		t.Errorf("dry-run deployment: revision %d version %d (stored %d)", resp.GetDeployment().GetRevision(), resp.GetDeployment().GetVersion(), rec.Version)
	}
	if f.writes() != before {
		t.Errorf("dry run wrote %d objects", f.writes()-before)
	}
	if now, _ := r.Get("default/web"); now.Version != rec.Version || now.GetDeployment().GetRevision() != 3 {
		t.Errorf("stored deployment changed by a dry run: %v", now.DeploymentRecord)
	}

	// A scale: the new replicas only, survivors kept.
	g := regNodes(t)
	g.entries[0].Value, _ = capacity.Info{Allocatable: rsc(4000, 8*regGi), Requested: rsc(2000, 2*regGi), Ready: true}.Encode()
	r = testRegistry(g)
	for _, env := range []string{"v1", "v2", "v3"} {
		regApply(t, r, regSpec(3, env), false)
	}
	regStatus(t, r, 3, "node-1", "node-2", "node-3")
	resp = regApply(t, r, regSpec(5, "v3"), true)
	want = "default/web: scale 3 → 5 (revision 3 unchanged): node-2 +1, node-3 +1; pods that restart: none"
	if got := resp.GetPlan().GetSummary(); got != want {
		t.Errorf("scale summary\n%s\nwant\n%s", got, want)
	}
	keep := 0
	for _, pr := range resp.GetPlan().GetReplicas() {
		if pr.GetAction() == ActionKeep {
			keep++
		}
	}
	if keep != 3 {
		t.Errorf("kept %d replicas, want the 3 survivors: %v", keep, resp.GetPlan().GetReplicas())
	}

	// BlueGreen needs room for a whole second set.
	bg := regSpec(3, "v4")
	bg.Strategy = &herdv1.DeploymentStrategy{Type: spec.StrategyBlueGreen}
	bg.Template.Containers[0].Memory = "5Gi"
	h := regNodes(t)
	for i := range h.entries {
		if h.entries[i].Kind == capacity.Kind {
			h.entries[i].Value, _ = capacity.Info{Allocatable: rsc(4000, 8*regGi), Requested: rsc(500, 5*regGi), Ready: true}.Encode()
		}
	}
	r = testRegistry(h)
	regApply(t, r, regSpec(3, "v3"), false)
	regStatus(t, r, 1, "node-1", "node-2", "node-3")
	if _, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: bg, DryRun: true}); !errors.Is(err, ErrUnplaceable) ||
		!strings.HasPrefix(err.Error(), "cannot place 3 of 3 replicas of default/web: node-1 memory 5Gi requested > 3Gi free") {
		t.Errorf("blue-green without room: %v", err)
	}
}

type countingSecrets struct {
	views []secrets.View
	calls int
}

func (s *countingSecrets) List(context.Context, string) ([]secrets.View, error) {
	s.calls++
	return s.views, nil
}

func TestNodes(t *testing.T) {
	f := regNodes(t)
	f.members = append(f.members,
		cluster.Member{Name: "node-0", State: cluster.StateDead},
		cluster.Member{Name: "node-4", State: cluster.StateAlive})
	r := testRegistry(f)
	src := &countingSecrets{views: []secrets.View{{Rec: secrets.Record{Namespace: "default", Name: "db"}, Holders: map[string]uint64{"node-2": 3}}}}
	r.SetSecrets(src)
	if nodes := r.Nodes(); nodes[1].Secrets != nil || src.calls != 0 {
		t.Errorf("no deployment uses a secret, yet the members were surveyed (%d calls)", src.calls)
	}
	nodes := r.nodes(true)
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "node-1,node-2,node-3,node-4" {
		t.Fatalf("nodes %v", names)
	}
	if n := nodes[3]; n.Ready || n.NotReady != "no API address, no capacity published" {
		t.Errorf("node-4: ready %v %q", n.Ready, n.NotReady)
	}
	if !nodes[0].Ready || nodes[0].Free != rsc(4000, 8*regGi) || nodes[0].Labels["role"] != "web" {
		t.Errorf("node-1: %+v", nodes[0])
	}
	if !nodes[1].Secrets["default/db"] || nodes[0].Secrets["default/db"] {
		t.Errorf("secrets: node-1 %v node-2 %v", nodes[0].Secrets, nodes[1].Secrets)
	}

	s := regSpec(2, "x")
	s.Template.Containers[0].SecretEnv = []*herdv1.SecretEnv{{Name: "PW", Secret: "db", Key: "pw"}}
	resp := regApply(t, r, s, true)
	if got := resp.GetPlan().GetSummary(); !strings.Contains(got, ": node-2 +2;") {
		t.Errorf("a template with a secret goes where it is held: %s", got)
	}
	regApply(t, r, s, false)
	if nodes := r.Nodes(); !nodes[1].Secrets["default/db"] {
		t.Errorf("with a deployment that uses a secret, Nodes has none: %+v", nodes[1])
	}
}

func TestHint(t *testing.T) {
	f := regNodes(t)
	r := testRegistry(f)
	dry := regApply(t, r, regSpec(3, "v1"), true)
	var planned []string
	for _, pr := range dry.GetPlan().GetReplicas() {
		if pr.GetAction() == ActionCreate {
			planned = append(planned, pr.GetNode())
		}
	}
	if _, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: regSpec(3, "v1"), PlacementHint: planned}); err != nil {
		t.Fatal(err)
	}
	if got := r.Hint("default/web"); strings.Join(got, ",") != strings.Join(planned, ",") || len(got) != 3 {
		t.Errorf("Hint = %v, want %v", got, planned)
	}
	regApply(t, r, regSpec(4, "v1"), false) // a change without a hint
	if got := r.Hint("default/web"); got != nil {
		t.Errorf("Hint after a change without one = %v", got)
	}
	if _, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: regSpec(5, "v1"), PlacementHint: []string{"node-3", "node-3"}}); err != nil {
		t.Fatal(err)
	}
	if existed, _ := r.Delete("default/web", ""); !existed {
		t.Fatal("not deleted")
	}
	if _, ok := f.Get(KindHint, "default/web"); ok {
		t.Error("the hint outlived its deployment")
	}
}

// TestApplySameSpecNotRefused: re-applying the spec as it is adds no
// demand, so a cluster that shrank since does not refuse it.
func TestApplySameSpecNotRefused(t *testing.T) {
	f := regNodes(t)
	r := testRegistry(f)
	s := regSpec(3, "v1")
	s.Placement = &herdv1.Placement{MaxPerNode: 1}
	regApply(t, r, s, false)
	f.members = f.members[:2]
	resp := regApply(t, r, s, true)
	if resp.GetChanged() || resp.GetPlan().GetSummary() != "default/web: no change (revision 1, 3 replicas)" {
		t.Errorf("same spec: changed %v, summary %q", resp.GetChanged(), resp.GetPlan().GetSummary())
	}
	s.Template.Containers[0].Env["V"] = "v2"
	if _, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: s, DryRun: true}); !errors.Is(err, ErrUnplaceable) ||
		err.Error() != spec.MaxPerNodeError(3, 1, 2) {
		t.Errorf("a change on the smaller cluster: %v", err)
	}
}

// What the agent wires in satisfies what the registry needs.
var (
	_ Store        = (*cluster.Cluster)(nil)
	_ SecretSource = (*secrets.Replicator)(nil)
)

// TestDryRunSurgeWithoutRoom: one replica per node on every node leaves
// the surge replica of a rollout nowhere to go; the report says how to
// roll out instead, and that way plans.
func TestDryRunSurgeWithoutRoom(t *testing.T) {
	f := regNodes(t)
	r := testRegistry(f)
	onePerNode := func(env string, surge, unavailable int32) *herdv1.DeploymentSpec {
		s := regSpec(3, env)
		s.Placement = &herdv1.Placement{MaxPerNode: 1}
		s.Strategy = &herdv1.DeploymentStrategy{MaxSurge: &surge, MaxUnavailable: &unavailable}
		return s
	}
	regApply(t, r, onePerNode("v1", 1, 0), false)
	regStatus(t, r, 3, "node-1", "node-2", "node-3")
	_, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: onePerNode("v2", 1, 0), DryRun: true})
	want := "cannot place 1 of 3 replicas of default/web: node-1 already runs 1 replica (max_per_node = 1); " +
		"node-2 already runs 1 replica (max_per_node = 1); node-3 already runs 1 replica (max_per_node = 1); " +
		"the rollout starts each new replica beside the old ones (max_surge = 1): make room, or replace in place with max_surge = 0 and max_unavailable = 1"
	if err == nil || err.Error() != want {
		t.Errorf("dry run of a surge without room:\n%v\nwant\n%s", err, want)
	}
	resp, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: onePerNode("v2", 0, 1), DryRun: true})
	if err != nil || resp.GetPlan().GetSteps() != 3 {
		t.Errorf("max_surge = 0, max_unavailable = 1: %v, plan %v", err, resp.GetPlan())
	}
}

// withVolumes republishes a node's capacity entry with volumes.
func (f *regStore) withVolumes(t *testing.T, name string, vols ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.entries {
		if e.Owner != name || e.Kind != capacity.Kind {
			continue
		}
		info, err := capacity.Decode(e.Value)
		if err != nil {
			t.Fatal(err)
		}
		info.Volumes = vols
		f.entries[i].Value, _ = info.Encode()
	}
}

// Replicas of a template that mounts volumes go only to the node that has
// them; with none that does, Apply waits a little for gossip, then refuses
// naming the volume; a volume published during that wait is found; a
// template that writes the volume plans its rollout as stop-then-start.
func TestApplyPlacesByVolume(t *testing.T) {
	f := regNodes(t)
	r := testRegistry(f)
	s := regSpec(3, "x")
	s.Namespace = "db"
	s.Template.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data", ReadOnly: true}}

	_, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: s, DryRun: true})
	if !errors.Is(err, ErrUnplaceable) || !strings.Contains(err.Error(), "node-1 does not have volume db/data") {
		t.Fatalf("no node has the volume: %v", err)
	}
	f.withVolumes(t, "node-3", "default/data") // same name, another namespace
	_, err = r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: s, DryRun: true})
	if !errors.Is(err, ErrUnplaceable) || !strings.Contains(err.Error(), "node-3 does not have volume db/data") {
		t.Fatalf("volume of another namespace: %v", err)
	}

	// Published while Apply waits.
	go func() {
		time.Sleep(time.Second)
		f.withVolumes(t, "node-2", "db/data")
	}()
	resp := regApply(t, r, s, false)
	var placed []string
	for _, p := range resp.GetPlan().GetReplicas() {
		placed = append(placed, p.GetNode())
	}
	if want := []string{"node-2", "node-2", "node-2"}; !slices.Equal(placed, want) {
		t.Fatalf("read-only replicas placed on %v, want %v (spread is overruled by the volume)", placed, want)
	}

	// One writer: the old replica goes before the new one comes, even
	// with the default max_surge of 1.
	w := regSpec(1, "x")
	w.Namespace = "db"
	w.Name = "pg"
	w.Template.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}}
	regApply(t, r, w, false)
	key := Key("db", "pg")
	st := &herdv1.DeploymentStatus{CurrentRevision: 1, ReplicaStatus: []*herdv1.ReplicaStatus{{
		Pod: "pg-1-aaaaa", Node: "node-2", Revision: 1, Ready: true, Available: true, Phase: "Running",
	}}}
	if err := r.PutStatus(key, st); err != nil {
		t.Fatal(err)
	}
	resp = regApply(t, r, regSpecEnv(w, "y"), true)
	got := resp.GetPlan()
	if len(got.GetNodes()) != 1 || got.GetNodes()[0].GetNode() != "node-2" || got.GetNodes()[0].GetAdd() != 1 || got.GetNodes()[0].GetRemove() != 1 {
		t.Errorf("rollout plan nodes %v, want node-2 +1 -1", got.GetNodes())
	}
	if _, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: func() *herdv1.DeploymentSpec {
		two := regSpecEnv(w, "y")
		two.Replicas = 2
		return two
	}(), DryRun: true}); err == nil || !strings.Contains(err.Error(), "must be 0 or 1") {
		t.Errorf("two writers: %v", err)
	}
}

// regSpecEnv is s with another env value: a new template.
func regSpecEnv(s *herdv1.DeploymentSpec, env string) *herdv1.DeploymentSpec {
	c := proto.Clone(s).(*herdv1.DeploymentSpec)
	c.Template.Containers[0].Env = map[string]string{"V": env}
	return c
}
