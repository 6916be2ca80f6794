package resources

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// What herd_node (resource and data source) shows of the node's cluster,
// and how the resource joins a node into one.

const (
	descPodCIDR = "The node's pod range, on which its pod network was built (pods get their IPs from it); empty when the " +
		"node runs pods without a pod network."
	descClusterMembers = "The members of the node's cluster as the node sees them, itself included, sorted by name; " +
		"empty when the node runs without a cluster."
	descMemberName    = "The member's node name."
	descMemberGossip  = "The member's gossip address (`host:port`, its agentd's `--gossip-listen`)."
	descMemberNodeIP  = "The address peers route the member's pod CIDR to, and its NodePorts answer on."
	descMemberPodCIDR = "The pod CIDR the member claimed from the cluster CIDR (one per member, never overlapping once settled)."
	descMemberState   = "`alive`, `suspect`, `dead` or `left`."
	descJoin          = "Gossip addresses (`host:port`, the `--gossip-listen` of members) of the cluster this node should join. " +
		"On create, and whenever the list changes, the node is asked to join that cluster (agentd's ClusterService.JoinCluster); " +
		"a node that already sees every listed address as an alive member is left alone, so joining its own cluster is a no-op. " +
		"The node's agentd must run with a cluster: `--cluster-cidr`, `--gossip-listen` and `--gossip-key` (the cluster's key). " +
		"Removing `join`, or an address from it, does nothing to the node: herd does not offer leaving a cluster (memberlist leave). " +
		"A node that founded a cluster of its own claimed its pod CIDR without knowing the other cluster's claims; when the two " +
		"collide, the cluster re-assigns one of them (the claim of the node with the greater name, which may be a member of the " +
		"other cluster), and because agentd builds its pod network only when it starts, the `herd_node` of that node warns on " +
		"refresh (its `pod_cidr` differs from its entry in `cluster_members`): restart that agentd with `--join` and replace " +
		"the pods on it."
	// settleTimeout bounds the wait for the cluster to settle a joined
	// node's pod CIDR claim.
	settleTimeout = 15 * time.Second
)

var memberAttrTypes = map[string]attr.Type{
	"name":           types.StringType,
	"gossip_address": types.StringType,
	"node_ip":        types.StringType,
	"pod_cidr":       types.StringType,
	"state":          types.StringType,
}

var memberObjectType = types.ObjectType{AttrTypes: memberAttrTypes}

// membersValue renders members sorted by name, whatever order the node
// lists them in, so that a refresh does not reorder them.
func membersValue(ms []*herdv1.Member) types.List {
	sorted := append([]*herdv1.Member(nil), ms...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetName() < sorted[j].GetName() })
	elems := make([]attr.Value, 0, len(sorted))
	for _, m := range sorted {
		elems = append(elems, types.ObjectValueMust(memberAttrTypes, map[string]attr.Value{
			"name":           types.StringValue(m.GetName()),
			"gossip_address": types.StringValue(m.GetGossipAddress()),
			"node_ip":        types.StringValue(m.GetNodeIp()),
			"pod_cidr":       types.StringValue(m.GetPodCidr()),
			"state":          types.StringValue(m.GetState()),
		}))
	}
	return types.ListValueMust(memberObjectType, elems)
}

// noCluster reports the answers of a node that runs without a cluster:
// FailedPrecondition, or Unimplemented from an agentd older than clusters.
func noCluster(err error) bool {
	c := status.Code(err)
	return c == codes.FailedPrecondition || c == codes.Unimplemented
}

// listMembers asks the node for the members it sees; nil without a cluster.
func listMembers(ctx context.Context, cc herdv1.ClusterServiceClient) ([]*herdv1.Member, error) {
	resp, err := cc.ListMembers(ctx, &herdv1.ListMembersRequest{})
	if noCluster(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.GetMembers(), nil
}

// readMembers is listMembers through the provider's clients, as a state
// value.
func readMembers(ctx context.Context, clients Clients, id string) (types.List, error) {
	cc, err := clients.ClusterClient(id)
	if err != nil {
		return types.ListNull(memberObjectType), err
	}
	ms, err := listMembers(ctx, cc)
	if err != nil {
		return types.ListNull(memberObjectType), err
	}
	return membersValue(ms), nil
}

// addNoClusterError explains a join asked of a node without a cluster.
func addNoClusterError(diags *diag.Diagnostics, id string, err error) {
	diags.AddAttributeError(path.Root("join"), "Node runs without a cluster",
		fmt.Sprintf("%s cannot join a cluster: its agentd runs without one (%s).\n\n"+
			"Start agentd on that node with --cluster-cidr (the cluster's pod range), --gossip-listen (its gossip "+
			"address) and --gossip-key (the cluster's key file), or remove join.",
			nodeDescription(id), status.Convert(err).Message()))
}

// joinCluster makes the node join the cluster of addrs, unless it already
// sees each of them as an alive member; then it waits (a little) until the
// cluster has settled the node's pod CIDR claim, so that the state shows
// the claim that holds. Errors go to diags.
func joinCluster(ctx context.Context, clients Clients, id string, addrs []string, diags *diag.Diagnostics) {
	cc, err := clients.ClusterClient(id)
	if err != nil {
		addRPCError(diags, "connect to the node", id, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, clients.DialTimeout()+30*time.Second)
	defer cancel()
	resp, err := cc.ListMembers(cctx, &herdv1.ListMembersRequest{})
	switch {
	case noCluster(err):
		addNoClusterError(diags, id, err)
		return
	case err != nil:
		addRPCError(diags, "list the cluster's members", id, err)
		return
	case allAliveMembers(resp.GetMembers(), addrs):
		return // already in that cluster: nothing to do
	}
	if _, err := cc.JoinCluster(cctx, &herdv1.JoinClusterRequest{Addresses: addrs}); err != nil {
		addJoinError(diags, id, addrs, err)
		return
	}
	waitClaimSettled(cctx, cc)
}

// addJoinError explains a failed JoinCluster. agentd answers Unavailable
// both when it cannot be reached and when none of the gossip addresses
// could: the message tells them apart.
func addJoinError(diags *diag.Diagnostics, id string, addrs []string, err error) {
	msg := status.Convert(err).Message()
	switch {
	case noCluster(err):
		addNoClusterError(diags, id, err)
	case status.Code(err) == codes.Unavailable && strings.HasPrefix(msg, "join cluster:"):
		diags.AddAttributeError(path.Root("join"), "Cannot join the cluster",
			fmt.Sprintf("%s could not join the cluster through %s: %s\n\n"+
				"Check that these are members' --gossip-listen addresses, reachable from that node, and that its agentd "+
				"uses the cluster's --gossip-key.", nodeDescription(id), strings.Join(addrs, ", "), msg))
	default:
		addRPCError(diags, "join the cluster", id, err)
	}
}

// allAliveMembers reports whether every address is the gossip address of an
// alive member. Addresses that are not IP:port (host names) never match:
// the node is asked to join, which is harmless when it is a member.
func allAliveMembers(ms []*herdv1.Member, addrs []string) bool {
	alive := map[netip.AddrPort]bool{}
	for _, m := range ms {
		if ap, err := netip.ParseAddrPort(m.GetGossipAddress()); err == nil && m.GetState() == "alive" {
			alive[ap] = true
		}
	}
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || !alive[ap] {
			return false
		}
	}
	return true
}

// waitClaimSettled waits until no two alive members' pod CIDR claims
// overlap, unchanged for a second: a node that founded a cluster
// of its own claimed its block without knowing the other cluster's, and
// after joining the cluster re-assigns one of two colliding claims. It
// gives up quietly after settleTimeout: the next refresh shows what holds.
func waitClaimSettled(ctx context.Context, cc herdv1.ClusterServiceClient) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	var last string
	var since time.Time
	// The error is settleTimeout running out: giving up is the point.
	_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ms, err := listMembers(ctx, cc)
		claim, ok := claimsSettled(ms)
		switch {
		case err != nil || !ok:
			last = ""
		case claim != last:
			last, since = claim, time.Now()
		case time.Since(since) >= time.Second:
			return true, nil
		}
		return false, nil
	})
}

// claimsSettled reports whether the alive members' pod CIDR claims are
// all valid and pairwise distinct, with a fingerprint of them (a claim
// that changes restarts the wait).
func claimsSettled(ms []*herdv1.Member) (string, bool) {
	var claims []netip.Prefix
	var key []string
	for _, m := range ms {
		if m.GetState() != "alive" {
			continue
		}
		p, err := netip.ParsePrefix(m.GetPodCidr())
		if err != nil {
			return "", false
		}
		for _, q := range claims {
			if p.Overlaps(q) {
				return "", false
			}
		}
		claims = append(claims, p)
		key = append(key, m.GetName()+"="+p.String())
	}
	return strings.Join(key, ","), len(claims) > 0
}

// warnPodCIDRMoved warns when the cluster records another pod CIDR for the
// node than the one its pod network was built on: the cluster re-assigned
// the claim (a collision after a join) and agentd builds the pod network
// only when it starts, so the node's pods keep addresses that peers do not
// route to it.
func warnPodCIDRMoved(diags *diag.Diagnostics, id string, node *herdv1.Node, members types.List) {
	built := node.GetPodCidr()
	for _, m := range memberRecords(members) {
		if m["name"] != node.GetName() || built == "" || m["pod_cidr"] == "" || m["pod_cidr"] == built {
			continue
		}
		diags.AddWarning("Node's pod CIDR re-assigned by the cluster",
			fmt.Sprintf("The cluster records the pod CIDR %s for %s, but its pod network was built on %s. Pods on that "+
				"node keep addresses in %s, which other members do not route to it. Restart agentd on that node to "+
				"rebuild its pod network on %s.", m["pod_cidr"], nodeDescription(id), built, built, m["pod_cidr"]))
	}
}

// memberRecords reads a cluster_members value back into string maps.
func memberRecords(l types.List) []map[string]string {
	if l.IsNull() || l.IsUnknown() {
		return nil
	}
	var out []map[string]string
	for _, e := range l.Elements() {
		o, ok := e.(types.Object)
		if !ok {
			continue
		}
		rec := map[string]string{}
		for k, v := range o.Attributes() {
			if s, ok := v.(types.String); ok {
				rec[k] = s.ValueString()
			}
		}
		out = append(out, rec)
	}
	return out
}

// joinValidator checks `join`: at least one address, each host:port.
type joinValidator struct{}

func (joinValidator) Description(context.Context) string {
	return `must hold at least one gossip address "host:port"`
}

func (v joinValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (joinValidator) ValidateList(_ context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if len(req.ConfigValue.Elements()) == 0 {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid join",
			"join needs at least one gossip address of a member of the cluster to join; remove it to join nothing.")
		return
	}
	for i, e := range req.ConfigValue.Elements() {
		s, ok := e.(types.String)
		if !ok || s.IsUnknown() {
			continue
		}
		if s.IsNull() {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid gossip address", "a gossip address must not be null")
			continue
		}
		if err := validateGossipAddress(s.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid gossip address", err.Error())
		}
	}
}

// validateGossipAddress checks host:port with a port from 1 to 65535, as
// agentd does (IPv6 hosts in brackets).
func validateGossipAddress(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want host:port, e.g. 10.0.0.5:7946 or [fd00::5]:7946: %w", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q: the host is empty", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
	}
	return nil
}

// keepUnlessJoinChanges plans a computed attribute's prior value (as
// UseStateForUnknown does) unless `join` changes: joining a cluster changes
// the members a node sees, and may change its pod CIDR claim.
type keepUnlessJoinChanges struct{}

func (keepUnlessJoinChanges) Description(context.Context) string {
	return "the prior value is kept unless join changes"
}

func (m keepUnlessJoinChanges) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (keepUnlessJoinChanges) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if keepPrior(ctx, req.State, req.Plan, req.StateValue, req.PlanValue, &resp.Diagnostics) {
		resp.PlanValue = req.StateValue
	}
}

func (keepUnlessJoinChanges) PlanModifyList(ctx context.Context, req planmodifier.ListRequest, resp *planmodifier.ListResponse) {
	if keepPrior(ctx, req.State, req.Plan, req.StateValue, req.PlanValue, &resp.Diagnostics) {
		resp.PlanValue = req.StateValue
	}
}

// keepPrior: an update (prior state known, planned value unknown) that
// leaves join as it was.
func keepPrior(ctx context.Context, state tfsdk.State, plan tfsdk.Plan, prior, planned attr.Value, diags *diag.Diagnostics) bool {
	if prior.IsNull() || !planned.IsUnknown() || state.Raw.IsNull() || plan.Raw.IsNull() {
		return false
	}
	var before, after types.List
	diags.Append(state.GetAttribute(ctx, path.Root("join"), &before)...)
	diags.Append(plan.GetAttribute(ctx, path.Root("join"), &after)...)
	return !diags.HasError() && before.Equal(after)
}
