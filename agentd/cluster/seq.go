package cluster

// EntrySeq returns the sequence number of owner's entry as this node holds
// it, withdrawn tombstones included (present is false when this node holds
// nothing for it, or owner is not live). For this node's own entries it is
// the sequence number of the last PublishLocal or WithdrawLocal that
// changed the entry.
//
// Sequence numbers of one owner only grow, across its restarts too (each
// life starts counting at its epoch), so "this node holds seq or later"
// means it has seen that change or a newer one: callers can wait for a
// change to reach a member by comparing numbers.
func (c *Cluster) EntrySeq(owner, kind, key string) (seq uint64, present bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	os := c.owners[owner]
	if os == nil || os.gone {
		return 0, false
	}
	e := os.entries[objKey(kind, key)]
	if e == nil {
		return 0, false
	}
	return e.seq, true
}
