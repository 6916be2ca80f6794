package cluster

import (
	"bytes"
	"net/netip"
	"time"
)

// A pod CIDR claim received from another member is checked before it is
// recorded: a member must not claim address space that is not a free block
// of the cluster CIDR (routes to it would divert other traffic).

// claimSettleAfter is how long this node must have recorded a member's claim
// (settled) before an overlapping claim by another member is refused.
// Until then the lower name wins (reconcileCIDR): two members claiming at
// the same moment see each other's claim.
const claimSettleAfter = 30 * time.Second

// maxRefusalsLogged bounds the refusals remembered to log each only once.
const maxRefusalsLogged = 1024

type claimRec struct {
	p     netip.Prefix
	since time.Time // when this node recorded this prefix for the member
}

// noteClaimLocked keeps the claim index in step with a stored pod CIDR
// record: only records that are a block of the cluster CIDR are claims.
func (c *Cluster) noteClaimLocked(r *objRec) {
	if r.Kind != kindPodCIDR {
		return
	}
	if c.claims == nil {
		c.claims = map[string]claimRec{}
	}
	p, err := netip.ParsePrefix(string(r.Value))
	if r.Deleted || err != nil || !c.blockOK(p) {
		delete(c.claims, r.Key)
		return
	}
	if cur, ok := c.claims[r.Key]; ok && cur.p == p {
		return
	}
	c.claims[r.Key] = claimRec{p: p, since: time.Now()}
}

// claimRefusalLocked says why member name's claim of p, received from
// another member, is refused ("" when it is not): it must be one block of
// the cluster CIDR and overlap no other member's settled claim (this
// node's own included).
func (c *Cluster) claimRefusalLocked(name string, p netip.Prefix, now time.Time) (why, other string) {
	if !c.blockOK(p) {
		return "not a block of the cluster CIDR", ""
	}
	for o, cl := range c.claims {
		if o != name && cl.p.Overlaps(p) && now.Sub(cl.since) >= claimSettleAfter {
			return "overlaps another member's settled claim", o
		}
	}
	return "", ""
}

// claimObjectOKLocked checks a received pod CIDR record before it is merged.
func (c *Cluster) claimObjectOKLocked(w *wireObject) bool {
	if w.Kind != kindPodCIDR || w.Deleted {
		return true
	}
	if cur := c.objects[objKey(w.Kind, w.Key)]; cur != nil &&
		(!newer(w, &cur.wireObject) || (!cur.Deleted && cur.Writer == w.Writer && bytes.Equal(cur.Value, w.Value))) {
		return true // nothing newly claimed: an old copy, or the same claim again
	}
	p, err := netip.ParsePrefix(string(w.Value))
	why, other := "", ""
	switch {
	case w.Writer != w.Key:
		why = "written by another member"
	case err != nil:
		why = "not a prefix"
	case w.Key == c.name:
		// this node's own record coming back: only its shape is checked
		if !c.blockOK(p) {
			why = "not a block of the cluster CIDR"
		}
	default:
		why, other = c.claimRefusalLocked(w.Key, p, time.Now())
	}
	if why == "" {
		return true
	}
	c.logClaimRefusalLocked(w.Key, string(w.Value), why, other, "record", w.Version)
	return false
}

// logClaimRefusalLocked logs a refused claim once per member and value.
func (c *Cluster) logClaimRefusalLocked(name, value, why, other, source string, version uint64) {
	if c.refusedLogged == nil || len(c.refusedLogged) >= maxRefusalsLogged {
		c.refusedLogged = map[string]string{}
	}
	if c.refusedLogged[name] == value+"\x00"+why {
		return
	}
	c.refusedLogged[name] = value + "\x00" + why
	args := []any{"member", name, "pod_cidr", value, "source", source}
	if other != "" {
		args = append(args, "settled_owner", other)
	}
	if version != 0 {
		args = append(args, "version", version)
	}
	c.log.Warn("refused pod CIDR claim: "+why, args...)
}

// ClusterCIDR is the cluster CIDR every pod CIDR is a block of.
func (c *Cluster) ClusterCIDR() netip.Prefix { return c.cfg.ClusterCIDR }
