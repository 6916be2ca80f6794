package resources

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var (
	_ resource.Resource                = (*nodeResource)(nil)
	_ resource.ResourceWithConfigure   = (*nodeResource)(nil)
	_ resource.ResourceWithImportState = (*nodeResource)(nil)
)

// NewNodeResource returns the herd_node resource.
func NewNodeResource() resource.Resource { return &nodeResource{} }

type nodeResource struct {
	resourceClients
}

// nodeModel is the state of herd_node; nodeInfo holds the attributes the
// resource and the data source share.
type nodeModel struct {
	ID      types.String `tfsdk:"id"`
	Name    types.String `tfsdk:"name"`
	Address types.String `tfsdk:"address"`
	Labels  types.Map    `tfsdk:"labels"`
	Join    types.List   `tfsdk:"join"`
	nodeInfo
}

type nodeInfo struct {
	AgentVersion           types.String `tfsdk:"agent_version"`
	OS                     types.String `tfsdk:"os"`
	Arch                   types.String `tfsdk:"arch"`
	KernelVersion          types.String `tfsdk:"kernel_version"`
	CapacityCPUMillis      types.Int64  `tfsdk:"capacity_cpu_millis"`
	CapacityMemoryBytes    types.Int64  `tfsdk:"capacity_memory_bytes"`
	AllocatableCPUMillis   types.Int64  `tfsdk:"allocatable_cpu_millis"`
	AllocatableMemoryBytes types.Int64  `tfsdk:"allocatable_memory_bytes"`
	Ready                  types.Bool   `tfsdk:"ready"`
	PodCIDR                types.String `tfsdk:"pod_cidr"`
	ClusterMembers         types.List   `tfsdk:"cluster_members"`
}

// nodeInfoFrom renders what the node reports about itself and the members
// of its cluster (see readMembers).
func nodeInfoFrom(n *herdv1.Node, members types.List) nodeInfo {
	return nodeInfo{
		AgentVersion:           types.StringValue(n.GetAgentVersion()),
		OS:                     types.StringValue(n.GetOs()),
		Arch:                   types.StringValue(n.GetArch()),
		KernelVersion:          types.StringValue(n.GetKernelVersion()),
		CapacityCPUMillis:      types.Int64Value(n.GetCapacity().GetCpuMillis()),
		CapacityMemoryBytes:    types.Int64Value(n.GetCapacity().GetMemoryBytes()),
		AllocatableCPUMillis:   types.Int64Value(n.GetAllocatable().GetCpuMillis()),
		AllocatableMemoryBytes: types.Int64Value(n.GetAllocatable().GetMemoryBytes()),
		Ready:                  types.BoolValue(n.GetReady()),
		PodCIDR:                types.StringValue(n.GetPodCidr()),
		ClusterMembers:         members,
	}
}

// Descriptions shared by the resource and the data source.
const (
	descAgentVersion  = "Version of the node's agentd."
	descOS            = "Operating system of the node, as Go names it (`linux`)."
	descArch          = "CPU architecture of the node, as Go names it (`amd64`, `arm64`)."
	descKernelVersion = "Kernel release of the node."
	descCapCPU        = "CPU capacity of the node in millicores (1000 = one CPU)."
	descCapMem        = "Memory capacity of the node in bytes."
	descAllocCPU      = "CPU available to pods in millicores: the capacity less what agentd reserves for the system."
	descAllocMem      = "Memory available to pods in bytes: the capacity less what agentd reserves for the system."
	descReady         = "Whether agentd reports the node ready to run pods. The resource sets it to `false` (and keeps the other " +
		"attributes) when the node cannot be reached during a refresh."
)

func (r *nodeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_node"
}

func (r *nodeResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	useState := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	useStateInt := []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Adopts a machine that runs herd's node daemon, `agentd`, so that pods can be placed on it.\n\n" +
			"Creating a `herd_node` does not install or start anything: it connects to the running agentd, checks that it is " +
			"the node named `name`, and sets the node's `labels`. Destroying it clears those labels; herd never stops a " +
			"node's agentd. Use the `id` (`NAME@ADDRESS`) as the `node` of a `herd_pod`.\n\n" +
			"With `join`, the node joins the cluster of the given gossip addresses; `pod_cidr` and `cluster_members` show " +
			"the node's pod range and the members of its cluster as the node sees them.\n\n" +
			"A node at a TCP address is reached over mutual TLS and must present a certificate issued by the provider's " +
			"`ca_cert` for the node's name. A refresh that cannot reach the node warns, keeps the last known attributes " +
			"and sets `ready` to `false`.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The node reference `NAME@ADDRESS`, used as the `node` of pods. Import a node with this id.",
				Computed:            true,
				PlanModifiers:       useState,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The node's name: a lowercase RFC 1123 label (at most 63 characters of `a-z`, `0-9` and `-`). " +
					"It must equal the name agentd reports, and for TCP addresses the node's TLS certificate must carry it. " +
					"Changing it replaces the resource.",
				Required:      true,
				Validators:    []validator.String{nameValidator("node name")},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"address": schema.StringAttribute{
				MarkdownDescription: "Where agentd listens: `host:port` (gRPC over mutual TLS, e.g. `10.0.0.5:7443` or `[fd00::5]:7443`) " +
					"or `unix:///path/to/agentd.sock` (a local socket, no TLS). Changing it replaces the resource.",
				Required:      true,
				Validators:    []validator.String{addressValidator()},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"labels": schema.MapAttribute{
				MarkdownDescription: "Labels of the node set through the API (keys and values follow the Kubernetes label syntax). " +
					"Changed in place. When unset, the node's API labels are cleared.",
				ElementType: types.StringType,
				Optional:    true,
				Validators:  []validator.Map{labelsValidator{}},
			},
			"join": schema.ListAttribute{
				MarkdownDescription: descJoin,
				ElementType:         types.StringType,
				Optional:            true,
				Validators:          []validator.List{joinValidator{}},
			},
			"pod_cidr": schema.StringAttribute{
				MarkdownDescription: descPodCIDR,
				Computed:            true,
				PlanModifiers:       []planmodifier.String{keepUnlessJoinChanges{}},
			},
			"cluster_members": schema.ListNestedAttribute{
				MarkdownDescription: descClusterMembers,
				Computed:            true,
				PlanModifiers:       []planmodifier.List{keepUnlessJoinChanges{}},
				NestedObject:        schema.NestedAttributeObject{Attributes: memberAttributes()},
			},
			"agent_version":            schema.StringAttribute{MarkdownDescription: descAgentVersion, Computed: true, PlanModifiers: useState},
			"os":                       schema.StringAttribute{MarkdownDescription: descOS, Computed: true, PlanModifiers: useState},
			"arch":                     schema.StringAttribute{MarkdownDescription: descArch, Computed: true, PlanModifiers: useState},
			"kernel_version":           schema.StringAttribute{MarkdownDescription: descKernelVersion, Computed: true, PlanModifiers: useState},
			"capacity_cpu_millis":      schema.Int64Attribute{MarkdownDescription: descCapCPU, Computed: true, PlanModifiers: useStateInt},
			"capacity_memory_bytes":    schema.Int64Attribute{MarkdownDescription: descCapMem, Computed: true, PlanModifiers: useStateInt},
			"allocatable_cpu_millis":   schema.Int64Attribute{MarkdownDescription: descAllocCPU, Computed: true},
			"allocatable_memory_bytes": schema.Int64Attribute{MarkdownDescription: descAllocMem, Computed: true},
			"ready":                    schema.BoolAttribute{MarkdownDescription: descReady, Computed: true},
		},
	}
}

// memberAttributes are the attributes of a cluster_members element.
func memberAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"name":           schema.StringAttribute{MarkdownDescription: descMemberName, Computed: true},
		"gossip_address": schema.StringAttribute{MarkdownDescription: descMemberGossip, Computed: true},
		"node_ip":        schema.StringAttribute{MarkdownDescription: descMemberNodeIP, Computed: true},
		"pod_cidr":       schema.StringAttribute{MarkdownDescription: descMemberPodCIDR, Computed: true},
		"state":          schema.StringAttribute{MarkdownDescription: descMemberState, Computed: true},
	}
}

// nodeLabels returns the labels to set: the configured ones, or none.
func nodeLabels(m types.Map) map[string]string {
	if l := stringMap(m); l != nil {
		return l
	}
	return map[string]string{}
}

// ensureNodeLabels sets the node's labels to want unless current (the node
// as just read; nil: unknown) already has them: setting labels is for
// admins only, so a provider with another role may still manage a node
// whose labels it does not change.
func ensureNodeLabels(ctx context.Context, nc herdv1.NodeServiceClient, current *herdv1.Node, want map[string]string) (*herdv1.Node, error) {
	if current != nil && maps.Equal(current.GetLabels(), want) {
		return current, nil
	}
	return nc.SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: want})
}

func (r *nodeResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[nodeModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	setIdentity(ctx, resp.Identity, nodeIdentityModel{Name: plan.Name, Address: plan.Address}, &resp.Diagnostics)
	name, addr := plan.Name.ValueString(), plan.Address.ValueString()
	id := nodeid.Format(name, addr)
	nc, err := r.clients.NodeClient(id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", id, err)
		return
	}

	hc, err := r.clients.HealthClient(id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", id, err)
		return
	}

	// The node may still be starting (created in the same apply): ask its
	// standard health service until agentd answers, for up to dial_timeout.
	// Any answer will do: a node whose containerd is down is adopted with
	// ready = false and the reason, as GetNode reports it.
	// Each attempt gets a whole dial_timeout of ctx, the retries together
	// too; when they run out, err is the last attempt's.
	_ = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, r.clients.DialTimeout(), true, func(context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout())
		defer cancel()
		_, err = hc.Check(cctx, &healthpb.HealthCheckRequest{})
		return err == nil || !isUnreachable(err), nil
	})
	if err != nil && isUnreachable(err) {
		addRPCError(&resp.Diagnostics, "read the node", id, err)
		return
	}
	gctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout())
	node, err := nc.GetNode(gctx, &herdv1.GetNodeRequest{})
	cancel()
	if err != nil {
		addRPCError(&resp.Diagnostics, "read the node", id, err)
		return
	}
	if node.GetName() != name {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "Node name mismatch",
			fmt.Sprintf("The agentd at %s reports the node name %q, not %q. Set name = %q, or fix the address.",
				addr, node.GetName(), name, node.GetName()))
		return
	}
	// Join first: a node that cannot join is not adopted, and its labels
	// stay as they were.
	if !plan.Join.IsNull() {
		joinCluster(ctx, r.clients, id, stringList(plan.Join), &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	node, err = ensureNodeLabels(ctx, nc, node, nodeLabels(plan.Labels))
	if err != nil {
		addRPCError(&resp.Diagnostics, "set the node's labels", id, err)
		return
	}
	members, err := readMembers(ctx, r.clients, id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "list the cluster's members", id, err)
		return
	}
	warnPodCIDRMoved(&resp.Diagnostics, id, node, members)
	plan.ID = types.StringValue(id)
	plan.nodeInfo = nodeInfoFrom(node, members)
	// Keep the planned labels as written: agentd echoes what was set.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *nodeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[nodeModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, nodeIdentityModel{Name: state.Name, Address: state.Address}, &resp.Diagnostics)
	id := nodeid.Format(state.Name.ValueString(), state.Address.ValueString())
	// Never read successfully (an import): failing is better than
	// inventing a state.
	neverRead := state.AgentVersion.IsNull()

	nc, err := r.clients.NodeClient(id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", id, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+10*time.Second)
	defer cancel()
	node, err := nc.GetNode(cctx, &herdv1.GetNodeRequest{})
	if err != nil {
		if isUnreachable(err) && !neverRead {
			_, detail := describeRPCError("read the node", id, err)
			resp.Diagnostics.AddWarning("Node unreachable; keeping its last known state",
				detail+"\n\nThe node's attributes are those of the last successful refresh, with ready = false.")
			state.Ready = types.BoolValue(false)
			resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
			return
		}
		addRPCError(&resp.Diagnostics, "read the node", id, err)
		return
	}
	if node.GetName() != state.Name.ValueString() {
		msg := fmt.Sprintf("The agentd at %s now reports the node name %q, not %q.", state.Address.ValueString(), node.GetName(), state.Name.ValueString())
		if neverRead {
			resp.Diagnostics.AddError("Node name mismatch", msg+" Import it as "+nodeid.Format(node.GetName(), state.Address.ValueString())+".")
			return
		}
		resp.Diagnostics.AddWarning("Node name mismatch; keeping its last known state", msg+" The node's attributes are those of the last successful refresh, with ready = false.")
		state.Ready = types.BoolValue(false)
		resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
		return
	}
	members, err := readMembers(cctx, r.clients, id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "list the cluster's members", id, err)
		return
	}
	warnPodCIDRMoved(&resp.Diagnostics, id, node, members)
	state.ID = types.StringValue(id)
	state.Labels = mapFromRemote(node.GetLabels(), state.Labels)
	state.nodeInfo = nodeInfoFrom(node, members)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *nodeResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan, prior nodeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	fillIdentity(ctx, resp.Identity, nodeIdentityModel{Name: plan.Name, Address: plan.Address}, &resp.Diagnostics)
	id := nodeid.Format(plan.Name.ValueString(), plan.Address.ValueString())
	nc, err := r.clients.NodeClient(id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", id, err)
		return
	}
	// Only a changed join asks the node to join; a removed one does
	// nothing (herd does not offer leaving a cluster).
	if !plan.Join.IsNull() && !plan.Join.Equal(prior.Join) {
		joinCluster(ctx, r.clients, id, stringList(plan.Join), &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	var current *herdv1.Node
	if plan.Labels.Equal(prior.Labels) {
		// Unchanged labels need only a read, which a non-admin may do.
		if current, err = nc.GetNode(ctx, &herdv1.GetNodeRequest{}); err != nil {
			addRPCError(&resp.Diagnostics, "read the node", id, err)
			return
		}
	}
	node, err := ensureNodeLabels(ctx, nc, current, nodeLabels(plan.Labels))
	if err != nil {
		addRPCError(&resp.Diagnostics, "set the node's labels", id, err)
		return
	}
	members, err := readMembers(ctx, r.clients, id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "list the cluster's members", id, err)
		return
	}
	warnPodCIDRMoved(&resp.Diagnostics, id, node, members)
	got := nodeInfoFrom(node, members)
	// Attributes planned from the prior state (UseStateForUnknown) must be
	// applied as planned; the next refresh picks up any change.
	keep := plan.nodeInfo
	plan.nodeInfo = got
	keepString(&plan.AgentVersion, keep.AgentVersion)
	keepString(&plan.OS, keep.OS)
	keepString(&plan.Arch, keep.Arch)
	keepString(&plan.KernelVersion, keep.KernelVersion)
	keepInt64(&plan.CapacityCPUMillis, keep.CapacityCPUMillis)
	keepInt64(&plan.CapacityMemoryBytes, keep.CapacityMemoryBytes)
	keepString(&plan.PodCIDR, keep.PodCIDR)
	keepList(&plan.ClusterMembers, keep.ClusterMembers)
	plan.ID = types.StringValue(id)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func keepString(dst *types.String, planned types.String) {
	if !planned.IsUnknown() {
		*dst = planned
	}
}

func keepInt64(dst *types.Int64, planned types.Int64) {
	if !planned.IsUnknown() {
		*dst = planned
	}
}

func keepList(dst *types.List, planned types.List) {
	if !planned.IsUnknown() {
		*dst = planned
	}
}

func (r *nodeResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[nodeModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	// herd never stops a node's agentd: forgetting the node only clears the
	// labels set through the API, and only as far as the node can be
	// reached.
	id := nodeid.Format(state.Name.ValueString(), state.Address.ValueString())
	if len(stringMap(state.Labels)) == 0 {
		return // nothing set through the API to clear
	}
	nc, err := r.clients.NodeClient(id)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+10*time.Second)
		defer cancel()
		_, err = nc.SetNodeLabels(cctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{}})
	}
	if err != nil {
		_, detail := describeRPCError("clear the node's labels", id, err)
		resp.Diagnostics.AddWarning("Could not clear the node's labels", detail+"\n\nThe node was removed from the state anyway.")
	}
}

// ImportState takes the id NAME@ADDRESS or the identity {name, address}.
func (r *nodeResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	var ident nodeIdentityModel
	id := req.ID
	if importIdentity(ctx, req, &ident, &resp.Diagnostics) {
		if resp.Diagnostics.HasError() {
			return
		}
		id = nodeid.Format(ident.Name.ValueString(), ident.Address.ValueString())
	}
	name, addr, err := nodeid.Parse(id)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+"\n\nImport a node with its id NAME@ADDRESS, e.g. node-a@10.0.0.5:7443, "+
			"or its identity { name = \"node-a\", address = \"10.0.0.5:7443\" }.")
		return
	}
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{"id": id, "name": name, "address": addr})
	setIdentity(ctx, resp.Identity, nodeIdentityModel{Name: types.StringValue(name), Address: types.StringValue(addr)}, &resp.Diagnostics)
}

// setAttrs sets top-level string attributes of a state.
func setAttrs(ctx context.Context, st interface {
	SetAttribute(context.Context, path.Path, any) diag.Diagnostics
}, diags *diag.Diagnostics, attrs map[string]string) {
	for _, k := range sortedKeys(attrs) {
		diags.Append(st.SetAttribute(ctx, path.Root(k), attrs[k])...)
	}
}
