//go:build linux

package podnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var testClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// routesIn lists the gateway routes of the main table in the netns at path:
// destination -> "gateway proto N".
func routesIn(t *testing.T, path string) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := withNetlink(path, func(h *netlink.Handle) error {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		for _, r := range rs {
			if r.Dst != nil && r.Gw != nil {
				got[r.Dst.String()] = fmt.Sprintf("%s proto %d", r.Gw, r.Protocol)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestEnsureRoutesRefuses: in a fresh node netns, peers whose pod CIDR is
// outside the cluster CIDR get no route, a prefix that already has a route
// herd did not create keeps that route, and the valid peers are routed
// all the same; the refusals are reported.
func TestEnsureRoutesRefuses(t *testing.T) {
	requireRoot(t)
	gw := netip.MustParseAddr("192.168.77.2")
	foreign := netip.MustParsePrefix("10.244.5.0/24")
	for _, tc := range []struct {
		name    string
		peers   map[netip.Prefix]netip.Addr
		want    map[string]string // besides the foreign route, always kept
		wantErr []string
	}{
		{
			name:  "valid claim",
			peers: map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.244.2.0/24"): gw},
			want:  map[string]string{"10.244.2.0/24": fmt.Sprintf("%s proto %d", gw, RTProtHerd)},
		},
		{
			name: "half of the address space",
			peers: map[netip.Prefix]netip.Addr{
				netip.MustParsePrefix("0.0.0.0/1"):     gw,
				netip.MustParsePrefix("10.244.2.0/24"): gw,
			},
			want:    map[string]string{"10.244.2.0/24": fmt.Sprintf("%s proto %d", gw, RTProtHerd)},
			wantErr: []string{"0.0.0.0/1 is outside the cluster CIDR"},
		},
		{
			name:    "wider than the cluster CIDR",
			peers:   map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.0.0.0/8"): gw},
			want:    map[string]string{},
			wantErr: []string{"10.0.0.0/8 is outside the cluster CIDR"},
		},
		{
			name: "prefix with a route herd did not create",
			peers: map[netip.Prefix]netip.Addr{
				foreign:                                gw,
				netip.MustParsePrefix("10.244.3.0/24"): gw,
			},
			want:    map[string]string{"10.244.3.0/24": fmt.Sprintf("%s proto %d", gw, RTProtHerd)},
			wantErr: []string{"route to 10.244.5.0/24 (proto 4)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n1, _ := setupNodes(t)
			ctx := context.Background()
			if err := withNetlink(n1, func(h *netlink.Handle) error {
				return h.RouteAdd(&netlink.Route{Dst: prefixToIPNet(foreign), Gw: net.ParseIP("192.168.77.9"), Protocol: unix.RTPROT_STATIC})
			}); err != nil {
				t.Fatal(err)
			}
			err := EnsureRoutes(ctx, n1, testClusterCIDR, tc.peers)
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want one saying %q", err, w)
				}
			}
			if len(tc.wantErr) == 0 && err != nil {
				t.Errorf("error %v", err)
			}
			want := map[string]string{foreign.String(): fmt.Sprintf("192.168.77.9 proto %d", unix.RTPROT_STATIC)}
			for k, v := range tc.want {
				want[k] = v
			}
			if got := routesIn(t, n1); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("routes %v, want %v", got, want)
			}
		})
	}
}

// TestEnsureRoutesRemovesOwnRouteOutsideCluster: a herd route outside the
// cluster CIDR (made before such claims were refused) is removed.
func TestEnsureRoutesRemovesOwnRouteOutsideCluster(t *testing.T) {
	requireRoot(t)
	n1, _ := setupNodes(t)
	bad := netip.MustParsePrefix("0.0.0.0/1")
	if err := withNetlink(n1, func(h *netlink.Handle) error {
		return h.RouteAdd(&netlink.Route{Dst: prefixToIPNet(bad), Gw: net.ParseIP("192.168.77.2"), Protocol: RTProtHerd})
	}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureRoutes(context.Background(), n1, testClusterCIDR, map[netip.Prefix]netip.Addr{bad: netip.MustParseAddr("192.168.77.2")}); err == nil {
		t.Error("0.0.0.0/1 accepted")
	}
	if got := routesIn(t, n1); len(got) != 0 {
		t.Errorf("routes %v, want none", got)
	}
}

// TestEnsureServiceRouteKeepsForeignRoute: the service range gets herd's
// device route in a fresh node netns, and again (replaced) on a second
// call; a range that has a route herd did not create keeps it, and the
// call fails saying so.
func TestEnsureServiceRouteKeepsForeignRoute(t *testing.T) {
	requireRoot(t)
	svc := netip.MustParsePrefix("10.97.0.0/16")
	devRoutes := func(t *testing.T, path string) map[string]string {
		t.Helper()
		got := map[string]string{}
		if err := withNetlink(path, func(h *netlink.Handle) error {
			rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: prefixToIPNet(svc), Table: unix.RT_TABLE_MAIN},
				netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
			for _, r := range rs {
				got[r.Dst.String()] = fmt.Sprintf("gw %v proto %d", r.Gw, r.Protocol)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	t.Run("own route", func(t *testing.T) {
		n1, _ := setupNodes(t)
		for i := range 2 {
			if err := EnsureServiceRoute(n1, "herdtest0", svc); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		want := fmt.Sprintf("map[%s:gw <nil> proto %d]", svc, RTProtHerd)
		if got := devRoutes(t, n1); fmt.Sprint(got) != want {
			t.Errorf("routes %v, want %s", got, want)
		}
	})
	t.Run("foreign route", func(t *testing.T) {
		n1, _ := setupNodes(t)
		if err := withNetlink(n1, func(h *netlink.Handle) error {
			return h.RouteAdd(&netlink.Route{Dst: prefixToIPNet(svc), Gw: net.ParseIP("192.168.77.9"), Protocol: unix.RTPROT_STATIC})
		}); err != nil {
			t.Fatal(err)
		}
		err := EnsureServiceRoute(n1, "herdtest0", svc)
		if err == nil || !strings.Contains(err.Error(), "not replaced") || !strings.Contains(err.Error(), "--service-cidr") {
			t.Errorf("EnsureServiceRoute over a foreign route = %v, want an error saying it is not replaced", err)
		}
		want := fmt.Sprintf("map[%s:gw 192.168.77.9 proto %d]", svc, unix.RTPROT_STATIC)
		if got := devRoutes(t, n1); fmt.Sprint(got) != want {
			t.Errorf("routes %v, want %s", got, want)
		}
	})
}
