//go:build linux

package podnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureServiceRoute prepares the node (hostNetns, "" = the current one)
// for service traffic before any pod exists:
//   - the pod bridge exists and is up (the CNI bridge plugin adopts it and
//     adds the gateway address with the first pod), so that
//   - the service range routes to it (`ip route add <cidr> dev <bridge>
//     proto 104`, replacing only a route herd made; another route to the
//     range is an error and stays): a client on the node needs a route to
//     a virtual IP before the NAT hook can rewrite it;
//   - bridged pod-to-pod traffic passes the nftables hooks
//     (bridge-nf-call-iptables), or a pod reaching a service whose endpoint
//     is on the same bridge would see replies from the pod's own IP.
func EnsureServiceRoute(hostNetns, bridge string, cidr netip.Prefix) error {
	if !cidr.IsValid() || !cidr.Addr().Is4() {
		return fmt.Errorf("podnet: invalid service CIDR %v", cidr)
	}
	err := withNetlink(hostNetns, func(h *netlink.Handle) error {
		link, err := h.LinkByName(bridge)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
			if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("podnet: create bridge %s: %w", bridge, err)
			}
			link, err = h.LinkByName(bridge)
		}
		if err != nil {
			return fmt.Errorf("podnet: bridge %s: %w", bridge, err)
		}
		if _, ok := link.(*netlink.Bridge); !ok {
			return fmt.Errorf("podnet: %s exists and is not a bridge", bridge)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("podnet: set %s up: %w", bridge, err)
		}
		r := &netlink.Route{
			Dst:       prefixToIPNet(cidr.Masked()),
			LinkIndex: link.Attrs().Index,
			Scope:     netlink.SCOPE_LINK,
			Protocol:  RTProtHerd,
			Table:     unix.RT_TABLE_MAIN,
		}
		if err := ensureRoute(h, cidr.Masked(), r); err != nil {
			if errors.Is(err, errForeignRoute) {
				return fmt.Errorf("podnet: service CIDR %v: %w (remove that route or choose another --service-cidr)", cidr, err)
			}
			return fmt.Errorf("podnet: route %v dev %s: %w", cidr, bridge, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if hostNetns != "" {
		return nil // sysctls of another namespace: the caller's business
	}
	return bridgeNetfilter()
}

const brNF = "/proc/sys/net/bridge/bridge-nf-call-iptables"

func bridgeNetfilter() error {
	if _, err := os.Stat(brNF); err != nil {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("podnet: modprobe br_netfilter: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.WriteFile(brNF, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("podnet: enable %s: %w", brNF, err)
	}
	return nil
}
