// Package rollout decides, from what the nodes report, the next step of a
// deployment's rollout: which replicas to create and which to drain and
// delete. It is pure and state-based: any member that takes over driving
// computes the same next step from the same replicas.
package rollout

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Replica is one observed replica.
type Replica struct {
	Pod, Node   string
	Revision    int64
	Ready       bool
	Available   bool // ready for min_ready_seconds
	Terminating bool // being drained/deleted: counts toward the surge until gone, never available
	CreatedAt   time.Time
}

// Params are the deployment's numbers.
type Params struct {
	Replicas                 int
	Target                   int64  // the revision to converge on
	Type                     string // spec.StrategyRollingUpdate or spec.StrategyBlueGreen
	MaxSurge, MaxUnavailable int
	Serving                  int64 // BlueGreen: the revision services route to now (0: none set)
	// Exclusive: the template writes a persistent volume, which has one
	// writer. A replica is created only once every other replica is gone,
	// terminating ones included, and old ones are deleted whether available
	// or not: a short gap instead of two writers. MaxSurge and
	// MaxUnavailable do not apply.
	Exclusive bool
}

// Step is what to do now.
type Step struct {
	Create int      // new replicas of Target to place and start now
	Delete []string // pods to drain and delete now, in this order
	Serve  int64    // BlueGreen: set serving_revision to this now (0: no change)
	Done   bool     // converged: Replicas replicas of Target, all available, nothing else left
}

// Next is the next step towards p from rs.
func Next(p Params, rs []Replica) Step {
	var newer, old []Replica
	terminating := 0
	for _, r := range rs {
		switch {
		case r.Terminating:
			terminating++
		case r.Revision == p.Target:
			newer = append(newer, r)
		default:
			old = append(old, r)
		}
	}
	var st Step
	// Extra replicas of Target go first: the least useful ones.
	if extra := len(newer) - p.Replicas; extra > 0 {
		sort.SliceStable(newer, func(i, j int) bool {
			a, b := newer[i], newer[j]
			if a.Ready != b.Ready {
				return !a.Ready
			}
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.After(b.CreatedAt)
			}
			return a.Pod > b.Pod
		})
		for _, r := range newer[:extra] {
			st.Delete = append(st.Delete, r.Pod)
		}
		newer = newer[extra:]
	}
	missing := p.Replicas - len(newer)
	allAvailable := true
	for _, r := range newer {
		allAvailable = allAvailable && r.Available
	}

	if p.Type == spec.StrategyBlueGreen {
		if p.Serving == 0 && len(old) > 0 {
			// Switching from RollingUpdate, where services route to every
			// ready replica: pin them to the old revision first, or the new
			// replicas would serve as soon as they are ready.
			st.Serve = servingOf(old)
			return st
		}
		if missing > 0 {
			st.Create = missing
		}
		switch {
		case p.Serving != p.Target && (len(old) == 0 || (missing <= 0 && allAvailable)):
			st.Serve = p.Target
		case p.Serving == p.Target:
			sortOld(old)
			for _, r := range old {
				st.Delete = append(st.Delete, r.Pod)
			}
		}
		st.Done = missing <= 0 && allAvailable && len(old) == 0 && terminating == 0 && p.Serving == p.Target && len(st.Delete) == 0
		return st
	}

	if p.Exclusive {
		sortOld(old)
		for _, r := range old {
			st.Delete = append(st.Delete, r.Pod)
		}
		if missing > 0 && len(old) == 0 && terminating == 0 && len(st.Delete) == 0 {
			st.Create = missing
		}
		st.Done = missing <= 0 && allAvailable && len(old) == 0 && terminating == 0 && len(st.Delete) == 0
		return st
	}

	total := len(rs) // terminating ones count toward the surge until gone
	if missing > 0 {
		if len(old) == 0 {
			st.Create = missing // a scale: every missing replica at once
		} else {
			st.Create = max(min(missing, p.Replicas+p.MaxSurge-total), 0)
		}
	}
	available := 0
	for _, r := range newer {
		if r.Available {
			available++
		}
	}
	var oldAvailable []Replica
	var oldUnavailable []Replica
	for _, r := range old {
		if r.Available {
			available++
			oldAvailable = append(oldAvailable, r)
		} else {
			oldUnavailable = append(oldUnavailable, r)
		}
	}
	sortOld(oldUnavailable)
	for _, r := range oldUnavailable {
		st.Delete = append(st.Delete, r.Pod)
	}
	mayRemove := available - (p.Replicas - p.MaxUnavailable)
	sortOld(oldAvailable)
	for i := 0; i < len(oldAvailable) && i < mayRemove; i++ {
		st.Delete = append(st.Delete, oldAvailable[i].Pod)
	}
	st.Done = missing <= 0 && allAvailable && len(old) == 0 && terminating == 0 && len(st.Delete) == 0
	return st
}

// sortOld orders old replicas for deletion: oldest revision first, then
// the newest replica first.
func sortOld(rs []Replica) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.Pod > b.Pod
	})
}

// Plan is a simulated rollout.
type Plan struct {
	// Steps counts the waves of the rollout: each round that creates
	// replicas is one (a wait for them to become available), and the
	// deletions and the serving flip it allows belong to it. A change that
	// creates nothing (a scale down) is one step; no change is none.
	Steps   int
	Nodes   map[string][2]int // node -> {added, removed}
	Creates []string          // nodes of the replicas created, in order
	Deletes []Replica         // replicas deleted, in order
}

// ErrNoProgress is returned by Simulate when the rollout cannot finish.
var ErrNoProgress = errors.New("the rollout makes no progress")

// Simulate runs Next until Done assuming every created replica becomes
// available at once, every deleted or terminating one is gone at once and
// every live replica of Target becomes available; place(current, n) says
// where n new replicas go (the scheduler).
func Simulate(p Params, rs []Replica, place func(current []Replica, n int) ([]string, error)) (Plan, error) {
	plan := Plan{Nodes: map[string][2]int{}}
	var cur []Replica
	var latest time.Time
	for _, r := range rs {
		if r.CreatedAt.After(latest) {
			latest = r.CreatedAt
		}
		if r.Terminating {
			continue
		}
		if r.Revision == p.Target {
			r.Ready, r.Available = true, true
		}
		cur = append(cur, r)
	}
	changed := len(cur) != len(rs) // terminating ones left
	waves := 0
	limit := 2*(p.Replicas+len(rs)) + 4
	for round := 0; ; round++ {
		st := Next(p, cur)
		if st.Done {
			break
		}
		if round >= limit || (st.Create == 0 && len(st.Delete) == 0 && (st.Serve == 0 || st.Serve == p.Serving)) {
			return plan, fmt.Errorf("simulate %d replicas of revision %d: %w", p.Replicas, p.Target, ErrNoProgress)
		}
		changed = true
		for _, pod := range st.Delete {
			for i, r := range cur {
				if r.Pod == pod {
					plan.Deletes = append(plan.Deletes, r)
					c := plan.Nodes[r.Node]
					c[1]++
					plan.Nodes[r.Node] = c
					cur = append(cur[:i], cur[i+1:]...)
					break
				}
			}
		}
		if st.Serve != 0 {
			p.Serving = st.Serve
		}
		if st.Create > 0 {
			waves++
			nodes, err := place(cur, st.Create)
			if err != nil {
				return plan, fmt.Errorf("place %d replicas of revision %d: %w", st.Create, p.Target, err)
			}
			for _, n := range nodes {
				latest = latest.Add(time.Nanosecond)
				cur = append(cur, Replica{
					Pod: fmt.Sprintf("(new %d)", len(plan.Creates)+1), Node: n, Revision: p.Target,
					Ready: true, Available: true, CreatedAt: latest,
				})
				plan.Creates = append(plan.Creates, n)
				c := plan.Nodes[n]
				c[0]++
				plan.Nodes[n] = c
			}
		}
	}
	plan.Steps = waves
	if waves == 0 && changed {
		plan.Steps = 1
	}
	return plan, nil
}

// servingOf is the revision most of the ready old replicas run (ties: the
// newest); with none ready, the newest revision among them.
func servingOf(old []Replica) int64 {
	ready := map[int64]int{}
	var best, newest int64
	for _, r := range old {
		newest = max(newest, r.Revision)
		if r.Ready {
			ready[r.Revision]++
		}
	}
	for rev, n := range ready {
		if n > ready[best] || (n == ready[best] && rev > best) {
			best = rev
		}
	}
	if best == 0 {
		return newest
	}
	return best
}
