package services

import (
	"context"
	"sync"
)

// passKind says how much a pass reads.
type passKind int

const (
	passChanges passKind = iota // what the pending events name
	passFull                    // the whole store, and the whole table rewritten
)

// dirty is what the events since the last pass changed.
type dirty struct {
	svcs   keySet
	eps    map[epKey]struct{}
	gates  []map[string]string // selectors of endpoints whose admission changed
	rescan bool                // an event that names nothing: read everything
	full   bool                // a full resync was asked for
}

func newDirty() *dirty { return &dirty{svcs: keySet{}, eps: map[epKey]struct{}{}} }

// passes counts the controller's reconcile passes, so that a caller can
// wait until the read models reflect what the store holds now: a pass that
// started after the store held a change has applied it once it completed
// without error.
type passes struct {
	mu      sync.Mutex
	started uint64        // passes begun
	ok      uint64        // number of the last pass that completed without error
	done    chan struct{} // closed and replaced when a pass completes
	kick    chan struct{} // asks Run for a pass now
	pending *dirty        // taken by the next pass, as it starts
}

func newPasses() *passes {
	return &passes{done: make(chan struct{}), kick: make(chan struct{}, 1), pending: newDirty()}
}

func (p *passes) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// pass runs one reconcile pass and records it.
func (c *Controller) pass(ctx context.Context, kind passKind) {
	p := c.passes
	p.mu.Lock()
	p.started++
	n := p.started
	d := p.pending
	p.pending = newDirty()
	p.mu.Unlock()
	if d.full {
		kind = passFull
	}
	c.reconcile(ctx, kind, d)
	// reconcile forgets what it applied whenever the data plane failed
	ok := c.dp == nil || c.applied != nil
	p.mu.Lock()
	if ok {
		p.ok = n
	}
	close(p.done)
	p.done = make(chan struct{})
	p.mu.Unlock()
}

// ResyncNow asks Run for a full resync now (as at every ResyncEvery).
func (c *Controller) ResyncNow() {
	p := c.passes
	p.mu.Lock()
	p.pending.full = true
	p.mu.Unlock()
	p.wake()
}

// WaitApplied waits until this node's service rules and DNS reflect
// sequence number seq (or a later one) of owner's endpoint entry for pod:
// until this node's store holds that change and a pass that started after
// that, and read that entry, has completed without error. It returns false
// when ctx ends first. Run must be running.
func (c *Controller) WaitApplied(ctx context.Context, owner, pod string, seq uint64) bool {
	p := c.passes
	var need uint64 // the pass that must complete; 0: the store lacks seq yet
	for {
		p.mu.Lock()
		if need == 0 {
			if got, ok := c.ev.EntrySeq(owner, KindEndpoint, pod); ok && got >= seq {
				// The store's event may still be on its way: the next
				// pass reads the entry whatever the events say.
				p.pending.eps[epKey{owner, pod}] = struct{}{}
				need = p.started + 1
				p.wake()
			}
		}
		if need != 0 && p.ok >= need {
			p.mu.Unlock()
			return true
		}
		// Every change of an entry leads to a pass: the store is checked
		// again after each.
		done := p.done
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-done:
		}
	}
}
