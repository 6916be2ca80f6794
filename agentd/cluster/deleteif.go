package cluster

// DeleteIf deletes an object only if check accepts it: check sees the
// current object under the store's lock, so nothing written meanwhile (here
// or learned from a peer) slips between the check and the delete. check's
// error is returned as is, with false, and the object kept. Otherwise it
// reports whether the object existed; a missing one is no error and check
// is not called.
func (c *Cluster) DeleteIf(kind, key string, check func(Object) error) (bool, error) {
	if err := validName(kind, key); err != nil {
		return false, err
	}
	v, err := c.writeIf(kind, key, nil, true, check)
	return v != 0, err
}
