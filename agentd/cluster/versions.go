package cluster

import (
	"time"
)

// What is received from other members is checked before it is merged: a
// member (buggy, or holding the gossip key without being trusted with
// everything) must not be able to wrap or jump version counters.

// maxVersionLead is how far ahead of this node's clock a received version
// may be. Legitimate versions are a Lamport clock that grows by one per
// write; a version near 2^64 would wrap the clock and make every later
// write lose.
const maxVersionLead = 1 << 32

// maxEpochLead is how far ahead of this node's wall clock a member's epoch
// (its start time, in nanoseconds) may be: an epoch in the far future would
// make every entry of the member's real life look stale.
const maxEpochLead = time.Hour

// objectVersionOKLocked reports whether w's version may be merged; a version
// too far ahead is logged (never the value).
func (c *Cluster) objectVersionOKLocked(w *wireObject) bool {
	if !c.tooFarAheadLocked(w.Version) {
		return true
	}
	c.log.Warn("refused object: version too far ahead of this node's clock",
		"owner", w.Writer, "kind", w.Kind, "key", w.Key, "version", w.Version, "clock", c.clock)
	return false
}

// tooFarAheadLocked reports whether v is more than maxVersionLead ahead of
// this node's clock.
func (c *Cluster) tooFarAheadLocked(v uint64) bool {
	return v > c.clock && v-c.clock > maxVersionLead
}

// entryVersionOK reports whether w's epoch and sequence number may be
// merged. An owner's sequence numbers start at its epoch and grow by one per
// change, so a number far above the epoch is not one it sent.
func (c *Cluster) entryVersionOK(w *wireEntry, now time.Time) bool {
	why := ""
	switch {
	case w.Epoch > now.UnixNano() && w.Epoch-now.UnixNano() > int64(maxEpochLead):
		why = "epoch too far in the future"
	case w.Seq > uint64(w.Epoch) && w.Seq-uint64(w.Epoch) > maxVersionLead:
		why = "sequence number too far ahead of the owner's epoch"
	default:
		return true
	}
	c.log.Warn("refused entry: "+why,
		"owner", w.Owner, "kind", w.Kind, "key", w.Key, "epoch", w.Epoch, "version", w.Seq)
	return false
}
