//go:build linux

package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RTProtHerd is the routing protocol number marking routes herd created
// ("proto 104" in `ip route`). Only routes with it are ever deleted.
const RTProtHerd netlink.RouteProtocol = 0x68

// withNetlink runs fn with a netlink handle bound to the network namespace at
// path ("" = the current one). No thread changes namespace.
func withNetlink(path string, fn func(*netlink.Handle) error) error {
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("open netns %s: %w", path, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	return fn(h)
}

// EnsureRoutes makes the node netns at hostNetns ("" = the current one) route
// each peer's pod CIDR via that peer's node IP (host-gw), as a route marked
// RTProtHerd: `ip route add|replace <cidr> via <node IP> proto 104`. herd
// routes (RTProtHerd) in the main table for prefixes not in peers are
// removed; other routes are never touched.
//
// Only a pod CIDR inside clusterCIDR is routed, and never over a route to
// the same prefix that herd did not create. Such peers are skipped (their
// herd routes removed), the others still set up, and the skipped ones
// reported in the error.
func EnsureRoutes(ctx context.Context, hostNetns string, clusterCIDR netip.Prefix, peers map[netip.Prefix]netip.Addr) error {
	if !clusterCIDR.IsValid() || !clusterCIDR.Addr().Is4() {
		return fmt.Errorf("podnet: invalid cluster CIDR %v", clusterCIDR)
	}
	var errs []error
	want := map[netip.Prefix]netip.Addr{}
	for cidr, via := range peers {
		if err := peerRouteOK(clusterCIDR.Masked(), cidr, via); err != nil {
			errs = append(errs, err)
			continue
		}
		want[cidr] = via
	}
	err := withNetlink(hostNetns, func(h *netlink.Handle) error {
		for cidr, via := range want {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := ensurePeerRoute(h, cidr, via); err != nil {
				if errors.Is(err, errForeignRoute) {
					delete(want, cidr)
					errs = append(errs, err)
					continue
				}
				return err
			}
		}
		routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{Protocol: RTProtHerd, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("podnet: route list: %w", err)
		}
		for i := range routes {
			r := routes[i]
			// Device routes (the service range, EnsureServiceRoute) are
			// not peer routes.
			if r.Protocol != RTProtHerd || r.Dst == nil || r.Gw == nil {
				continue
			}
			pfx, ok := ipNetToPrefix(r.Dst)
			if ok {
				if _, keep := want[pfx]; keep {
					continue
				}
			}
			if err := h.RouteDel(&r); err != nil {
				return fmt.Errorf("podnet: route del %v: %w", r.Dst, err)
			}
		}
		return nil
	})
	return errors.Join(append([]error{err}, errs...)...)
}

// peerRouteOK checks a peer's pod CIDR and node IP before any route is made.
func peerRouteOK(clusterCIDR, cidr netip.Prefix, via netip.Addr) error {
	switch {
	case !cidr.IsValid() || !cidr.Addr().Is4() || cidr != cidr.Masked():
		return fmt.Errorf("podnet: invalid peer pod CIDR %v", cidr)
	case cidr.Bits() < clusterCIDR.Bits() || !clusterCIDR.Contains(cidr.Addr()):
		return fmt.Errorf("podnet: peer pod CIDR %v is outside the cluster CIDR %v: not routed", cidr, clusterCIDR)
	case !via.Is4():
		return fmt.Errorf("podnet: invalid node IP %v for %v", via, cidr)
	}
	return nil
}

// errForeignRoute: a route to the prefix exists that herd did not create.
var errForeignRoute = errors.New("a route herd did not create exists")

// ensurePeerRoute routes cidr via via in the main table (see ensureRoute).
func ensurePeerRoute(h *netlink.Handle, cidr netip.Prefix, via netip.Addr) error {
	r := &netlink.Route{
		Dst:      prefixToIPNet(cidr),
		Gw:       net.IP(via.AsSlice()),
		Protocol: RTProtHerd,
		Table:    unix.RT_TABLE_MAIN,
	}
	if err := ensureRoute(h, cidr, r); err != nil {
		if errors.Is(err, errForeignRoute) {
			return err
		}
		return fmt.Errorf("podnet: route to %v via %v: %w", cidr, via, err)
	}
	return nil
}

// ensureRoute installs r (to cidr, in the main table, proto herd). A route
// herd made is replaced; with none there, r is added (failing, rather
// than replacing, if another appeared meanwhile); any other route to cidr
// is left alone and reported as errForeignRoute.
func ensureRoute(h *netlink.Handle, cidr netip.Prefix, r *netlink.Route) error {
	cur, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Dst: prefixToIPNet(cidr), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("podnet: route list %v: %w", cidr, err)
	}
	ours := false
	for _, c := range cur {
		if c.Protocol != RTProtHerd {
			return fmt.Errorf("podnet: route to %v (proto %d): %w; not replaced", cidr, c.Protocol, errForeignRoute)
		}
		ours = true
	}
	if ours {
		err = h.RouteReplace(r)
	} else {
		err = h.RouteAdd(r)
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("podnet: route to %v: %w (appeared meanwhile); not replaced", cidr, errForeignRoute)
	}
	return err
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ipNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}
