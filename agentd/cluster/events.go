package cluster

import "sync"

// subscriber delivers events in order, coalescing identical pending ones, so
// that publishing never blocks on a slow reader.
type subscriber struct {
	ch   chan Event
	mu   sync.Mutex
	pend []Event
	set  map[Event]bool
	wake chan struct{}
	done chan struct{}
	once sync.Once
}

func (s *subscriber) push(e Event) {
	s.mu.Lock()
	if !s.set[e] {
		s.set[e] = true
		s.pend = append(s.pend, e)
	}
	s.mu.Unlock()
	kick(s.wake)
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

func (s *subscriber) run() {
	defer close(s.ch)
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if len(s.pend) == 0 {
				s.mu.Unlock()
				break
			}
			e := s.pend[0]
			s.pend = s.pend[1:]
			delete(s.set, e)
			s.mu.Unlock()
			select {
			case s.ch <- e:
			case <-s.done:
				return
			}
		}
	}
}

// Subscribe returns a channel of changes to objects, entries and membership.
// Publishing never blocks: while the reader is behind, identical pending
// events are merged. The channel is closed by Unsubscribe or Shutdown.
func (c *Cluster) Subscribe() <-chan Event {
	s := &subscriber{ch: make(chan Event, 64), set: map[Event]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.closed() {
		close(s.ch)
		return s.ch
	}
	c.subs[s.ch] = s
	go s.run()
	return s.ch
}

// Unsubscribe stops and closes a channel returned by Subscribe.
func (c *Cluster) Unsubscribe(ch <-chan Event) {
	c.subMu.Lock()
	s := c.subs[ch]
	delete(c.subs, ch)
	c.subMu.Unlock()
	if s != nil {
		s.close()
	}
}

func (c *Cluster) emit(e Event) {
	c.subMu.Lock()
	for _, s := range c.subs {
		s.push(e)
	}
	c.subMu.Unlock()
}

// emitLocked is emit for callers holding c.mu (lock order: c.mu, then subMu).
func (c *Cluster) emitLocked(e Event) { c.emit(e) }
