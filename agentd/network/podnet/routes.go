//go:build linux

package podnet

import (
	"context"
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
// each peer's pod CIDR via that peer's node IP (host-gw):
// `ip route replace <cidr> via <node IP> proto 104`. herd routes (RTProtHerd)
// in the main table for prefixes not in peers are removed; other routes are
// never touched.
func EnsureRoutes(ctx context.Context, hostNetns string, peers map[netip.Prefix]netip.Addr) error {
	for cidr, via := range peers {
		if !cidr.IsValid() || !cidr.Addr().Is4() || cidr != cidr.Masked() {
			return fmt.Errorf("podnet: invalid peer pod CIDR %v", cidr)
		}
		if !via.Is4() {
			return fmt.Errorf("podnet: invalid node IP %v for %v", via, cidr)
		}
	}
	return withNetlink(hostNetns, func(h *netlink.Handle) error {
		for cidr, via := range peers {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := &netlink.Route{
				Dst:      prefixToIPNet(cidr),
				Gw:       net.IP(via.AsSlice()),
				Protocol: RTProtHerd,
				Table:    unix.RT_TABLE_MAIN,
			}
			if err := h.RouteReplace(r); err != nil {
				return fmt.Errorf("podnet: route replace %v via %v: %w", cidr, via, err)
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
				if _, keep := peers[pfx]; keep {
					continue
				}
			}
			if err := h.RouteDel(&r); err != nil {
				return fmt.Errorf("podnet: route del %v: %w", r.Dst, err)
			}
		}
		return nil
	})
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
