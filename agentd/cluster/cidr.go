package cluster

import (
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"time"
)

// blockOK reports whether p is one of the cluster CIDR's node blocks.
func (c *Cluster) blockOK(p netip.Prefix) bool {
	return p.IsValid() && p.Bits() == c.cfg.NodeCIDRBits && p == p.Masked() &&
		c.cfg.ClusterCIDR.Contains(p.Addr()) && p.Addr().Is4() == c.cfg.ClusterCIDR.Addr().Is4()
}

// block returns the i-th node block of the cluster CIDR.
func (c *Cluster) block(i uint64) (netip.Prefix, bool) {
	cc := c.cfg.ClusterCIDR
	n := c.cfg.NodeCIDRBits - cc.Bits()
	if n < 64 && i >= uint64(1)<<n {
		return netip.Prefix{}, false
	}
	host := cc.Addr().BitLen() - c.cfg.NodeCIDRBits
	b := cc.Addr().AsSlice()
	v := new(big.Int).SetBytes(b)
	v.Add(v, new(big.Int).Lsh(new(big.Int).SetUint64(i), uint(host)))
	out := make([]byte, len(b))
	v.FillBytes(out)
	a, _ := netip.AddrFromSlice(out)
	return netip.PrefixFrom(a, c.cfg.NodeCIDRBits), true
}

// claimOfLocked is a node's claimed pod CIDR: its replicated claim record,
// else what its node metadata says. Only a block of the cluster CIDR is a
// claim, and a claim seen only in metadata must overlap no other member's
// settled claim (records are checked as they arrive).
func (c *Cluster) claimOfLocked(name string) (netip.Prefix, bool) {
	if r := c.objects[objKey(kindPodCIDR, name)]; r != nil && !r.Deleted {
		cl, ok := c.claims[name]
		return cl.p, ok
	}
	if ni := c.nodes[name]; ni != nil && ni.meta.PodCIDR != "" {
		p, err := netip.ParsePrefix(ni.meta.PodCIDR)
		why, other := "not a prefix", ""
		if err == nil {
			why, other = c.claimRefusalLocked(name, p, time.Now())
		}
		if why == "" {
			return p, true
		}
		if name != c.name {
			c.logClaimRefusalLocked(name, ni.meta.PodCIDR, why, other, "node metadata", 0)
		}
	}
	return netip.Prefix{}, false
}

// othersClaimsLocked maps every other known node to its claim.
func (c *Cluster) othersClaimsLocked() map[string]netip.Prefix {
	names := map[string]bool{}
	for name := range c.nodes {
		names[name] = true
	}
	for _, r := range c.objects {
		if r.Kind == kindPodCIDR {
			names[r.Key] = true
		}
	}
	delete(names, c.name)
	out := map[string]netip.Prefix{}
	for name := range names {
		if p, ok := c.claimOfLocked(name); ok {
			out[name] = p
		}
	}
	return out
}

// numBlocks is the number of node blocks in the cluster CIDR (capped).
func (c *Cluster) numBlocks() uint64 {
	n := c.cfg.NodeCIDRBits - c.cfg.ClusterCIDR.Bits()
	if n >= 32 {
		return 1 << 32
	}
	return 1 << n
}

// pickLocked returns the first block from start on (wrapping around) that
// overlaps none of taken.
func (c *Cluster) pickLocked(start uint64, taken map[string]netip.Prefix, also ...netip.Prefix) (netip.Prefix, error) {
	total := c.numBlocks()
	for j := uint64(0); j < total; j++ {
		p, ok := c.block((start + j) % total)
		if !ok {
			break
		}
		free := true
		for _, t := range taken {
			if t.Overlaps(p) {
				free = false
				break
			}
		}
		for _, t := range also {
			if t.IsValid() && t.Overlaps(p) {
				free = false
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("cluster: no free /%d left in %s", c.cfg.NodeCIDRBits, c.cfg.ClusterCIDR)
}

// firstBlock is where a claim starts looking: the lowest block when other
// claims are known (a node joining a cluster), else a block picked by the
// node's name, so that two nodes that each founded a cluster rarely hold
// the same block when one later joins the other's cluster (the pod network
// is built on the first claim).
func (c *Cluster) firstBlock(taken map[string]netip.Prefix) uint64 {
	if len(taken) > 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(c.name))
	return h.Sum64() % c.numBlocks()
}

// ensureClaim claims a free block if this node has none, and makes
// sure its claim is recorded (persisted, replicated, in the node metadata).
func (c *Cluster) ensureClaim() error {
	c.mu.Lock()
	if !c.podCIDR.IsValid() {
		taken := c.othersClaimsLocked()
		p, err := c.pickLocked(c.firstBlock(taken), taken)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.podCIDR = p
		c.log.Info("claimed pod CIDR", "pod_cidr", p)
	}
	return c.recordClaimLocked()
}

// recordClaimLocked unlocks c.mu.
func (c *Cluster) recordClaimLocked() error {
	p := c.podCIDR
	r := c.objects[objKey(kindPodCIDR, c.name)]
	needPut := r == nil || r.Deleted || string(r.Value) != p.String()
	c.mu.Unlock()
	var err error
	if needPut {
		_, err = c.write(kindPodCIDR, c.name, []byte(p.String()), false) // saves too
	} else {
		err = c.save()
	}
	kick(c.metaKick)
	kick(c.cidrKick)
	c.emit(Event{Type: EventMember, Node: c.name})
	return err
}

// reconcileCIDR resolves a race where another node claimed the same block:
// the node with the lower name keeps it, the other re-picks.
func (c *Cluster) reconcileCIDR() {
	c.mu.Lock()
	mine := c.podCIDR
	if !mine.IsValid() || !c.joined {
		c.mu.Unlock()
		return
	}
	claims := c.othersClaimsLocked()
	lose := false
	for name, p := range claims {
		if p.Overlaps(mine) && name < c.name {
			lose = true
			break
		}
	}
	if !lose {
		c.mu.Unlock()
		return
	}
	p, err := c.pickLocked(0, claims, mine)
	if err != nil {
		c.mu.Unlock()
		c.log.Error("pod CIDR conflict and no free block", "pod_cidr", mine, "err", err)
		return
	}
	c.podCIDR = p
	c.log.Warn("pod CIDR claimed by a lower-named node; re-picked", "old", mine, "new", p)
	if err := c.recordClaimLocked(); err != nil {
		c.log.Error("record pod CIDR claim", "err", err)
	}
}
