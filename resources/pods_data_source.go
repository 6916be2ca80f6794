package resources

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ datasource.DataSource              = (*podsDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*podsDataSource)(nil)
)

// NewPodsDataSource returns the herd_pods data source.
func NewPodsDataSource() datasource.DataSource { return &podsDataSource{} }

type podsDataSource struct {
	dataSourceClients
}

type podsDataModel struct {
	Node      types.String `tfsdk:"node"`
	Namespace types.String `tfsdk:"namespace"`
	Labels    types.Map    `tfsdk:"labels"`
	Pods      types.List   `tfsdk:"pods"`
}

var podSummaryContainerAttrTypes = map[string]attr.Type{
	"name":  types.StringType,
	"image": types.StringType,
}

var podSummaryAttrTypes = map[string]attr.Type{
	"name":          types.StringType,
	"namespace":     types.StringType,
	"uid":           types.StringType,
	"phase":         types.StringType,
	"labels":        types.MapType{ElemType: types.StringType},
	"restart_count": types.Int64Type,
	"start_time":    types.StringType,
	"pod_ip":        types.StringType,
	"containers":    types.ListType{ElemType: types.ObjectType{AttrTypes: podSummaryContainerAttrTypes}},
}

func (d *podsDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_pods"
}

func (d *podsDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists the pods of one node, optionally only those whose labels match, sorted by name. " +
			"It lists every pod the node runs, whether Terraform manages it or not.",
		Attributes: map[string]schema.Attribute{
			"node": schema.StringAttribute{
				MarkdownDescription: "The node to list: the `id` of a `herd_node` (`NAME@ADDRESS`).",
				Required:            true,
				Validators:          []validator.String{nodeIDValidator()},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "Only list pods of this namespace. Unset: every namespace, which a certificate " +
					"limited to some namespaces may not ask.",
				Optional:   true,
				Validators: []validator.String{nameValidator("namespace")},
			},
			"labels": schema.MapAttribute{
				MarkdownDescription: "Only list pods that carry all of these labels with these values.",
				ElementType:         types.StringType,
				Optional:            true,
				Validators:          []validator.Map{labelsValidator{}},
			},
			"pods": schema.ListNestedAttribute{
				MarkdownDescription: "The matching pods, sorted by name.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name":          schema.StringAttribute{MarkdownDescription: "The pod's name.", Computed: true},
						"namespace":     schema.StringAttribute{MarkdownDescription: "The pod's namespace.", Computed: true},
						"uid":           schema.StringAttribute{MarkdownDescription: "Unique id of this incarnation of the pod.", Computed: true},
						"phase":         schema.StringAttribute{MarkdownDescription: "`Pending`, `Running`, `Succeeded` or `Failed`.", Computed: true},
						"labels":        schema.MapAttribute{MarkdownDescription: "The pod's labels.", ElementType: types.StringType, Computed: true},
						"restart_count": schema.Int64Attribute{MarkdownDescription: "Total number of container restarts.", Computed: true},
						"start_time":    schema.StringAttribute{MarkdownDescription: "When the pod started (RFC 3339); null if it has not.", Computed: true},
						"pod_ip": schema.StringAttribute{
							MarkdownDescription: "The pod's IP address in its node's pod network; empty (`\"\"`) when the node runs " +
								"pods without a pod network.",
							Computed: true,
						},
						"containers": schema.ListNestedAttribute{
							MarkdownDescription: "The pod's containers.",
							Computed:            true,
							NestedObject: schema.NestedAttributeObject{
								Attributes: map[string]schema.Attribute{
									"name":  schema.StringAttribute{MarkdownDescription: "Container name.", Computed: true},
									"image": schema.StringAttribute{MarkdownDescription: "Image reference, as declared.", Computed: true},
								},
							},
						},
					},
				},
			},
		},
	}
}

func (d *podsDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	cfg, ok := configuredModel[podsDataModel](ctx, d.clients, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := cfg.Node.ValueString()
	pc, err := d.clients.PodClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, d.clients.DialTimeout()+30*time.Second)
	defer cancel()
	list, err := pc.ListPods(cctx, &herdv1.ListPodsRequest{LabelSelector: stringMap(cfg.Labels), Namespace: cfg.Namespace.ValueString()})
	if err != nil {
		addRPCError(&resp.Diagnostics, "list pods", nodeID, err)
		return
	}
	byName := map[string]*herdv1.Pod{}
	for _, p := range list.GetPods() {
		byName[p.GetSpec().GetName()] = p
	}
	containerType := types.ObjectType{AttrTypes: podSummaryContainerAttrTypes}
	elems := make([]attr.Value, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		p := byName[name]
		var restarts int64
		for _, cs := range p.GetStatus().GetContainers() {
			restarts += int64(cs.GetRestartCount())
		}
		cs := make([]attr.Value, 0, len(p.GetSpec().GetContainers()))
		for _, c := range p.GetSpec().GetContainers() {
			cs = append(cs, types.ObjectValueMust(podSummaryContainerAttrTypes, map[string]attr.Value{
				"name":  types.StringValue(c.GetName()),
				"image": types.StringValue(c.GetImage()),
			}))
		}
		elems = append(elems, types.ObjectValueMust(podSummaryAttrTypes, map[string]attr.Value{
			"name":          types.StringValue(name),
			"namespace":     types.StringValue(spec.PodNamespace(p.GetSpec())),
			"uid":           types.StringValue(p.GetUid()),
			"phase":         types.StringValue(p.GetStatus().GetPhase()),
			"labels":        stringMapValue(p.GetSpec().GetLabels()),
			"restart_count": types.Int64Value(restarts),
			"start_time":    timeString(p.GetStatus().GetStartTime()),
			"pod_ip":        types.StringValue(p.GetStatus().GetPodIp()),
			"containers":    types.ListValueMust(containerType, cs),
		}))
	}
	cfg.Pods = types.ListValueMust(types.ObjectType{AttrTypes: podSummaryAttrTypes}, elems)
	resp.Diagnostics.Append(resp.State.Set(ctx, &cfg)...)
}
