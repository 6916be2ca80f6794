package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Registers: a concatenation starts in NFT_REG_1 (= 32-bit registers 8..11)
// and continues field by field, each padded to 4 bytes, as nft does.
const (
	reg1 = unix.NFT_REG_1 // 16 bytes, aliases reg32 8..11
	r32a = 9              // NFT_REG32_01
	r32b = 10             // NFT_REG32_02
	r32c = 11             // NFT_REG32_03
	r32d = 12             // NFT_REG32_04
)

// Chain priorities: DNAT like kube-proxy (dstnat), the reject filter right
// after it so it sees the translated destination, masquerade at srcnat.
const (
	prioDNAT   = -100
	prioFilter = -90
	prioSNAT   = 100

	// MasqMark is the packet-mark bit herd sets on connections it DNATs;
	// postrouting masquerades only those (like kube-proxy's 0x4000).
	MasqMark = 0x00040000
)

func (d *Dataplane) addSkeleton(capacity uint32) error {
	c, t := d.conn, d.table
	d.sets = sets{
		backends:   &nftables.Set{Table: t, Name: "backends", Size: capacity, IsMap: true, Concatenation: true, KeyType: keyBackends, DataType: valBackends, Comment: Marker},
		affinity:   &nftables.Set{Table: t, Name: "affinity", Concatenation: true, KeyType: keyPort, Comment: Marker},
		clusterips: &nftables.Set{Table: t, Name: "clusterips", KeyType: nftables.TypeIPAddr, Comment: Marker},
		nodeips:    &nftables.Set{Table: t, Name: "nodeips", KeyType: nftables.TypeIPAddr, Comment: Marker},
		hairpin:    &nftables.Set{Table: t, Name: "hairpin", Concatenation: true, KeyType: keyIPPair, Comment: Marker},
		// at most one element per backend: the backends capacity covers it
		classes: &nftables.Set{Table: t, Name: "classes", Size: capacity, IsMap: true, Concatenation: true, KeyType: keyPort, DataType: nftables.TypeVerdict, Comment: Marker},
	}
	for _, s := range []*nftables.Set{d.sets.backends, d.sets.affinity, d.sets.clusterips, d.sets.nodeips, d.sets.hairpin, d.sets.classes} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	policy := nftables.ChainPolicyAccept
	hook := func(name string, typ nftables.ChainType, h *nftables.ChainHook, prio int32) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: h, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio)), Policy: &policy})
	}
	services := c.AddChain(&nftables.Chain{Name: "services", Table: t})
	refuse := c.AddChain(&nftables.Chain{Name: "refuse", Table: t})
	for _, ch := range []*nftables.Chain{
		hook("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, prioDNAT),
		hook("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput, prioDNAT),
	} {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: services.Name}}})
	}
	for _, ch := range []*nftables.Chain{
		hook("filter-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, prioFilter),
		hook("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, prioFilter),
	} {
		// ip daddr @clusterips goto refuse: still addressed to a VIP after DNAT
		// means no backend matched (unused port, or no ready endpoint).
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			loadDaddr(reg1),
			lookup(d.sets.clusterips, reg1, false),
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: refuse.Name},
		}})
	}
	// refuse: meta l4proto tcp reject with tcp reset; reject (icmp port-unreachable)
	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	}})
	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: []expr.Any{
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port-unreachable */},
	}})

	// services chain: two constant rules. Each builds the port key
	// (address . l4proto . port) in reg1 and jumps through @classes to the
	// slot chain of the port's backend count. The slot chains build the key
	// again: registers do live across a goto, but the kernel (6.x) refuses
	// a rule that reads a register it has not written itself (ENODATA).
	portKey := func(vip bool) []expr.Any {
		first := loadDaddr(reg1)
		if !vip {
			first = &expr.Immediate{Register: reg1, Data: ip4(nodePortAddr)}
		}
		return []expr.Any{
			first,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r32a},
			&expr.Payload{DestRegister: r32b, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		}
	}
	for _, vip := range []bool{true, false} {
		// ip daddr @clusterips <key> vmap @classes
		// ip daddr @nodeips 0.0.0.0 . <l4proto . port> vmap @classes
		guard := []expr.Any{loadDaddr(reg1), lookup(d.sets.clusterips, reg1, false)}
		if !vip {
			guard = []expr.Any{loadDaddr(reg1), lookup(d.sets.nodeips, reg1, false)}
		}
		var ex []expr.Any
		ex = append(ex, guard...)
		ex = append(ex, portKey(vip)...)
		ex = append(ex, &expr.Lookup{SourceRegister: reg1, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: d.sets.classes.Name, SetID: d.sets.classes.ID})
		// The marker as the rule's comment: google/nftables does not read
		// set comments back, rule user data it does (see checkOwned).
		c.AddRule(&nftables.Rule{Table: t, Chain: services, Exprs: ex, UserData: markerUserData})
	}

	// slots-<k>: ports with k backends (slots 0..k-1 in @backends). VIP
	// ports and NodePorts share these chains: a NodePort packet misses the
	// VIP rules' lookups (a node IP is never a key) and hits the NodePort
	// ones. One chain set, not two: every chain binding @backends makes the
	// kernel walk all of that fixed-size map's buckets when the rules are
	// loaded, so the chain count is a fixed cost of every full sync.
	dnat := []expr.Any{
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: d.sets.backends.Name, SetID: d.sets.backends.ID},
		// meta mark set meta mark | MasqMark (only reached on a backend hit)
		&expr.Meta{Key: expr.MetaKeyMARK, Register: r32d},
		&expr.Bitwise{SourceRegister: r32d, DestRegister: r32d, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(^uint32(MasqMark)), Xor: binaryutil.NativeEndian.PutUint32(MasqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: r32d, SourceRegister: true},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: r32a, Specified: true},
	}
	for k := 1; k <= d.cfg.Slots; k++ {
		d.addSlotChain(k, portKey(true), portKey(false), dnat)
	}

	// postrouting: masquerade what herd DNATed (masq mark) when the source
	// is outside the pod CIDR, or when a pod reached itself (hairpin).
	post := hook("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, prioSNAT)
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(MasqMark), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}})
	if p := d.cfg.PodCIDR; p.IsValid() && p.Addr().Is4() {
		// ip saddr != PodCIDR masquerade
		mask := make([]byte, 4)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ip4(p.Masked().Addr())},
			&expr.Masq{},
		}})
	} else {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{&expr.Masq{}}})
	}
	// ip saddr . ip daddr @hairpin masquerade
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: r32a, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		lookup(d.sets.hairpin, reg1, false),
		&expr.Masq{},
	}})
	return nil
}

// addSlotChain adds the chain serving ports with k backends: for VIP ports
// (key vipKey) then NodePorts (key npKey), affinity by a hash of the client
// address, else a random slot.
func (d *Dataplane) addSlotChain(k int, vipKey, npKey, dnat []expr.Any) {
	c, t := d.conn, d.table
	ch := c.AddChain(&nftables.Chain{Name: slotChain(k), Table: t})
	for _, key := range [][]expr.Any{vipKey, npKey} {
		// <key> @affinity dnat to <key> . jhash ip saddr mod k map @backends
		var ex []expr.Any
		ex = append(ex, key...)
		ex = append(ex, lookup(d.sets.affinity, reg1, false))
		ex = append(ex,
			&expr.Payload{DestRegister: r32c, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Hash{SourceRegister: r32c, DestRegister: r32c, Length: 4, Modulus: uint32(k), Type: expr.HashTypeJenkins},
		)
		ex = append(ex, dnat...)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
		// dnat to <key> . numgen random mod k map @backends
		ex = nil
		ex = append(ex, key...)
		ex = append(ex, &expr.Numgen{Register: r32c, Modulus: uint32(k), Type: unix.NFT_NG_RANDOM})
		ex = append(ex, dnat...)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
	}
}

// slotChain names the chain serving ports with k backends.
func slotChain(k int) string { return fmt.Sprintf("slots-%d", k) }

// markerUserData is Marker as a rule comment (`nft list` shows it).
var markerUserData = userdata.AppendString(nil, userdata.TypeComment, Marker)

func loadDaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func lookup(s *nftables.Set, reg uint32, invert bool) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}
}

// RuleCount returns the number of rules in herd's table (constant: it does
// not depend on the number of services; 4 per slot chain, Slots of them,
// plus a fixed set).
func (d *Dataplane) RuleCount() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	chains, err := d.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rules, err := d.conn.GetRules(d.table, ch)
		if err != nil {
			return 0, err
		}
		n += len(rules)
	}
	return n, nil
}
