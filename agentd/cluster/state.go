package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrClosed is returned after Shutdown.
var ErrClosed = errors.New("cluster: shut down")

func validName(kind, key string) error {
	if kind == "" || key == "" {
		return errors.New("cluster: kind and key must not be empty")
	}
	if strings.HasPrefix(kind, "_") {
		return fmt.Errorf("cluster: kind %q is reserved", kind)
	}
	if strings.ContainsRune(kind, 0) || strings.ContainsRune(key, 0) {
		return errors.New("cluster: kind and key must not contain NUL")
	}
	return nil
}

func (c *Cluster) closed() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// newer reports whether a supersedes b: higher version, then higher writer
// name; the rest only makes a (buggy) reuse of a version converge too.
func newer(a, b *wireObject) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	if a.Writer != b.Writer {
		return a.Writer > b.Writer
	}
	if a.Deleted != b.Deleted {
		return a.Deleted
	}
	return bytes.Compare(a.Value, b.Value) > 0
}

func objHash(o *wireObject) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s", o.Kind, o.Key, o.Version, o.Writer)
	return h.Sum64()
}

// setObjLocked stores r, maintaining the digest (of live objects) and clock.
func (c *Cluster) setObjLocked(r *objRec) {
	k := objKey(r.Kind, r.Key)
	if old := c.objects[k]; old != nil && !old.Deleted {
		c.digest ^= objHash(&old.wireObject)
		c.liveCount--
	}
	c.objects[k] = r
	if !r.Deleted {
		c.digest ^= objHash(&r.wireObject)
		c.liveCount++
	}
	c.noteClaimLocked(r)
	c.clock = max(c.clock, r.Version)
}

func (c *Cluster) write(kind, key string, value []byte, deleted bool) (uint64, error) {
	return c.writeIf(kind, key, value, deleted, nil)
}

// writeIf is write, made only if check (when set) accepts the current live
// object, under the same lock as the write.
func (c *Cluster) writeIf(kind, key string, value []byte, deleted bool, check func(Object) error) (uint64, error) {
	if c.closed() {
		return 0, ErrClosed
	}
	c.mu.Lock()
	k := objKey(kind, key)
	cur := c.objects[k]
	if deleted && (cur == nil || cur.Deleted) {
		c.mu.Unlock()
		return 0, nil
	}
	if check != nil {
		if err := check(cur.object()); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	v := c.clock + 1
	if cur != nil {
		v = max(v, cur.Version+1)
	}
	r := &objRec{wireObject: wireObject{Kind: kind, Key: key, Version: v, Writer: c.name, Deleted: deleted}}
	if deleted {
		r.deletedAt = time.Now()
	} else {
		r.Value = append([]byte(nil), value...)
	}
	fp, sig, err := c.signCurrent(objectMsg(&r.wireObject))
	if err != nil {
		c.mu.Unlock()
		return 0, err
	}
	r.FP, r.Sig = fp, sig
	c.setObjLocked(r)
	c.mu.Unlock()
	if err := c.save(); err != nil {
		return v, err
	}
	c.broadcast("o/"+k, envelope{Objects: []wireObject{r.wireObject}})
	kick(c.metaKick)
	if !strings.HasPrefix(kind, "_") {
		c.emit(Event{Type: EventObject, Kind: kind, Key: key})
	}
	return v, nil
}

// Put writes a cluster-scoped object through this node and returns its new
// version. It is saved locally before it returns and then gossiped.
func (c *Cluster) Put(kind, key string, value []byte) (uint64, error) {
	if err := validName(kind, key); err != nil {
		return 0, err
	}
	return c.write(kind, key, value, false)
}

// Delete deletes an object (a tombstone that wins over older versions,
// collected after TombstoneTTL). Deleting a missing object is a no-op.
func (c *Cluster) Delete(kind, key string) error {
	if err := validName(kind, key); err != nil {
		return err
	}
	_, err := c.write(kind, key, nil, true)
	return err
}

func (r *objRec) object() Object {
	return Object{Kind: r.Kind, Key: r.Key, Value: append([]byte(nil), r.Value...), Version: r.Version, Writer: r.Writer}
}

// Get returns the object if this node has it (and it is not deleted).
func (c *Cluster) Get(kind, key string) (Object, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.objects[objKey(kind, key)]
	if r == nil || r.Deleted {
		return Object{}, false
	}
	return r.object(), true
}

// List returns this node's objects of a kind, sorted by key.
func (c *Cluster) List(kind string) []Object {
	c.mu.Lock()
	var out []Object
	for _, r := range c.objects {
		if r.Kind == kind && !r.Deleted {
			out = append(out, r.object())
		}
	}
	c.mu.Unlock()
	sortBy(out, func(o Object) string { return o.Key })
	return out
}

// Versions reports, for every live member (this node included), the version
// of the object it is known to hold: 0 when it is known to have none, and
// tombstone versions count (a member that missed a delete reports the older
// version). A member whose state digest equals this node's holds exactly this
// node's versions; otherwise the last version it acknowledged (through gossip)
// or sent in a push/pull is used.
func (c *Cluster) Versions(kind, key string) map[string]uint64 {
	k := objKey(kind, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	var mine uint64
	if r := c.objects[k]; r != nil {
		mine = r.Version
	}
	out := map[string]uint64{c.name: mine}
	for name, ni := range c.nodes {
		if ni.state != StateAlive && ni.state != StateSuspect {
			continue
		}
		if ni.meta.Digest == c.digest && ni.meta.Count == c.liveCount {
			out[name] = mine
			continue
		}
		out[name] = c.peerVersions[name][k]
	}
	return out
}

func (c *Cluster) notePeerVersionLocked(node, k string, v uint64) {
	if node == c.name {
		return
	}
	m := c.peerVersions[node]
	if m == nil {
		m = map[string]uint64{}
		c.peerVersions[node] = m
	}
	if v > m[k] {
		m[k] = v
	}
}

// --- entries

// PublishLocal publishes (or replaces) an entry owned by this node.
func (c *Cluster) PublishLocal(kind, key string, value []byte) error {
	if err := validName(kind, key); err != nil {
		return err
	}
	return c.publish(kind, key, value, false)
}

// WithdrawLocal withdraws an entry owned by this node; a no-op if absent.
func (c *Cluster) WithdrawLocal(kind, key string) error {
	if err := validName(kind, key); err != nil {
		return err
	}
	return c.publish(kind, key, nil, true)
}

func (c *Cluster) publish(kind, key string, value []byte, deleted bool) error {
	if c.closed() {
		return ErrClosed
	}
	k := objKey(kind, key)
	c.mu.Lock()
	own := c.owners[c.name]
	cur := own.entries[k]
	if deleted && (cur == nil || cur.deleted) {
		c.mu.Unlock()
		return nil
	}
	if !deleted && cur != nil && !cur.deleted && bytes.Equal(cur.value, value) {
		c.mu.Unlock()
		return nil
	}
	e := &entRec{seq: c.seq + 1, deleted: deleted}
	if deleted {
		e.deletedAt = time.Now()
	} else {
		e.value = append([]byte(nil), value...)
	}
	w := wireEntry{Owner: c.name, Epoch: c.epoch, Seq: e.seq, Kind: kind, Key: key, Value: e.value, Deleted: deleted}
	fp, sig, err := c.signCurrent(entryMsg(&w))
	if err != nil {
		c.mu.Unlock()
		return err
	}
	w.FP, w.Sig, e.fp, e.sig = fp, sig, fp, sig
	c.seq++
	own.entries[k] = e
	c.mu.Unlock()
	c.broadcast("e/"+c.name+"\x00"+k, envelope{Entries: []wireEntry{w}})
	c.emit(entryEvent(c.name, kind, key))
	return nil
}

// Entries lists the entries of a kind published by live members (this node
// included), sorted by owner then key.
func (c *Cluster) Entries(kind string) []Entry {
	c.mu.Lock()
	var out []Entry
	for owner, os := range c.owners {
		if !c.visibleLocked(owner, os) {
			continue
		}
		for k, e := range os.entries {
			kd, key := splitKey(k)
			if kd != kind || e.deleted {
				continue
			}
			out = append(out, Entry{Owner: owner, Kind: kd, Key: key, Value: append([]byte(nil), e.value...)})
		}
	}
	c.mu.Unlock()
	sortBy(out, func(e Entry) string { return e.Owner + "\x00" + e.Key })
	return out
}

// Entry returns one entry as Entries would list it: absent when withdrawn
// or when its owner is not live.
func (c *Cluster) Entry(owner, kind, key string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	os := c.owners[owner]
	if os == nil || !c.visibleLocked(owner, os) {
		return Entry{}, false
	}
	e := os.entries[objKey(kind, key)]
	if e == nil || e.deleted {
		return Entry{}, false
	}
	return Entry{Owner: owner, Kind: kind, Key: key, Value: append([]byte(nil), e.value...)}, true
}

// visibleLocked reports whether owner's entries are listed: this node's
// always, another member's while it is live (alive or suspect) and not gone.
func (c *Cluster) visibleLocked(owner string, os *ownerState) bool {
	if owner == c.name {
		return true
	}
	ni := c.nodes[owner]
	return !os.gone && ni != nil && (ni.state == StateAlive || ni.state == StateSuspect)
}

// entryEvent is the event for a change of owner's entry: a change of its
// labels is a change of the member (subscribers re-evaluate node selectors
// on EventMember), any other entry is itself.
func entryEvent(owner, kind, key string) Event {
	if kind == kindLabels {
		return Event{Type: EventMember, Node: owner}
	}
	return Event{Type: EventEntry, Kind: kind, Key: key, Node: owner}
}

// applyEntryLocked merges a remote entry; it reports whether it was news.
func (c *Cluster) applyEntryLocked(w wireEntry) bool {
	if w.Owner == c.name || w.Owner == "" {
		return false // this node is the authority on its own entries
	}
	if !c.entryVersionOK(&w, time.Now()) {
		return false
	}
	os := c.owners[w.Owner]
	if os == nil {
		os = &ownerState{epoch: w.Epoch, entries: map[string]*entRec{}}
		c.owners[w.Owner] = os
	}
	switch {
	case w.Epoch < os.epoch:
		return false
	case w.Epoch > os.epoch:
		// the owner restarted: everything of its earlier life is void
		for k := range os.entries {
			kd, key := splitKey(k)
			c.emitLocked(entryEvent(w.Owner, kd, key))
		}
		os.epoch, os.gone, os.entries = w.Epoch, false, map[string]*entRec{}
	case os.gone:
		return false
	}
	k := objKey(w.Kind, w.Key)
	cur := os.entries[k]
	if cur != nil && cur.seq >= w.Seq {
		return false
	}
	e := &entRec{seq: w.Seq, deleted: w.Deleted, value: append([]byte(nil), w.Value...), fp: w.FP, sig: w.Sig}
	if w.Deleted {
		e.deletedAt = time.Now()
	}
	os.entries[k] = e
	c.emitLocked(entryEvent(w.Owner, w.Kind, w.Key))
	return true
}

// applyObjectLocked merges a remote object; it reports whether it was news.
func (c *Cluster) applyObjectLocked(w wireObject) bool {
	if !c.objectVersionOKLocked(&w) || !c.claimObjectOKLocked(&w) {
		return false // refused: neither stored nor counted in the clock
	}
	c.clock = max(c.clock, w.Version)
	c.notePeerVersionLocked(w.Writer, objKey(w.Kind, w.Key), w.Version)
	k := objKey(w.Kind, w.Key)
	cur := c.objects[k]
	if cur != nil && !newer(&w, &cur.wireObject) {
		return false
	}
	r := &objRec{wireObject: w}
	if w.Deleted {
		r.Value = nil
		r.deletedAt = time.Now()
	}
	c.setObjLocked(r)
	if w.Kind == kindPodCIDR {
		kick(c.cidrKick)
	} else {
		c.emitLocked(Event{Type: EventObject, Kind: w.Kind, Key: w.Key})
	}
	return true
}

// handle merges an incoming gossip message and re-gossips what was news.
func (c *Cluster) handle(env envelope) {
	if c.dropIncoming() {
		return
	}
	env = c.authenticate(env)
	var regossip []envelope
	var names []string
	objChanged := false
	c.mu.Lock()
	for _, w := range env.Objects {
		if c.applyObjectLocked(w) {
			objChanged = true
			k := objKey(w.Kind, w.Key)
			regossip = append(regossip, envelope{Objects: []wireObject{w}})
			names = append(names, "o/"+k)
			h := have{Node: c.name, Kind: w.Kind, Key: w.Key, Version: w.Version}
			regossip = append(regossip, envelope{Have: []have{h}})
			names = append(names, "h/"+c.name+"\x00"+k)
		}
	}
	for _, w := range env.Entries {
		if c.applyEntryLocked(w) {
			regossip = append(regossip, envelope{Entries: []wireEntry{w}})
			names = append(names, "e/"+w.Owner+"\x00"+objKey(w.Kind, w.Key))
		}
	}
	for _, h := range env.Have {
		k := objKey(h.Kind, h.Key)
		if h.Node == c.name || c.tooFarAheadLocked(h.Version) {
			continue
		}
		if h.Version > c.peerVersions[h.Node][k] {
			c.notePeerVersionLocked(h.Node, k, h.Version)
			regossip = append(regossip, envelope{Have: []have{h}})
			names = append(names, "h/"+h.Node+"\x00"+k)
		}
	}
	c.mu.Unlock()
	for i, e := range regossip {
		c.relay(names[i], e)
	}
	if objChanged {
		kick(c.saveKick)
		kick(c.metaKick)
	}
}

// localState is the full state sent in a push/pull.
func (c *Cluster) localState() []byte {
	c.mu.Lock()
	env := envelope{From: c.name, Full: true}
	for _, r := range c.objects {
		env.Objects = append(env.Objects, r.wireObject)
	}
	// This node's own entries always go; other members' entries are
	// relayed too (that is how a member that cannot reach their owner
	// gets them), in a random order of owners, while the state stays under
	// relayBudget: memberlist refuses a state over 20 MiB, and a large
	// cluster's relayed entries would pass it (100k endpoints are about
	// 20 MB). Each push/pull relays another share.
	add := func(owner string, os *ownerState) {
		for k, e := range os.entries {
			kd, key := splitKey(k)
			env.Entries = append(env.Entries, wireEntry{Owner: owner, Epoch: os.epoch, Seq: e.seq, Kind: kd, Key: key, Value: e.value, Deleted: e.deleted, FP: e.fp, Sig: e.sig})
		}
	}
	add(c.name, c.owners[c.name])
	size := 0
	for _, w := range env.Entries {
		size += entryWireSize(w)
	}
	for owner, os := range c.owners { // map order: random
		if owner == c.name || !c.visibleLocked(owner, os) {
			continue
		}
		n := 0
		for k, e := range os.entries {
			n += entryWireSize(wireEntry{Owner: owner, Key: k, Value: e.value})
		}
		if size+n > relayBudget {
			continue
		}
		size += n
		add(owner, os)
	}
	env.Certs = c.certsOf(env.Objects, env.Entries)
	c.mu.Unlock()
	b, err := json.Marshal(env)
	if err != nil {
		c.log.Error("encode state", "err", err)
		return nil
	}
	return b
}

// relayBudget bounds the relayed entries of a push/pull state (bytes).
const relayBudget = 8 << 20

// entryWireSize estimates an entry's JSON size: the value is base64, the
// field names and numbers about 80 bytes, the signature and fingerprint
// about 130.
func entryWireSize(w wireEntry) int { return 210 + len(w.Owner) + len(w.Key) + len(w.Value)*4/3 }

func (c *Cluster) mergeRemoteState(buf []byte) {
	var env envelope
	if err := json.Unmarshal(buf, &env); err != nil {
		c.log.Warn("bad remote state", "err", err)
		return
	}
	if env.From != "" && env.From != c.name {
		// a full view: it is exactly what the peer has now
		m := make(map[string]uint64, len(env.Objects))
		c.mu.Lock()
		for _, w := range env.Objects {
			if !c.tooFarAheadLocked(w.Version) {
				m[objKey(w.Kind, w.Key)] = w.Version
			}
		}
		c.peerVersions[env.From] = m
		c.mu.Unlock()
	}
	if c.dropIncoming() {
		return
	}
	env = c.authenticate(env)
	// Merge without re-gossiping object by object: anti-entropy is pairwise.
	objChanged := false
	c.mu.Lock()
	for _, w := range env.Objects {
		if c.applyObjectLocked(w) {
			objChanged = true
		}
	}
	for _, w := range env.Entries {
		c.applyEntryLocked(w)
	}
	c.mu.Unlock()
	if objChanged {
		kick(c.saveKick)
		kick(c.metaKick)
	}
}

// --- gossip

type bcast struct {
	name string
	msg  []byte
}

func (b *bcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*bcast)
	return ok && ob.name == b.name
}
func (b *bcast) Name() string    { return b.name }
func (b *bcast) Message() []byte { return b.msg }
func (b *bcast) Finished()       {}

// relay re-gossips news heard from a peer. Messages too big for gossip were
// sent by their origin to every member directly and are not relayed again
// (push/pull repairs whatever was missed).
func (c *Cluster) relay(name string, env envelope) {
	b, err := json.Marshal(env)
	if err != nil || len(b) > maxGossipPayload {
		return
	}
	c.queue.QueueBroadcast(&bcast{name: name, msg: b})
}

// broadcast gossips a one-item message; too big for a UDP packet, it goes to
// every live member over TCP instead.
func (c *Cluster) broadcast(name string, env envelope) {
	b, err := json.Marshal(env)
	if err != nil {
		c.log.Error("encode message", "err", err)
		return
	}
	if len(b) <= maxGossipPayload {
		c.queue.QueueBroadcast(&bcast{name: name, msg: b})
		return
	}
	for _, n := range c.ml.Members() {
		if n.Name == c.name {
			continue
		}
		go func(n *memberlist.Node) {
			if err := c.ml.SendReliable(n, b); err != nil {
				c.log.Debug("send reliable", "to", n.Name, "err", err)
			}
		}(n)
	}
}

type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Cluster)(d)
	c.mu.Lock()
	m := nodeMeta{Epoch: c.epoch, Digest: c.digest, Count: c.liveCount}
	if c.cfg.NodeIP.IsValid() {
		m.NodeIP = c.cfg.NodeIP.String()
	}
	if c.podCIDR.IsValid() {
		m.PodCIDR = c.podCIDR.String()
	}
	c.mu.Unlock()
	b, _ := json.Marshal(m)
	if len(b) > limit {
		c.log.Error("node meta too large", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	c := (*Cluster)(d)
	if len(b) == 0 {
		return
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		c.log.Warn("bad gossip message", "err", err)
		return
	}
	if env.Leaving != "" {
		c.mu.Lock()
		c.leaving[env.Leaving] = true
		c.mu.Unlock()
	}
	c.handle(env)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return (*Cluster)(d).queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte { return (*Cluster)(d).localState() }

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	(*Cluster)(d).mergeRemoteState(buf)
}

// --- membership events (called by memberlist with its node lock held: touch
// only this package's state, never call back into memberlist)

type eventDelegate Cluster

func (d *eventDelegate) NotifyJoin(n *memberlist.Node)   { (*Cluster)(d).nodeEvent(n, true, false) }
func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) { (*Cluster)(d).nodeEvent(n, false, false) }
func (d *eventDelegate) NotifyLeave(n *memberlist.Node)  { (*Cluster)(d).nodeEvent(n, false, true) }

func (c *Cluster) nodeEvent(n *memberlist.Node, joined, gone bool) {
	if n.Name == c.name {
		return
	}
	var meta nodeMeta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			c.log.Warn("bad node meta", "peer", n.Name, "err", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodes[n.Name]
	if ni == nil {
		ni = &nodeInfo{}
		c.nodes[n.Name] = ni
	}
	oldCIDR := ni.meta.PodCIDR
	visible := func() bool {
		os := c.owners[n.Name]
		return os != nil && c.visibleLocked(n.Name, os)
	}
	wasVisible := visible()
	ni.addr = parseAddrPort(n.Addr, n.Port)
	if len(n.Meta) > 0 {
		ni.meta = meta
	}
	prev := ni.state
	switch {
	case !gone:
		ni.state = StateAlive
		if joined {
			delete(c.leaving, n.Name)
		}
	case c.leaving[n.Name]:
		// (memberlist's Node.State is not updated before NotifyLeave)
		ni.state = StateLeft
		delete(c.leaving, n.Name)
	default:
		ni.state = StateDead
	}
	if prev != ni.state {
		ni.changed = time.Now()
		if ni.state == StateAlive && (prev == StateDead || prev == StateLeft) {
			select {
			case c.resync <- ni.addr.String():
			default:
			}
		}
	}
	os := c.owners[n.Name]
	if os == nil {
		os = &ownerState{epoch: meta.Epoch, entries: map[string]*entRec{}}
		c.owners[n.Name] = os
	}
	if gone {
		// its entries vanish at once, everywhere (every node does this)
		for k, e := range os.entries {
			if !e.deleted {
				kd, key := splitKey(k)
				c.emitLocked(entryEvent(n.Name, kd, key))
			}
		}
		os.entries = map[string]*entRec{}
		os.gone = true
	} else {
		if meta.Epoch > os.epoch {
			for k := range os.entries {
				kd, key := splitKey(k)
				c.emitLocked(entryEvent(n.Name, kd, key))
			}
			os.epoch, os.entries = meta.Epoch, map[string]*entRec{}
		}
		if meta.Epoch >= os.epoch {
			os.gone = false
		}
	}
	if !wasVisible && visible() {
		// Entries held before the member was known (gossip can bring them
		// before memberlist announces their owner) appear now: say so per
		// entry, as for any other change of one.
		for k, e := range os.entries {
			if !e.deleted {
				kd, key := splitKey(k)
				c.emitLocked(entryEvent(n.Name, kd, key))
			}
		}
	}
	if prev != ni.state || oldCIDR != ni.meta.PodCIDR {
		c.emitLocked(Event{Type: EventMember, Node: n.Name})
	}
	if oldCIDR != ni.meta.PodCIDR {
		kick(c.cidrKick)
	}
}

func sortBy[T any](s []T, key func(T) string) {
	slices.SortFunc(s, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

// PendingBroadcasts is the number of gossip messages still queued for
// sending (news not yet passed on as often as memberlist does).
func (c *Cluster) PendingBroadcasts() int { return c.queue.NumQueued() }
