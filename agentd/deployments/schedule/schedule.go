// Package schedule places a deployment's replicas on nodes. It is pure:
// every member computes the same placement from the same view, so a dry
// run on one member and the driver on another agree while nothing changes
// in between.
package schedule

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Resources are CPU in millicores and memory in bytes.
type Resources = capacity.Resources

// Node is one member as the scheduler sees it.
type Node struct {
	Name        string
	Ready       bool   // alive member, node ready, API address known
	NotReady    string // why not, for the report
	Labels      map[string]string
	Allocatable capacity.Resources
	Free        capacity.Resources // allocatable - requested, as published
	Secrets     map[string]bool    // "ns/name" of the secrets the node holds
	Volumes     map[string]bool    // "ns/name" of the persistent volumes the node has
	// VolumeWriters: "ns/name" -> who writes that volume now (see
	// capacity.Info.VolumeWriters).
	VolumeWriters map[string]string
}

// Request is what to place.
type Request struct {
	Key          string             // "ns/name", for messages
	Per          capacity.Resources // one replica's requests (sum over containers)
	NodeSelector map[string]string
	Secrets      []string // "ns/name" the template uses
	Volumes      []string // "ns/name" of the persistent volumes the template mounts
	Writes       []string // those of Volumes it mounts read-write
	Strategy     string   // spec.PlacementBinPack (default) or spec.PlacementSpread
	MaxPerNode   int      // 0: no limit
	// Existing counts the replicas of this deployment already on each node:
	// they count against MaxPerNode; their requests are already in Free.
	Existing map[string]int
	Hint     []string // nodes a dry run planned, used first while they fit
}

// NodeReason says why a node could not take (another) replica.
type NodeReason struct{ Node, Reason string }

// Result is a placement.
type Result struct {
	Nodes   []string // one per placed replica, in order
	Wanted  int
	Reasons []NodeReason // sorted by node; set when len(Nodes) < Wanted
}

type slot struct {
	n     Node
	free  Resources
	count int
}

// Place chooses nodes for n replicas. bin_pack takes the node that is
// fullest after placing, spread the one with the fewest replicas of the
// deployment, then the emptiest; ties go to the smaller node name. Hints
// are taken first, in order, while they fit; a hint that no longer fits is
// dropped.
func Place(nodes []Node, req Request, n int) Result {
	slots := make([]*slot, 0, len(nodes))
	for _, nd := range nodes {
		slots = append(slots, &slot{n: nd, free: nd.Free, count: req.Existing[nd.Name]})
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].n.Name < slots[j].n.Name })
	byName := make(map[string]*slot, len(slots))
	for _, s := range slots {
		byName[s.n.Name] = s
	}
	res := Result{Wanted: max(n, 0)}
	hints := slices.Clone(req.Hint)
	for range res.Wanted {
		var chosen *slot
		for len(hints) > 0 && chosen == nil {
			if s := byName[hints[0]]; s != nil && reason(s, req) == "" {
				chosen = s
			}
			hints = hints[1:]
		}
		if chosen == nil {
			chosen = best(slots, req)
		}
		if chosen == nil {
			break
		}
		chosen.free.CPUMillis -= req.Per.CPUMillis
		chosen.free.MemoryBytes -= req.Per.MemoryBytes
		chosen.count++
		res.Nodes = append(res.Nodes, chosen.n.Name)
	}
	if len(res.Nodes) < res.Wanted {
		for _, s := range slots {
			if r := reason(s, req); r != "" {
				res.Reasons = append(res.Reasons, NodeReason{Node: s.n.Name, Reason: r})
			}
		}
	}
	return res
}

// Err is nil when every replica was placed, else the per-node report.
func (r Result) Err(key string) error {
	if len(r.Nodes) >= r.Wanted {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cannot place %d of %d replicas of %s: ", r.Wanted-len(r.Nodes), r.Wanted, key)
	if len(r.Reasons) == 0 {
		b.WriteString("no nodes")
	}
	for i, nr := range r.Reasons {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(nr.Node + " " + nr.Reason)
	}
	return errors.New(b.String())
}

func best(slots []*slot, req Request) *slot {
	var chosen *slot
	var chosenScore float64
	for _, s := range slots { // sorted by name: the first of equals wins
		if reason(s, req) != "" {
			continue
		}
		score := fullness(s, req.Per)
		if chosen == nil {
			chosen, chosenScore = s, score
			continue
		}
		if req.Strategy == spec.PlacementSpread {
			if s.count < chosen.count || (s.count == chosen.count && score < chosenScore) {
				chosen, chosenScore = s, score
			}
		} else if score > chosenScore {
			chosen, chosenScore = s, score
		}
	}
	return chosen
}

// fullness is the mean fraction used after placing one more replica, over
// the dimensions the node has any of.
func fullness(s *slot, per Resources) float64 {
	var sum float64
	var dims int
	if a := s.n.Allocatable.CPUMillis; a > 0 {
		sum += float64(a-s.free.CPUMillis+per.CPUMillis) / float64(a)
		dims++
	}
	if a := s.n.Allocatable.MemoryBytes; a > 0 {
		sum += float64(a-s.free.MemoryBytes+per.MemoryBytes) / float64(a)
		dims++
	}
	if dims == 0 {
		return 0
	}
	return sum / float64(dims)
}

// NoVolumeReason starts the reason of a node that lacks a volume the
// replicas mount.
const NoVolumeReason = "does not have volume"

// reason says why s cannot take another replica, "" when it can.
func reason(s *slot, req Request) string {
	if !s.n.Ready {
		if s.n.NotReady == "" {
			return "not ready"
		}
		return "not ready (" + s.n.NotReady + ")"
	}
	if !matches(s.n.Labels, req.NodeSelector) {
		return "does not match node_selector " + formatLabels(req.NodeSelector)
	}
	var missing []string
	for _, sec := range req.Secrets {
		if !s.n.Secrets[sec] {
			missing = append(missing, sec)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return "does not hold secret " + strings.Join(slices.Compact(missing), ", ")
	}
	missing = missing[:0]
	for _, v := range req.Volumes {
		if !s.n.Volumes[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return NoVolumeReason + " " + strings.Join(slices.Compact(missing), ", ")
	}
	for _, v := range req.Writes {
		if w := s.n.VolumeWriters[v]; w != "" && w != capacity.WriterDeployment(req.Key) {
			return fmt.Sprintf("volume %s is written by %s (a volume has one writer)", v, w)
		}
	}
	if req.MaxPerNode > 0 && s.count >= req.MaxPerNode {
		noun := "replicas"
		if s.count == 1 {
			noun = "replica"
		}
		return fmt.Sprintf("already runs %d %s (max_per_node = %d)", s.count, noun, req.MaxPerNode)
	}
	var short []string
	if req.Per.CPUMillis > s.free.CPUMillis {
		short = append(short, fmt.Sprintf("cpu %s requested > %s free", capacity.FormatCPU(req.Per.CPUMillis), capacity.FormatCPU(max(s.free.CPUMillis, 0))))
	}
	if req.Per.MemoryBytes > s.free.MemoryBytes {
		short = append(short, fmt.Sprintf("memory %s requested > %s free", capacity.FormatMemory(req.Per.MemoryBytes), capacity.FormatMemory(max(s.free.MemoryBytes, 0))))
	}
	return strings.Join(short, ", ")
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Matches reports whether a node's labels carry every selector label.
func Matches(labels, selector map[string]string) bool { return matches(labels, selector) }

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
