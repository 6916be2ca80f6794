package cluster

import (
	"net/netip"
	"strings"
	"testing"
)

// TestRefusedPodCIDRClaims: claims received from other members are recorded
// only when they are one block of the cluster CIDR, written by the member
// itself, and overlap no settled claim of another member (this node's
// included); claims still settling are recorded (the lower name wins then).
func TestRefusedPodCIDRClaims(t *testing.T) {
	var logs lockedBuffer
	a := newNode(t, "a", withLog(&logs))
	join(t, a)
	own := a.PodCIDR()
	claim := func(writer, member, value string) {
		t.Helper()
		deliver(t, a, false, envelope{Objects: []wireObject{{Kind: kindPodCIDR, Key: member, Value: []byte(value), Version: clockOf(a) + 1, Writer: writer}}})
	}
	settle := func(member string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		cl, ok := a.claims[member]
		if !ok {
			t.Fatalf("%s has no claim to settle", member)
		}
		cl.since = cl.since.Add(-claimSettleAfter)
		a.claims[member] = cl
	}
	claim("s", "s", "10.244.9.0/24")
	settle("s")
	settle("a")
	claim("u", "u", "10.244.11.0/24") // still settling

	for _, tc := range []struct {
		name, writer, member, value string
		ok                          bool
	}{
		{name: "half the address space", writer: "z1", member: "z1", value: "0.0.0.0/1"},
		{name: "outside the cluster CIDR", writer: "z2", member: "z2", value: "10.9.0.0/24"},
		{name: "the whole cluster CIDR", writer: "z3", member: "z3", value: testCluster.String()},
		{name: "smaller than a block", writer: "z4", member: "z4", value: "10.244.7.0/25"},
		{name: "not masked", writer: "z5", member: "z5", value: "10.244.7.1/24"},
		{name: "claimed for another member", writer: "z6", member: "y6", value: "10.244.7.0/24"},
		{name: "overlapping a settled claim", writer: "z7", member: "z7", value: "10.244.9.0/24"},
		{name: "overlapping this node's settled claim", writer: "z8", member: "z8", value: own.String()},
		{name: "overlapping a settling claim", writer: "u2", member: "u2", value: "10.244.11.0/24", ok: true},
		{name: "a free block", writer: "v", member: "v", value: "10.244.20.0/24", ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claim(tc.writer, tc.member, tc.value)
			a.mu.Lock()
			p, claimed := a.claimOfLocked(tc.member)
			_, recorded := a.objects[objKey(kindPodCIDR, tc.member)]
			a.mu.Unlock()
			if claimed != tc.ok || recorded != tc.ok || (tc.ok && p.String() != tc.value) {
				t.Fatalf("claim %v %v (record stored %v), want accepted %v", p, claimed, recorded, tc.ok)
			}
			if !tc.ok && !strings.Contains(logs.String(), "member="+tc.member+" pod_cidr="+tc.value) {
				t.Errorf("refusal not logged: %s", logs.String())
			}
		})
	}
	// Once both settled, a copy of a claim recorded while settling (a
	// push/pull sends it again) is no new claim: it stays, unlogged.
	settle("u")
	settle("u2")
	a.mu.Lock()
	again := a.objects[objKey(kindPodCIDR, "u2")].wireObject
	a.mu.Unlock()
	deliver(t, a, true, envelope{Objects: []wireObject{again}})
	a.mu.Lock()
	_, still := a.claimOfLocked("u2")
	a.mu.Unlock()
	if !still || strings.Contains(logs.String(), "member=u2") {
		t.Errorf("u2's recorded claim sent again: kept %v; logs %s", still, logs.String())
	}
	if a.PodCIDR() != own {
		t.Errorf("a's own claim moved %v -> %v", own, a.PodCIDR())
	}

	// A member whose metadata alone claims half the address space, or a
	// settled block, is listed without a pod CIDR (nothing to route).
	a.mu.Lock()
	a.nodes["m1"] = &nodeInfo{state: StateAlive, meta: nodeMeta{PodCIDR: "0.0.0.0/1", NodeIP: "192.0.2.99"}}
	a.nodes["m2"] = &nodeInfo{state: StateAlive, meta: nodeMeta{PodCIDR: "10.244.9.0/24", NodeIP: "192.0.2.98"}}
	a.nodes["m3"] = &nodeInfo{state: StateAlive, meta: nodeMeta{PodCIDR: "10.244.30.0/24", NodeIP: "192.0.2.97"}}
	a.mu.Unlock()
	want := map[string]netip.Prefix{"m1": {}, "m2": {}, "m3": netip.MustParsePrefix("10.244.30.0/24")}
	for _, m := range a.Members() {
		if w, ok := want[m.Name]; ok && m.PodCIDR != w {
			t.Errorf("member %s listed with pod CIDR %v, want %v", m.Name, m.PodCIDR, w)
		}
	}
}
