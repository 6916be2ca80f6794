package resources

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
)

var (
	_ datasource.DataSource              = (*nodeDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*nodeDataSource)(nil)
)

// NewNodeDataSource returns the herd_node data source.
func NewNodeDataSource() datasource.DataSource { return &nodeDataSource{} }

type nodeDataSource struct {
	dataSourceClients
}

type nodeDataModel struct {
	ID      types.String `tfsdk:"id"`
	Name    types.String `tfsdk:"name"`
	Address types.String `tfsdk:"address"`
	Labels  types.Map    `tfsdk:"labels"`
	nodeInfo
}

func (d *nodeDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_node"
}

func (d *nodeDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads what a node's agentd reports about the node: identity, capacity, readiness, labels, " +
			"pod range and the members of its cluster. " +
			"Unlike the `herd_node` resource, it fails when the node cannot be reached.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The node reference `NAME@ADDRESS` (the `id` of a `herd_node`), e.g. `node-a@10.0.0.5:7443` " +
					"or `node-a@unix:///run/herd/agentd.sock`.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"name":                     schema.StringAttribute{MarkdownDescription: "The node's name, as agentd reports it.", Computed: true},
			"address":                  schema.StringAttribute{MarkdownDescription: "The node's address, from `id`.", Computed: true},
			"labels":                   schema.MapAttribute{MarkdownDescription: "Labels of the node set through the API.", ElementType: types.StringType, Computed: true},
			"agent_version":            schema.StringAttribute{MarkdownDescription: descAgentVersion, Computed: true},
			"os":                       schema.StringAttribute{MarkdownDescription: descOS, Computed: true},
			"arch":                     schema.StringAttribute{MarkdownDescription: descArch, Computed: true},
			"kernel_version":           schema.StringAttribute{MarkdownDescription: descKernelVersion, Computed: true},
			"capacity_cpu_millis":      schema.Int64Attribute{MarkdownDescription: descCapCPU, Computed: true},
			"capacity_memory_bytes":    schema.Int64Attribute{MarkdownDescription: descCapMem, Computed: true},
			"allocatable_cpu_millis":   schema.Int64Attribute{MarkdownDescription: descAllocCPU, Computed: true},
			"allocatable_memory_bytes": schema.Int64Attribute{MarkdownDescription: descAllocMem, Computed: true},
			"ready":                    schema.BoolAttribute{MarkdownDescription: "Whether agentd reports the node ready to run pods.", Computed: true},
			"pod_cidr":                 schema.StringAttribute{MarkdownDescription: descPodCIDR, Computed: true},
			"cluster_members": schema.ListNestedAttribute{
				MarkdownDescription: descClusterMembers,
				Computed:            true,
				NestedObject:        schema.NestedAttributeObject{Attributes: memberDataAttributes()},
			},
		},
	}
}

// memberDataAttributes are the attributes of a cluster_members element.
func memberDataAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"name":           schema.StringAttribute{MarkdownDescription: descMemberName, Computed: true},
		"gossip_address": schema.StringAttribute{MarkdownDescription: descMemberGossip, Computed: true},
		"node_ip":        schema.StringAttribute{MarkdownDescription: descMemberNodeIP, Computed: true},
		"pod_cidr":       schema.StringAttribute{MarkdownDescription: descMemberPodCIDR, Computed: true},
		"state":          schema.StringAttribute{MarkdownDescription: descMemberState, Computed: true},
	}
}

func (d *nodeDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	cfg, ok := configuredModel[nodeDataModel](ctx, d.clients, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	id := cfg.ID.ValueString()
	name, addr, err := nodeid.Parse(id)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("id"), "Invalid node id", err.Error())
		return
	}
	nc, err := d.clients.NodeClient(id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", id, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, d.clients.DialTimeout()+10*time.Second)
	defer cancel()
	node, err := nc.GetNode(cctx, &herdv1.GetNodeRequest{})
	if err != nil {
		addRPCError(&resp.Diagnostics, "read the node", id, err)
		return
	}
	if node.GetName() != name {
		resp.Diagnostics.AddAttributeError(path.Root("id"), "Node name mismatch",
			fmt.Sprintf("The agentd at %s reports the node name %q, not %q.", addr, node.GetName(), name))
		return
	}
	members, err := readMembers(cctx, d.clients, id)
	if err != nil {
		addRPCError(&resp.Diagnostics, "list the cluster's members", id, err)
		return
	}
	cfg.Name = types.StringValue(name)
	cfg.Address = types.StringValue(addr)
	cfg.Labels = stringMapValue(node.GetLabels())
	cfg.nodeInfo = nodeInfoFrom(node, members)
	resp.Diagnostics.Append(resp.State.Set(ctx, &cfg)...)
}
