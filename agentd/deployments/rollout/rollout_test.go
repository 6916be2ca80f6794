package rollout

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func avail(pod, node string, rev int64, age int) Replica {
	return Replica{Pod: pod, Node: node, Revision: rev, Ready: true, Available: true, CreatedAt: t0.Add(time.Duration(age) * time.Second)}
}

func rolling(replicas int, target int64, surge, unavail int) Params {
	return Params{Replicas: replicas, Target: target, Type: spec.StrategyRollingUpdate, MaxSurge: surge, MaxUnavailable: unavail}
}

// world plays the driver and the nodes: a deleted replica is terminating
// for one round, then gone; a created one is not ready for one round,
// ready but not yet available (min_ready_seconds) the next, then available.
type world struct {
	rs      []Replica
	serving int64
	seq     int
	maxTot  int
	minAv   int
	maxStep [2]int // most created, deleted in one step
}

func (w *world) tick(t *testing.T, p Params) Step {
	t.Helper()
	p.Serving = w.serving
	st := Next(p, w.rs)
	var next []Replica
	for _, r := range w.rs {
		switch {
		case r.Terminating:
			continue // gone
		case slices.Contains(st.Delete, r.Pod):
			r.Terminating, r.Ready, r.Available = true, false, false
		case !r.Ready:
			r.Ready = true
		case !r.Available:
			r.Available = true
		}
		next = append(next, r)
	}
	for range st.Create {
		w.seq++
		next = append(next, Replica{Pod: fmt.Sprintf("new-%d", w.seq), Node: "n", Revision: p.Target, CreatedAt: t0.Add(time.Hour + time.Duration(w.seq)*time.Second)})
	}
	if st.Serve != 0 {
		w.serving = st.Serve
	}
	w.rs = next
	av := 0
	for _, r := range w.rs {
		if r.Available {
			av++
		}
	}
	w.maxTot = max(w.maxTot, len(w.rs))
	w.minAv = min(w.minAv, av)
	w.maxStep[0] = max(w.maxStep[0], st.Create)
	w.maxStep[1] = max(w.maxStep[1], len(st.Delete))
	return st
}

func (w *world) run(t *testing.T, p Params) int {
	t.Helper()
	w.minAv = len(w.rs)
	for i := range 100 {
		if st := w.tick(t, p); st.Done {
			return i
		}
	}
	t.Fatalf("no convergence: %+v", w.rs)
	return 0
}

func threeOld() []Replica {
	return []Replica{avail("a", "node-1", 1, 1), avail("b", "node-2", 1, 2), avail("c", "node-3", 1, 3)}
}

func TestRollingUpdateBounds(t *testing.T) {
	tests := []struct {
		name           string
		surge, unavail int
		maxTotal       int
		minAvailable   int
		maxStep        [2]int
	}{
		{"surge 1 unavailable 0: one at a time", 1, 0, 4, 3, [2]int{1, 1}},
		{"surge 0 unavailable 1", 0, 1, 3, 2, [2]int{1, 1}},
		{"surge 3: all new at once", 3, 0, 6, 3, [2]int{3, 3}},
		{"surge 2 unavailable 1", 2, 1, 5, 2, [2]int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{rs: threeOld()}
			w.run(t, rolling(3, 2, tt.surge, tt.unavail))
			if w.maxTot > tt.maxTotal {
				t.Errorf("%d replicas at once, at most %d allowed", w.maxTot, tt.maxTotal)
			}
			if w.minAv < tt.minAvailable {
				t.Errorf("%d available at the worst, at least %d wanted", w.minAv, tt.minAvailable)
			}
			if w.maxStep[0] > tt.maxStep[0] || w.maxStep[1] > tt.maxStep[1] {
				t.Errorf("a step created/deleted %v, at most %v", w.maxStep, tt.maxStep)
			}
			for _, r := range w.rs {
				if r.Revision != 2 || !r.Available {
					t.Errorf("left %+v", r)
				}
			}
			if len(w.rs) != 3 {
				t.Errorf("%d replicas at the end", len(w.rs))
			}
		})
	}
}

func notReady(r Replica) Replica  { r.Ready, r.Available = false, false; return r }
func readyOnly(r Replica) Replica { r.Available = false; return r }

func TestNext(t *testing.T) {
	term := func(r Replica) Replica { r.Terminating, r.Ready, r.Available = true, false, false; return r }

	tests := []struct {
		name string
		p    Params
		rs   []Replica
		want Step
	}{
		{
			name: "create: all at once",
			p:    rolling(3, 1, 1, 0),
			want: Step{Create: 3},
		},
		{
			name: "template change: one surge replica",
			p:    rolling(3, 2, 1, 0), rs: threeOld(),
			want: Step{Create: 1},
		},
		{
			name: "min-ready: ready but not available lets no old one go",
			p:    rolling(3, 2, 1, 0), rs: append(threeOld(), readyOnly(avail("n1", "node-1", 2, 10))),
			want: Step{},
		},
		{
			name: "available new one: the newest old one of the oldest revision goes",
			p:    rolling(3, 3, 1, 0),
			rs:   []Replica{avail("a", "node-1", 2, 1), avail("b", "node-2", 1, 2), avail("c", "node-3", 1, 3), avail("n1", "node-1", 3, 10)},
			want: Step{Delete: []string{"c"}},
		},
		{
			name: "terminating replicas count toward the surge",
			p:    rolling(3, 2, 1, 0), rs: []Replica{avail("a", "node-1", 1, 1), avail("b", "node-2", 1, 2), term(avail("c", "node-3", 1, 3)), avail("n1", "node-1", 2, 10)},
			want: Step{},
		},
		{
			name: "unavailable old ones always go first",
			p:    rolling(3, 2, 1, 0), rs: []Replica{avail("a", "node-1", 1, 1), notReady(avail("b", "node-2", 1, 2)), avail("c", "node-3", 1, 3)},
			want: Step{Create: 1, Delete: []string{"b"}},
		},
		{
			name: "rollback: the failed new replicas are deleted first",
			p:    rolling(3, 1, 1, 0),
			rs:   []Replica{avail("a", "node-1", 1, 1), avail("b", "node-2", 1, 2), notReady(avail("f1", "node-3", 2, 10)), readyOnly(avail("f2", "node-1", 2, 11))},
			want: Step{Delete: []string{"f2", "f1"}}, // they count toward the surge until gone
		},
		{
			name: "scale up: the missing ones at once, survivors untouched",
			p:    rolling(5, 3, 1, 0), rs: []Replica{avail("a", "node-1", 3, 1), avail("b", "node-2", 3, 2), avail("c", "node-3", 3, 3)},
			want: Step{Create: 2},
		},
		{
			name: "scale down: not ready, then newest first",
			p:    rolling(2, 3, 1, 0),
			rs: []Replica{
				avail("a", "node-1", 3, 1), avail("b", "node-2", 3, 2), avail("c", "node-3", 3, 3),
				avail("d", "node-1", 3, 4), notReady(avail("e", "node-2", 3, 0)),
			},
			want: Step{Delete: []string{"e", "d", "c"}},
		},
		{
			name: "done",
			p:    rolling(3, 3, 1, 0), rs: []Replica{avail("a", "node-1", 3, 1), avail("b", "node-2", 3, 2), avail("c", "node-3", 3, 3)},
			want: Step{Done: true},
		},
		{
			name: "not done while a replica terminates",
			p:    rolling(2, 3, 1, 0), rs: []Replica{avail("a", "node-1", 3, 1), avail("b", "node-2", 3, 2), term(avail("c", "node-3", 3, 3))},
			want: Step{},
		},
		{
			name: "zero replicas: everything goes",
			p:    rolling(0, 2, 1, 0), rs: threeOld(),
			want: Step{Delete: []string{"c", "b", "a"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Next(tt.p, tt.rs)
			if got.Create != tt.want.Create || !slices.Equal(got.Delete, tt.want.Delete) || got.Serve != tt.want.Serve || got.Done != tt.want.Done {
				t.Errorf("Next = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBlueGreen(t *testing.T) {
	p := Params{Replicas: 3, Target: 2, Type: spec.StrategyBlueGreen, Serving: 1}
	rs := threeOld()
	st := Next(p, rs)
	if st.Create != 3 || len(st.Delete) != 0 || st.Serve != 0 {
		t.Fatalf("first step %+v, want all three new at once", st)
	}
	rs = append(rs, avail("n1", "node-1", 2, 10), avail("n2", "node-2", 2, 11), readyOnly(avail("n3", "node-3", 2, 12)))
	if st := Next(p, rs); st.Create != 0 || len(st.Delete) != 0 || st.Serve != 0 || st.Done {
		t.Fatalf("with one new not available: %+v, want nothing", st)
	}
	rs[5].Available = true
	if st := Next(p, rs); st.Serve != 2 || len(st.Delete) != 0 {
		t.Fatalf("all new available: %+v, want the flip alone", st)
	}
	p.Serving = 2
	if st := Next(p, rs); !slices.Equal(st.Delete, []string{"c", "b", "a"}) || st.Done {
		t.Fatalf("after the flip: %+v, want every old one deleted", st)
	}
	if st := Next(p, rs[3:]); !st.Done {
		t.Fatalf("only new left: %+v, want done", st)
	}
	// From RollingUpdate (nothing pinned): pin the old revision first,
	// create nothing before that.
	if st := Next(Params{Replicas: 3, Target: 2, Type: spec.StrategyBlueGreen}, threeOld()); st.Serve != 1 || st.Create != 0 || len(st.Delete) != 0 {
		t.Fatalf("switch from RollingUpdate: %+v, want serving 1 alone", st)
	}
	// Creation: no old replicas, serve the target at once.
	if st := Next(Params{Replicas: 2, Target: 1, Type: spec.StrategyBlueGreen}, nil); st.Create != 2 || st.Serve != 1 {
		t.Fatalf("create: %+v", st)
	}
	// Rollback: target the serving revision; the failed new ones go at once.
	failed := []Replica{avail("a", "node-1", 1, 1), {Pod: "f1", Revision: 2, CreatedAt: t0.Add(time.Hour)}}
	if st := Next(Params{Replicas: 1, Target: 1, Type: spec.StrategyBlueGreen, Serving: 1}, failed); !slices.Equal(st.Delete, []string{"f1"}) {
		t.Fatalf("rollback: %+v", st)
	}

	w := &world{rs: threeOld(), serving: 1}
	w.run(t, p)
	if w.serving != 2 || w.minAv < 3 || w.maxTot != 6 {
		t.Errorf("blue-green run: serving %d, min available %d, max total %d", w.serving, w.minAv, w.maxTot)
	}
}

// fewest places each new replica on the node with the fewest current
// replicas (ties by name) of a fixed set.
func fewest(nodes ...string) func([]Replica, int) ([]string, error) {
	return func(cur []Replica, n int) ([]string, error) {
		count := map[string]int{}
		for _, r := range cur {
			count[r.Node]++
		}
		var out []string
		for range n {
			sorted := slices.Clone(nodes)
			sort.SliceStable(sorted, func(i, j int) bool { return count[sorted[i]] < count[sorted[j]] })
			out = append(out, sorted[0])
			count[sorted[0]]++
		}
		return out, nil
	}
}

func TestSimulate(t *testing.T) {
	place := fewest("node-1", "node-2", "node-3")
	tests := []struct {
		name  string
		p     Params
		rs    []Replica
		steps int
		nodes map[string][2]int
	}{
		{
			name: "3 replicas surge 1 unavailable 0: 3 steps",
			p:    rolling(3, 2, 1, 0), rs: threeOld(), steps: 3,
			nodes: map[string][2]int{"node-1": {1, 1}, "node-2": {1, 1}, "node-3": {1, 1}},
		},
		{
			name: "surge 3: one step",
			p:    rolling(3, 2, 3, 0), rs: threeOld(), steps: 1,
			nodes: map[string][2]int{"node-1": {1, 1}, "node-2": {1, 1}, "node-3": {1, 1}},
		},
		{
			name: "create",
			p:    rolling(3, 1, 1, 0), steps: 1,
			nodes: map[string][2]int{"node-1": {1, 0}, "node-2": {1, 0}, "node-3": {1, 0}},
		},
		{
			name: "scale up",
			p:    rolling(5, 1, 1, 0), rs: threeOld(), steps: 1,
			nodes: map[string][2]int{"node-1": {1, 0}, "node-2": {1, 0}},
		},
		{
			name: "scale down",
			p:    rolling(1, 1, 1, 0), rs: threeOld(), steps: 1,
			nodes: map[string][2]int{"node-2": {0, 1}, "node-3": {0, 1}},
		},
		{
			name: "blue-green",
			p:    Params{Replicas: 3, Target: 2, Type: spec.StrategyBlueGreen, Serving: 1}, rs: threeOld(), steps: 1,
			nodes: map[string][2]int{"node-1": {1, 1}, "node-2": {1, 1}, "node-3": {1, 1}},
		},
		{
			name: "nothing to do",
			p:    rolling(3, 1, 1, 0), rs: threeOld(), steps: 0,
			nodes: map[string][2]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Simulate(tt.p, tt.rs, place)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Steps != tt.steps || !maps.Equal(plan.Nodes, tt.nodes) {
				t.Errorf("steps %d nodes %v, want %d %v", plan.Steps, plan.Nodes, tt.steps, tt.nodes)
			}
			if len(plan.Creates) != sum(tt.nodes, 0) || len(plan.Deletes) != sum(tt.nodes, 1) {
				t.Errorf("creates %v deletes %v", plan.Creates, plan.Deletes)
			}
		})
	}
	if _, err := Simulate(rolling(3, 2, 1, 0), threeOld(), func([]Replica, int) ([]string, error) { return nil, fmt.Errorf("full") }); err == nil {
		t.Error("a placement error was not returned")
	}
	if _, err := Simulate(rolling(3, 2, 0, 0), threeOld(), place); err == nil {
		t.Error("surge 0 unavailable 0 converged")
	}
}

func sum(m map[string][2]int, i int) int {
	n := 0
	for _, v := range m {
		n += v[i]
	}
	return n
}

// A template that writes a volume never has two replicas at once, whatever
// max_surge says and whether the old replica is available, terminating or
// stuck not ready; it still converges, and a scale from 0 creates at once.
func TestExclusiveNeverOverlaps(t *testing.T) {
	tests := []struct {
		name string
		rs   []Replica
	}{
		{"available old replica", []Replica{avail("a", "n", 1, 1)}},
		{"old replica not ready", []Replica{notReady(avail("a", "n", 1, 1))}},
		{"old replica terminating", []Replica{{Pod: "a", Node: "n", Revision: 1, Terminating: true}}},
		{"two revisions left by a crash", []Replica{avail("a", "n", 1, 1), readyOnly(avail("b", "n", 2, 2))}},
		{"nothing yet", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rolling(1, 3, 5, 0)
			p.Exclusive = true
			w := &world{rs: slices.Clone(tt.rs)}
			if len(tt.rs) > 1 {
				// The driver deletes both before it creates anything.
				if st := Next(p, w.rs); st.Create != 0 || len(st.Delete) != 2 {
					t.Fatalf("first step %+v, want both deleted and nothing created", st)
				}
			}
			w.run(t, p)
			if w.maxTot > max(len(tt.rs), 1) {
				t.Errorf("%d replicas at once", w.maxTot)
			}
			if len(w.rs) != 1 || w.rs[0].Revision != 3 || !w.rs[0].Available {
				t.Errorf("left %+v, want one available replica of revision 3", w.rs)
			}
		})
	}
	// While the old one terminates nothing is created, even though no old
	// replica is left in the revision count.
	p := rolling(1, 2, 1, 0)
	p.Exclusive = true
	if st := Next(p, []Replica{{Pod: "a", Node: "n", Revision: 1, Terminating: true}}); st.Create != 0 || st.Done {
		t.Errorf("step while the old replica terminates: %+v", st)
	}
}
