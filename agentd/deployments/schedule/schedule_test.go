package schedule

import (
	"maps"
	"slices"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

const (
	gi = int64(1) << 30
	mi = int64(1) << 20
)

func res(cpu, mem int64) Resources { return Resources{CPUMillis: cpu, MemoryBytes: mem} }

func node(name string, cpu, mem int64, labels ...string) Node {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return Node{Name: name, Ready: true, Labels: l, Allocatable: res(cpu, mem), Free: res(cpu, mem)}
}

func counts(nodes []string) map[string]int {
	m := map[string]int{}
	for _, n := range nodes {
		m[n]++
	}
	return m
}

// Three nodes of different sizes: small fits 4 replicas, medium 8, large 16.
func sized() []Node {
	return []Node{
		node("large", 8000, 16*gi),
		node("medium", 4000, 8*gi),
		node("small", 2000, 4*gi),
	}
}

func TestPlace(t *testing.T) {
	per := res(500, gi)
	notReady := node("down", 8000, 16*gi)
	notReady.Ready, notReady.NotReady = false, "no API address"
	withSecret := node("b", 4000, 8*gi)
	withSecret.Secrets = map[string]bool{"default/db": true}
	withVolume := node("c", 4000, 8*gi)
	withVolume.Volumes = map[string]bool{"default/data": true, "default/logs": true}

	tests := []struct {
		name  string
		nodes []Node
		req   Request
		n     int
		want  map[string]int
		order []string // when set, the exact order
		short int      // replicas left unplaced
	}{
		{
			name:  "bin_pack fills the fullest node first",
			nodes: sized(), req: Request{Per: per}, n: 6,
			want: map[string]int{"small": 4, "medium": 2},
		},
		{
			name:  "spread: fewest replicas, then emptiest",
			nodes: sized(), req: Request{Per: per, Strategy: spec.PlacementSpread}, n: 6,
			want:  map[string]int{"large": 2, "medium": 2, "small": 2},
			order: []string{"large", "medium", "small", "large", "medium", "small"},
		},
		{
			name:  "spread counts existing replicas",
			nodes: sized(), req: Request{Per: per, Strategy: spec.PlacementSpread, Existing: map[string]int{"large": 2, "medium": 1}}, n: 3,
			want: map[string]int{"small": 2, "medium": 1},
		},
		{
			name:  "max_per_node",
			nodes: sized(), req: Request{Per: per, MaxPerNode: 2}, n: 6,
			want: map[string]int{"small": 2, "medium": 2, "large": 2},
		},
		{
			name:  "max_per_node counts existing replicas",
			nodes: sized(), req: Request{Per: per, MaxPerNode: 2, Existing: map[string]int{"small": 2, "medium": 2, "large": 1}}, n: 2,
			want: map[string]int{"large": 1}, short: 1,
		},
		{
			name:  "node_selector",
			nodes: []Node{node("a", 4000, 8*gi, "role", "db"), node("b", 4000, 8*gi, "role", "web"), node("c", 4000, 8*gi)},
			req:   Request{Per: per, NodeSelector: map[string]string{"role": "web"}}, n: 3,
			want: map[string]int{"b": 3},
		},
		{
			name:  "secrets: only nodes that hold them",
			nodes: []Node{node("a", 4000, 8*gi), withSecret, node("c", 4000, 8*gi)},
			req:   Request{Per: per, Secrets: []string{"default/db"}, Strategy: spec.PlacementSpread}, n: 2,
			want: map[string]int{"b": 2},
		},
		{
			name:  "replicas go only where their volumes are, bin_pack or not",
			nodes: []Node{node("a", 8000, 16*gi), node("b", 4000, 8*gi), withVolume},
			req:   Request{Per: per, Volumes: []string{"default/data", "default/logs"}}, n: 2,
			want: map[string]int{"c": 2},
		},
		{
			name:  "a volume no node has places nothing",
			nodes: []Node{node("a", 8000, 16*gi), withVolume},
			req:   Request{Per: per, Volumes: []string{"default/data", "prod/data"}}, n: 1,
			want: map[string]int{}, short: 1,
		},
		{
			name:  "not-ready nodes take nothing",
			nodes: []Node{notReady, node("up", 1000, 2*gi)}, req: Request{Per: per}, n: 3,
			want: map[string]int{"up": 2}, short: 1,
		},
		{
			name:  "hints are honoured while they fit",
			nodes: sized(), req: Request{Per: per, Hint: []string{"large", "medium", "large"}}, n: 4,
			order: []string{"large", "medium", "large", "medium"}, // the last: medium and small tie, by name
		},
		{
			name:  "hints that no longer fit are ignored",
			nodes: []Node{node("a", 500, gi), node("b", 4000, 8*gi), node("gone", 0, 0)},
			req:   Request{Per: per, Hint: []string{"a", "a", "gone", "a"}}, n: 3,
			order: []string{"a", "b", "b"},
		},
		{
			name:  "no requests: bin_pack still picks one node by name",
			nodes: sized(), req: Request{}, n: 3,
			order: []string{"large", "large", "large"},
		},
		{
			name:  "a node without memory allocatable takes cpu-only replicas",
			nodes: []Node{node("cpu-only", 2000, 0), node("z", 0, 0)},
			req:   Request{Per: res(1000, 0)}, n: 2,
			want: map[string]int{"cpu-only": 2},
		},
		{
			name: "zero replicas", nodes: sized(), req: Request{Per: per}, n: 0,
			want: map[string]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Place(tt.nodes, tt.req, tt.n)
			if tt.want != nil && !maps.Equal(counts(got.Nodes), tt.want) {
				t.Errorf("counts = %v, want %v", counts(got.Nodes), tt.want)
			}
			if tt.order != nil && !slices.Equal(got.Nodes, tt.order) {
				t.Errorf("nodes = %v, want %v", got.Nodes, tt.order)
			}
			if short := got.Wanted - len(got.Nodes); short != tt.short {
				t.Errorf("%d unplaced, want %d (reasons %v)", short, tt.short, got.Reasons)
			}
			if (got.Err("default/web") == nil) != (tt.short == 0) {
				t.Errorf("Err = %v with %d unplaced", got.Err("default/web"), tt.short)
			}
			// Deterministic: the same input in another order, the same answer.
			rev := slices.Clone(tt.nodes)
			slices.Reverse(rev)
			if again := Place(rev, tt.req, tt.n); !slices.Equal(again.Nodes, got.Nodes) {
				t.Errorf("reversed input placed %v, first %v", again.Nodes, got.Nodes)
			}
		})
	}
}

func TestReport(t *testing.T) {
	n1 := node("node-1", 8000, 16*gi, "role", "web")
	n1.Free.MemoryBytes = 7*gi + 12*gi/10
	n2 := node("node-2", 8000, 16*gi, "role", "db")
	n3 := node("node-3", 4000, 16*gi, "role", "web")
	n3.Free.CPUMillis = 2500
	req := Request{Key: "default/web", Per: res(2000, 3*gi+gi/2), NodeSelector: map[string]string{"role": "web"}}
	got := Place([]Node{n3, n2, n1}, req, 5)
	want := "cannot place 2 of 5 replicas of default/web: node-1 memory 3.5Gi requested > 1.2Gi free; node-2 does not match node_selector role=web; node-3 cpu 2 requested > 500m free"
	if err := got.Err("default/web"); err == nil || err.Error() != want {
		t.Fatalf("Err =\n%v\nwant\n%s", err, want)
	}
	if !maps.Equal(counts(got.Nodes), map[string]int{"node-1": 2, "node-3": 1}) {
		t.Errorf("placed %v", got.Nodes)
	}

	down := node("node-4", 1000, gi)
	down.Ready, down.NotReady = false, "no API address"
	sec := node("node-5", 8000, 16*gi, "role", "web")
	full := node("node-6", 8000, 16*gi, "role", "web")
	full.Free = res(0, 0)
	r := Place([]Node{down, sec, full}, Request{Per: res(1500, 512*mi), NodeSelector: map[string]string{"role": "web"}, Secrets: []string{"default/tls"}}, 1)
	want = "cannot place 1 of 1 replicas of default/api: node-4 not ready (no API address); node-5 does not hold secret default/tls; node-6 does not hold secret default/tls"
	if err := r.Err("default/api"); err == nil || err.Error() != want {
		t.Errorf("Err =\n%v\nwant\n%s", err, want)
	}
	full.Secrets = map[string]bool{"default/tls": true}
	r = Place([]Node{full}, Request{Per: res(1500, 512*mi)}, 1)
	want = "cannot place 1 of 1 replicas of default/api: node-6 cpu 1.5 requested > 0 free, memory 512Mi requested > 0 free"
	if err := r.Err("default/api"); err == nil || err.Error() != want {
		t.Errorf("Err =\n%v\nwant\n%s", err, want)
	}
	vol := node("node-7", 8000, 16*gi)
	vol.Volumes = map[string]bool{"default/data": true}
	r = Place([]Node{vol, node("node-8", 8000, 16*gi)}, Request{Per: res(100, mi), Volumes: []string{"default/data", "default/wal"}}, 1)
	want = "cannot place 1 of 1 replicas of default/db: node-7 does not have volume default/wal; node-8 does not have volume default/data, default/wal"
	if err := r.Err("default/db"); err == nil || err.Error() != want {
		t.Errorf("Err =\n%v\nwant\n%s", err, want)
	}
	// A deployment that writes a volume goes only where nobody else
	// writes it; its own replica does not count.
	held := node("node-9", 8000, 16*gi)
	held.Volumes = map[string]bool{"default/data": true}
	held.VolumeWriters = map[string]string{"default/data": "pod legacy"}
	wreq := Request{Key: "default/db", Per: res(100, mi), Volumes: []string{"default/data"}, Writes: []string{"default/data"}}
	r = Place([]Node{held}, wreq, 1)
	want = "cannot place 1 of 1 replicas of default/db: node-9 volume default/data is written by pod legacy (a volume has one writer)"
	if err := r.Err("default/db"); err == nil || err.Error() != want {
		t.Errorf("Err =\n%v\nwant\n%s", err, want)
	}
	held.VolumeWriters["default/data"] = "deployment default/db"
	if r := Place([]Node{held}, wreq, 1); len(r.Nodes) != 1 {
		t.Errorf("its own replica writing the volume: %v", r.Err("default/db"))
	}
	wreq.Writes = nil // a reader
	held.VolumeWriters["default/data"] = "pod legacy"
	if r := Place([]Node{held}, wreq, 1); len(r.Nodes) != 1 {
		t.Errorf("a reader beside a writer: %v", r.Err("default/db"))
	}
	if err := Place(nil, Request{}, 2).Err("default/x"); err == nil || err.Error() != "cannot place 2 of 2 replicas of default/x: no nodes" {
		t.Errorf("no nodes: %v", err)
	}
}
