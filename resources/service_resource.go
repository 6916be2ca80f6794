package resources

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ resource.Resource                   = (*serviceResource)(nil)
	_ resource.ResourceWithConfigure      = (*serviceResource)(nil)
	_ resource.ResourceWithImportState    = (*serviceResource)(nil)
	_ resource.ResourceWithValidateConfig = (*serviceResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*serviceResource)(nil)
)

// Default timeouts of herd_service: creating and updating include waiting
// until every live member holds the new version.
const (
	defaultServiceWriteTimeout  = 2 * time.Minute
	defaultServiceDeleteTimeout = time.Minute
	servicePollInterval         = 250 * time.Millisecond
)

// NewServiceResource returns the herd_service resource.
func NewServiceResource() resource.Resource { return &serviceResource{} }

type serviceResource struct {
	clients Clients
}

// serviceModel is the state of herd_service.
type serviceModel struct {
	ID              types.String   `tfsdk:"id"`
	Node            types.String   `tfsdk:"node"`
	Namespace       types.String   `tfsdk:"namespace"`
	Name            types.String   `tfsdk:"name"`
	Type            types.String   `tfsdk:"type"`
	Selector        types.Map      `tfsdk:"selector"`
	SessionAffinity types.String   `tfsdk:"session_affinity"`
	Ports           types.List     `tfsdk:"port"`
	Timeouts        timeouts.Value `tfsdk:"timeouts"`
	ClusterIP       types.String   `tfsdk:"cluster_ip"`
	DNSName         types.String   `tfsdk:"dns_name"`
	UID             types.String   `tfsdk:"uid"`
	Version         types.Int64    `tfsdk:"version"`
	Endpoints       types.List     `tfsdk:"endpoints"`
	Synced          types.Bool     `tfsdk:"synced"`
}

// servicePortModel is one port block.
type servicePortModel struct {
	Name           types.String `tfsdk:"name"`
	Protocol       types.String `tfsdk:"protocol"`
	Port           types.Int64  `tfsdk:"port"`
	TargetPort     types.Int64  `tfsdk:"target_port"`
	TargetPortName types.String `tfsdk:"target_port_name"`
	NodePort       types.Int64  `tfsdk:"node_port"`
}

var servicePortAttrTypes = map[string]attr.Type{
	"name":             types.StringType,
	"protocol":         types.StringType,
	"port":             types.Int64Type,
	"target_port":      types.Int64Type,
	"target_port_name": types.StringType,
	"node_port":        types.Int64Type,
}

var servicePortObjectType = types.ObjectType{AttrTypes: servicePortAttrTypes}

var endpointAttrTypes = map[string]attr.Type{
	"node":  types.StringType,
	"pod":   types.StringType,
	"ip":    types.StringType,
	"ready": types.BoolType,
}

var endpointObjectType = types.ObjectType{AttrTypes: endpointAttrTypes}

func (r *serviceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_service"
}

func (r *serviceResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A service: a stable virtual IP (`cluster_ip`) and DNS name in front of the pods its `selector` " +
			"matches, on every node of a herd cluster.\n\n" +
			"Services are cluster-scoped: they are written through any member (`node`), replicated to every member and " +
			"programmed into every member's data plane. The agentd must run in a cluster (`--cluster-cidr`, " +
			"`--gossip-listen`, `--gossip-key`); a single node that joins nobody is a one-node cluster.\n\n" +
			"The selector, ports and session affinity change in place (the cluster IP and node ports are kept); the " +
			"namespace, name and type force a replacement. A service deleted behind Terraform's back shows up as a " +
			"creation in the next plan; a service some live member does not hold in its current version yet " +
			"(`synced = false`) shows up as an in-place update that writes it again.\n\n" +
			"Invalid input is refused at plan time, with the path of the offending attribute.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`NAMESPACE/NAME`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The member to write and read the service through: the `id` of a `herd_node` " +
					"(`NAME@ADDRESS`). Any member serves the cluster's services, so changing it does not replace the service.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The service's namespace, a lowercase RFC 1123 label; default `default`. Changing it " +
					"replaces the service.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.DefaultNamespace),
				PlanModifiers: replaceString,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The service's name, unique in its namespace: a lowercase RFC 1123 label. Changing it " +
					"replaces the service.",
				Required:      true,
				PlanModifiers: replaceString,
			},
			"type": schema.StringAttribute{
				MarkdownDescription: "`ClusterIP` (the default: a virtual IP reachable from every node and pod), `NodePort` " +
					"(also a port on every node's address) or `Headless` (no virtual IP: the DNS name resolves to the ready " +
					"pods' IPs). Changing it replaces the service.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.ServiceTypeClusterIP),
				PlanModifiers: replaceString,
			},
			"selector": schema.MapAttribute{
				MarkdownDescription: "The service's endpoints are the pods whose labels include all of these (label syntax " +
					"as for `herd_pod`). Required and not empty, for every type: herd has no manual endpoints. Changes in place.",
				ElementType: types.StringType,
				Required:    true,
			},
			"session_affinity": schema.StringAttribute{
				MarkdownDescription: "`None` (the default) or `ClientIP`: all connections of a client go to the same pod. " +
					"Not for `Headless` services. Changes in place.",
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(spec.SessionAffinityNone),
			},
			"cluster_ip": schema.StringAttribute{
				MarkdownDescription: "The service's virtual IP, from agentd's `--service-cidr`; stable for the service's " +
					"life. Empty (`\"\"`) for `Headless` services.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"dns_name": schema.StringAttribute{
				MarkdownDescription: "`NAME.NAMESPACE.svc.` and the cluster domain, e.g. `web.default.svc.cluster.local`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the service: a service recreated under the same " +
					"name gets a new one.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "Version of the service's current specification; every change raises it.",
				Computed:            true,
			},
			"synced": schema.BoolAttribute{
				MarkdownDescription: "Every live member of the cluster holds the current version, as `node` sees it. " +
					"When a refresh finds `false`, the plan updates the service in place (`synced: false -> true`), " +
					"which writes it again with a new version and so replicates it again.",
				Computed: true,
			},
			"endpoints": schema.ListNestedAttribute{
				MarkdownDescription: "The pods the selector matches, ready or not, as `node` sees them at the last refresh.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"node":  schema.StringAttribute{MarkdownDescription: "The node that runs the pod.", Computed: true},
						"pod":   schema.StringAttribute{MarkdownDescription: "The pod's name.", Computed: true},
						"ip":    schema.StringAttribute{MarkdownDescription: "The pod's IP.", Computed: true},
						"ready": schema.BoolAttribute{MarkdownDescription: "The pod is ready: traffic goes to it.", Computed: true},
					},
				},
			},
		},
		Blocks: map[string]schema.Block{
			"port":     servicePortBlock(),
			"timeouts": serviceTimeoutsBlock(ctx),
		},
	}
}

// servicePortBlock is the port block. Its values are checked by agentd's
// validation (ValidateConfig), not by framework validators, so that each
// problem is reported once.
func servicePortBlock() schema.Block {
	return schema.ListNestedBlock{
		MarkdownDescription: fmt.Sprintf("A port of the service; at least one, at most %d. Ports change in place.",
			spec.MaxServicePorts),
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"name": schema.StringAttribute{
					MarkdownDescription: "Name of the port, unique in the service and required when it has more than one " +
						"port: at most 15 characters of `a-z`, `0-9` and `-`, with at least one letter, not starting or " +
						"ending with `-` and without `--` (an IANA service name). Named ports get DNS SRV records.",
					Optional: true,
				},
				"protocol": schema.StringAttribute{
					MarkdownDescription: fmt.Sprintf("`%s` (the default) or `%s`.", spec.ProtocolTCP, spec.ProtocolUDP),
					Optional:            true,
					Computed:            true,
					Default:             stringdefault.StaticString(spec.ProtocolTCP),
				},
				"port": schema.Int64Attribute{
					MarkdownDescription: "The port on the cluster IP, 1 to 65535; unique per protocol in the service.",
					Required:            true,
				},
				"target_port": schema.Int64Attribute{
					MarkdownDescription: "The port on the pods, 1 to 65535. Defaults to `port` unless `target_port_name` is set " +
						"(then it is null).",
					Optional:      true,
					Computed:      true,
					PlanModifiers: []planmodifier.Int64{targetPortModifier{}},
				},
				"target_port_name": schema.StringAttribute{
					MarkdownDescription: "The name of a container port of the pods (see `herd_pod`'s `port` blocks), instead " +
						"of `target_port`.",
					Optional: true,
				},
				"node_port": schema.Int64Attribute{
					MarkdownDescription: fmt.Sprintf("`NodePort` services only: the port on every node's address, %d to %d, "+
						"unique per protocol in the cluster. Unset: agentd allocates one, which is kept as long as the "+
						"service stays a `NodePort` service. 0 for the other types.", spec.NodePortMin, spec.NodePortMax),
					Optional:      true,
					Computed:      true,
					PlanModifiers: []planmodifier.Int64{nodePortModifier{}},
				},
			},
		},
	}
}

func serviceTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Update: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long creating the service may take, including waiting until every live "+
			"member holds it (a Go duration; default `\"%s\"`).", shortDuration(defaultServiceWriteTimeout)),
		UpdateDescription: fmt.Sprintf("The same for an update (default `\"%s\"`).", shortDuration(defaultServiceWriteTimeout)),
		DeleteDescription: fmt.Sprintf("How long deleting the service may take (default `\"%s\"`).",
			shortDuration(defaultServiceDeleteTimeout)),
	}, "Time limits of the operations on this service. Changing them does not replace it.")
}

// targetPortModifier plans the effective target port when the
// configuration leaves it unset: the port itself, or null when the
// target is a container port's name (what agentd's defaulting does).
type targetPortModifier struct{}

func (targetPortModifier) Description(context.Context) string {
	return "defaults to port unless target_port_name is set"
}

func (m targetPortModifier) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (targetPortModifier) PlanModifyInt64(ctx context.Context, req planmodifier.Int64Request, resp *planmodifier.Int64Response) {
	if !req.ConfigValue.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	parent := req.Path.ParentPath()
	var name types.String
	var port types.Int64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, parent.AtName("target_port_name"), &name)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, parent.AtName("port"), &port)...)
	switch {
	case resp.Diagnostics.HasError():
	case name.IsUnknown() || port.IsUnknown():
		resp.PlanValue = types.Int64Unknown()
	case name.ValueString() != "":
		resp.PlanValue = types.Int64Null()
	default:
		resp.PlanValue = port
	}
}

// nodePortModifier plans node ports the configuration leaves unset: 0 for
// types other than NodePort; for a NodePort service that was one already,
// the node port the same port had, matched as agentd matches them (same
// protocol and name, else same protocol and number), unless another port
// asks for it; otherwise unknown (agentd allocates one). Update sends the
// planned node ports to agentd, so the plan is what the service gets.
type nodePortModifier struct{}

func (nodePortModifier) Description(context.Context) string {
	return "keeps an allocated node port while the service stays a NodePort service"
}

func (m nodePortModifier) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (nodePortModifier) PlanModifyInt64(ctx context.Context, req planmodifier.Int64Request, resp *planmodifier.Int64Response) {
	if !req.ConfigValue.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var typ types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("type"), &typ)...)
	if resp.Diagnostics.HasError() || typ.IsUnknown() {
		return
	}
	if typ.ValueString() != spec.ServiceTypeNodePort {
		resp.PlanValue = types.Int64Value(0)
		return
	}
	resp.PlanValue = types.Int64Unknown()
	if req.State.Raw.IsNull() {
		return
	}
	var stateType types.String
	var planned servicePortModel
	var prior, configured []servicePortModel
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("type"), &stateType)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, req.Path.ParentPath(), &planned)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("port"), &prior)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("port"), &configured)...)
	if resp.Diagnostics.HasError() || stateType.ValueString() != spec.ServiceTypeNodePort {
		return
	}
	if np := previousNodePort(planned, prior); np != 0 && !nodePortRequested(configured, planned.Protocol, np) {
		resp.PlanValue = types.Int64Value(np)
	}
}

// previousNodePort is the node port the state gives the planned port.
func previousNodePort(planned servicePortModel, prior []servicePortModel) int64 {
	if planned.Protocol.IsUnknown() {
		return 0
	}
	if n := planned.Name; !n.IsUnknown() && n.ValueString() != "" {
		for _, p := range prior {
			if p.Protocol.Equal(planned.Protocol) && p.Name.Equal(n) {
				return p.NodePort.ValueInt64()
			}
		}
	}
	if planned.Port.IsUnknown() {
		return 0
	}
	for _, p := range prior {
		if p.Protocol.Equal(planned.Protocol) && p.Port.Equal(planned.Port) {
			return p.NodePort.ValueInt64()
		}
	}
	return 0
}

// nodePortRequested reports whether the configuration asks for np/protocol
// on some port (the configuration's protocol is null for the default TCP).
func nodePortRequested(configured []servicePortModel, protocol types.String, np int64) bool {
	for _, c := range configured {
		proto := c.Protocol.ValueString()
		if c.Protocol.IsNull() {
			proto = spec.ProtocolTCP
		}
		if c.NodePort.ValueInt64() == np && proto == protocol.ValueString() {
			return true
		}
	}
	return false
}

func (r *serviceResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFromProviderData(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig runs agentd's own service validation on the
// configuration, so bad input is refused at plan time at the attribute
// that holds it. Values not known yet are skipped.
func (r *serviceResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg serviceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	conv, diags := serviceSpecFromModel(ctx, cfg, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	addServiceFieldErrors(&resp.Diagnostics, conv.validate())
}

// ModifyPlan plans the repair of a service that some live member lacks:
// synced false in the state becomes true in the plan, an in-place update
// that writes the service again. Its version and endpoints will change.
func (r *serviceResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || req.State.Raw.IsNull() {
		return
	}
	var synced types.Bool
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("synced"), &synced)...)
	if resp.Diagnostics.HasError() || synced.IsNull() || synced.IsUnknown() || synced.ValueBool() {
		return
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("synced"), types.BoolValue(true))...)
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("version"), types.Int64Unknown())...)
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("endpoints"), types.ListUnknown(endpointObjectType))...)
}

func (r *serviceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan serviceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultServiceWriteTimeout)
	resp.Diagnostics.Append(diags...)
	sc, s, ok := r.prepare(ctx, plan, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := plan.Node.ValueString()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// ApplyService would quietly take over a service of the same name
	// (someone else's, or one managed elsewhere): refuse, and say how to
	// adopt it instead.
	_, err := sc.GetService(cctx, &herdv1.GetServiceRequest{Namespace: s.GetNamespace(), Name: s.GetName()})
	if err == nil {
		resp.Diagnostics.AddError("Service already exists",
			fmt.Sprintf("The cluster of %s already has a service %s/%s. Choose another name, delete it, or import it with "+
				"the id %q.", nodeDescription(nodeID), s.GetNamespace(), s.GetName(), serviceImportID(s.GetNamespace(), s.GetName(), nodeID)))
		return
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("look up service %s/%s", s.GetNamespace(), s.GetName()), nodeID, err)
		return
	}
	r.write(cctx, sc, s, &plan, &resp.State, &resp.Diagnostics)
}

func (r *serviceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan serviceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, defaultServiceWriteTimeout)
	resp.Diagnostics.Append(diags...)
	sc, s, ok := r.prepare(ctx, plan, &resp.Diagnostics)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.write(cctx, sc, s, &plan, &resp.State, &resp.Diagnostics)
}

// prepare turns the plan into a spec and gets a client of the node the
// service is written through: what Create and Update share.
func (r *serviceResource) prepare(ctx context.Context, plan serviceModel, diags *diag.Diagnostics) (herdv1.ServiceServiceClient, *herdv1.ServiceSpec, bool) {
	s, ok := r.planSpec(ctx, plan, diags)
	if !ok {
		return nil, nil, false
	}
	nodeID := plan.Node.ValueString()
	sc, err := r.clients.ServiceClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return nil, nil, false
	}
	return sc, s, true
}

// planSpec converts a plan (every value known, but for node ports still
// to be allocated) into the spec to apply, validated again.
func (r *serviceResource) planSpec(ctx context.Context, plan serviceModel, diags *diag.Diagnostics) (*herdv1.ServiceSpec, bool) {
	conv, d := serviceSpecFromModel(ctx, plan, false)
	diags.Append(d...)
	if diags.HasError() {
		return nil, false
	}
	if errs := conv.validate(); len(errs) > 0 {
		addServiceFieldErrors(diags, errs)
		return nil, false
	}
	return conv.spec, true
}

// write applies the service, waits until every live member holds it and
// stores what agentd reports. When the plan promised synced = true (the
// repair of a service some member lacked), not getting there is an error;
// otherwise it is a warning and the next plan repairs it.
func (r *serviceResource) write(ctx context.Context, sc herdv1.ServiceServiceClient, s *herdv1.ServiceSpec, plan *serviceModel,
	st stateSetter, diags *diag.Diagnostics) {
	nodeID := plan.Node.ValueString()
	what := fmt.Sprintf("apply service %s/%s", s.GetNamespace(), s.GetName())
	applied, err := sc.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: s})
	if err != nil {
		addRPCError(diags, what, nodeID, err)
		return
	}
	svc, err := waitServiceSynced(ctx, sc, applied.GetService())
	next := *plan
	next.ID = types.StringValue(serviceID(s.GetNamespace(), s.GetName()))
	if err != nil && !isWaitExpired(ctx, err) {
		addRPCError(diags, fmt.Sprintf("read service %s/%s after applying it", s.GetNamespace(), s.GetName()), nodeID, err)
		// The service exists: record what was applied, so it is not lost.
		diags.Append(next.setFromService(ctx, applied.GetService(), *plan)...)
		diags.Append(st.Set(ctx, &next)...)
		return
	}
	promised := plan.Synced.ValueBool() && !plan.Synced.IsUnknown()
	diags.Append(next.setFromService(ctx, svc, *plan)...)
	if !svc.GetStatus().GetSynced() {
		detail := fmt.Sprintf("Service %s/%s (version %d) is not held by every live member yet, as %s sees it: %s. "+
			"The next plan writes it again.", s.GetNamespace(), s.GetName(), svc.GetStatus().GetVersion(),
			nodeDescription(nodeID), laggingMembers(svc.GetStatus()))
		if promised {
			diags.AddError("Service not replicated", detail)
		} else {
			diags.AddWarning("Service not replicated yet", detail)
		}
	}
	diags.Append(st.Set(ctx, &next)...)
}

// stateSetter is what Create and Update write their state through.
type stateSetter interface {
	Set(context.Context, any) diag.Diagnostics
}

// waitServiceSynced polls GetService until the service is synced or ctx
// ends; it returns the last service seen, never nil.
func waitServiceSynced(ctx context.Context, sc herdv1.ServiceServiceClient, svc *herdv1.Service) (*herdv1.Service, error) {
	if svc == nil {
		svc = &herdv1.Service{}
	}
	ns, name := svc.GetSpec().GetNamespace(), svc.GetSpec().GetName()
	for !svc.GetStatus().GetSynced() {
		select {
		case <-ctx.Done():
			return svc, ctx.Err()
		case <-time.After(servicePollInterval):
		}
		got, err := sc.GetService(ctx, &herdv1.GetServiceRequest{Namespace: ns, Name: name})
		if err != nil {
			if isUnreachable(err) && ctx.Err() == nil {
				continue
			}
			return svc, err
		}
		svc = got
	}
	return svc, nil
}

// isWaitExpired reports that waiting ended because the operation's time
// was up, which leaves the service applied but not (yet) synced.
func isWaitExpired(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (status.Code(err) == codes.DeadlineExceeded || ctx.Err() == err)
}

// laggingMembers names the members that do not hold the current version.
func laggingMembers(st *herdv1.ServiceStatus) string {
	var out []string
	for _, m := range st.GetMembers() {
		if m.GetVersion() != st.GetVersion() {
			out = append(out, fmt.Sprintf("%s has version %d", m.GetNode(), m.GetVersion()))
		}
	}
	if len(out) == 0 {
		return "no member named"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (r *serviceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var state serviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	sc, err := r.clients.ServiceClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	svc, err := sc.GetService(cctx, &herdv1.GetServiceRequest{Namespace: ns, Name: name})
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read service %s/%s", ns, name), nodeID, err)
		return
	}
	next := state
	resp.Diagnostics.Append(next.setFromService(ctx, svc, state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	next.ID = types.StringValue(serviceID(next.Namespace.ValueString(), next.Name.ValueString()))
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *serviceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var state serviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultServiceDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	sc, err := r.clients.ServiceClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A service that is already gone is deleted: DeleteService succeeds
	// with existed=false, and NotFound is accepted too.
	_, err = sc.DeleteService(cctx, &herdv1.DeleteServiceRequest{Namespace: ns, Name: name})
	if err != nil && status.Code(err) != codes.NotFound {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("delete service %s/%s", ns, name), nodeID, err)
	}
}

// ImportState takes NAMESPACE/NAME@NODEID (or NAME@NODEID in the default
// namespace): the service's id and the member to reach it through.
func (r *serviceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ns, name, nodeID, err := parseServiceImportID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a service with NAMESPACE/NAME@NODEID, where NODEID is the id of a herd_node of its cluster "+
			"(NAME@ADDRESS), e.g. default/web@node-1@10.0.0.5:7443.")
		return
	}
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{
		"id": serviceID(ns, name), "node": nodeID, "namespace": ns, "name": name,
	})
}

func serviceID(ns, name string) string { return ns + "/" + name }

func serviceImportID(ns, name, nodeID string) string { return serviceID(ns, name) + "@" + nodeID }

// parseServiceImportID splits NAMESPACE/NAME@NODEID at the first '@':
// namespaces and names are RFC 1123 labels, which hold no '@'.
func parseServiceImportID(id string) (ns, name, nodeID string, err error) {
	ref, nodeID, ok := strings.Cut(id, "@")
	if !ok || ref == "" {
		return "", "", "", fmt.Errorf("import id %q: want NAMESPACE/NAME@NODEID", id)
	}
	ns, name, ok = strings.Cut(ref, "/")
	if !ok {
		ns, name = spec.DefaultNamespace, ref
	}
	for _, part := range []struct{ what, v string }{{"namespace", ns}, {"name", name}} {
		if err := spec.ValidateName(part.v); err != nil {
			return "", "", "", fmt.Errorf("import id %q: %s: %w", id, part.what, err)
		}
	}
	if _, _, err := nodeid.Parse(nodeID); err != nil {
		return "", "", "", fmt.Errorf("import id %q: node id: %w", id, err)
	}
	return ns, name, nodeID, nil
}

// serviceConversion is a (possibly partly unknown) configuration converted
// into a ServiceSpec.
type serviceConversion struct {
	spec *herdv1.ServiceSpec
	// unknown lists the spec paths whose values are not known yet; errors
	// at or below them are not reported.
	unknown []spec.Path
	// errs are problems the conversion itself found (numbers that do not
	// fit, zeros that mean "unset" to agentd); their paths are in unknown.
	errs spec.FieldErrors
	// fromConfig: the model is the configuration, where an explicit 0 is
	// refused; in a plan, 0 is a computed value (no node port).
	fromConfig bool
}

func (c *serviceConversion) markUnknown(p spec.Path) { c.unknown = append(c.unknown, p) }

// validate runs agentd's validation and keeps the errors about known values.
func (c serviceConversion) validate() spec.FieldErrors {
	out := append(spec.FieldErrors(nil), c.errs...)
next:
	for _, fe := range spec.ValidateService(c.spec) {
		for _, u := range c.unknown {
			if hasPrefix(fe.Path, u) {
				continue next
			}
		}
		out = append(out, fe)
	}
	return out
}

// serviceSpecFromModel converts the configuration or plan into a
// ServiceSpec. Unknown values get stand-ins that cannot cause errors
// elsewhere: an unknown type is NodePort (which allows node ports and
// affinity), an unknown protocol or port name a placeholder of its own.
func serviceSpecFromModel(ctx context.Context, m serviceModel, fromConfig bool) (serviceConversion, diag.Diagnostics) {
	var diags diag.Diagnostics
	c := serviceConversion{spec: &herdv1.ServiceSpec{}, fromConfig: fromConfig}
	s := c.spec
	s.Namespace = stringWithUnknown(m.Namespace, spec.Path{}.Field("namespace"), c.markUnknown)
	s.Name = stringWithUnknown(m.Name, spec.Path{}.Field("name"), c.markUnknown)
	s.Selector = mapWithUnknowns(m.Selector, spec.Path{}.Field("selector"), c.markUnknown)
	s.SessionAffinity = stringWithUnknown(m.SessionAffinity, spec.Path{}.Field("session_affinity"), c.markUnknown)
	if m.Type.IsUnknown() {
		c.markUnknown(spec.Path{}.Field("type"))
		s.Type = spec.ServiceTypeNodePort
	} else {
		s.Type = m.Type.ValueString()
	}
	pp := spec.Path{}.Field("ports")
	if m.Ports.IsUnknown() {
		c.markUnknown(pp)
		return c, diags
	}
	for i, v := range m.Ports.Elements() {
		obj, ok := v.(types.Object)
		if !ok || obj.IsUnknown() || obj.IsNull() {
			c.markUnknown(pp.Index(i))
			s.Ports = append(s.Ports, nil)
			continue
		}
		var pm servicePortModel
		diags.Append(obj.As(ctx, &pm, basetypes.ObjectAsOptions{})...)
		if diags.HasError() {
			return c, diags
		}
		s.Ports = append(s.Ports, c.portFromModel(pm, pp.Index(i), i))
	}
	return c, diags
}

func (c *serviceConversion) portFromModel(pm servicePortModel, p spec.Path, i int) *herdv1.ServicePort {
	sp := &herdv1.ServicePort{}
	if pm.Name.IsUnknown() {
		c.markUnknown(p.Field("name"))
		sp.Name = fmt.Sprintf("x-unknown-name-%d", i) // too long to be a real port name
	} else {
		sp.Name = pm.Name.ValueString()
	}
	if pm.Protocol.IsUnknown() {
		c.markUnknown(p.Field("protocol"))
		sp.Protocol = fmt.Sprintf("unknown-%d", i)
	} else {
		sp.Protocol = pm.Protocol.ValueString()
	}
	sp.TargetPortName = stringWithUnknown(pm.TargetPortName, p.Field("target_port_name"), c.markUnknown)
	sp.Port = c.int32Field(pm.Port, p.Field("port"), "must be between 1 and 65535, got %d", "")
	sp.TargetPort = c.int32Field(pm.TargetPort, p.Field("target_port"), "must be between 1 and 65535, got %d",
		"0 is not a port: omit target_port to send traffic to the same port number on the pods (or set target_port_name)")
	sp.NodePort = c.int32Field(pm.NodePort, p.Field("node_port"),
		fmt.Sprintf("must be between %d and %d, got %%d", spec.NodePortMin, spec.NodePortMax),
		"0 is not a node port: omit node_port to have agentd allocate one")
	return sp
}

// int32Field converts a number for the spec. Unknown values are skipped;
// numbers beyond int32 are reported with rangeMsg; an explicit 0, which
// agentd reads as "unset", is refused with zeroMsg when one is given (the
// state could never keep a 0 that agentd replaces).
func (c *serviceConversion) int32Field(v types.Int64, p spec.Path, rangeMsg, zeroMsg string) int32 {
	if v.IsNull() {
		return 0
	}
	if v.IsUnknown() {
		c.markUnknown(p)
		return 0
	}
	n := v.ValueInt64()
	switch {
	case n < math.MinInt32 || n > math.MaxInt32:
		c.markUnknown(p)
		c.errs = append(c.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf(rangeMsg, n)})
		return 0
	case n == 0 && c.fromConfig && zeroMsg != "":
		c.markUnknown(p)
		c.errs = append(c.errs, spec.FieldError{Path: p, Msg: zeroMsg})
		return 0
	}
	return int32(n)
}

// serviceAttributePath maps a spec path (relative to a ServiceSpec) to the
// herd_service attribute path: the spec's "ports" list is the "port"
// block; every other field has the same name in both.
func serviceAttributePath(p spec.Path) path.Path {
	return attributePath(p, func(i int, name string) string {
		if i == 0 && name == "ports" {
			return "port"
		}
		return name
	})
}

// addServiceFieldErrors reports spec field errors at their attribute paths.
func addServiceFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors) {
	const summary = "Invalid service specification"
	for _, fe := range errs {
		if len(fe.Path) == 0 {
			diags.AddError(summary, fe.Msg)
			continue
		}
		p := serviceAttributePath(fe.Path)
		// Messages may name other ports the way agentd spells them.
		msg := strings.ReplaceAll(fe.Msg, "ports[", "port[")
		diags.AddAttributeError(p, summary, fmt.Sprintf("%s: %s", p, msg))
	}
}

// setFromService fills the state from what agentd reports, its spec
// defaulted, using prior (state or plan) only to choose between null and
// empty values.
func (m *serviceModel) setFromService(ctx context.Context, svc *herdv1.Service, prior serviceModel) diag.Diagnostics {
	var diags diag.Diagnostics
	if svc.GetSpec() != nil {
		d := spec.DefaultService(svc.GetSpec())
		m.Namespace = types.StringValue(d.GetNamespace())
		m.Name = types.StringValue(d.GetName())
		m.Type = types.StringValue(d.GetType())
		m.Selector = stringMapValue(d.GetSelector())
		m.SessionAffinity = types.StringValue(d.GetSessionAffinity())
		m.Ports, diags = servicePortsFromRemote(ctx, d.GetPorts(), prior.Ports)
	}
	st := svc.GetStatus()
	m.UID = types.StringValue(svc.GetUid())
	m.ClusterIP = types.StringValue(st.GetClusterIp())
	m.DNSName = types.StringValue(st.GetDnsName())
	m.Version = types.Int64Value(int64(st.GetVersion()))
	m.Synced = types.BoolValue(st.GetSynced())
	m.Endpoints = endpointsValue(st.GetEndpoints())
	return diags
}

// servicePortsFromRemote renders defaulted ports as port blocks, with a
// null (not empty) name or target_port_name unless prior held "".
func servicePortsFromRemote(ctx context.Context, remote []*herdv1.ServicePort, prior types.List) (types.List, diag.Diagnostics) {
	var diags diag.Diagnostics
	var priorPorts []servicePortModel
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.ElementsAs(ctx, &priorPorts, false)...)
		if diags.HasError() {
			return types.ListNull(servicePortObjectType), diags
		}
	}
	elems := make([]attr.Value, 0, len(remote))
	for i, p := range remote {
		pm := servicePortModel{Name: types.StringNull(), TargetPortName: types.StringNull()}
		if i < len(priorPorts) {
			pm = priorPorts[i]
		}
		target := types.Int64Value(int64(p.GetTargetPort()))
		if p.GetTargetPortName() != "" {
			target = types.Int64Null()
		}
		elems = append(elems, types.ObjectValueMust(servicePortAttrTypes, map[string]attr.Value{
			"name":             stringFromRemote(p.GetName(), pm.Name),
			"protocol":         types.StringValue(p.GetProtocol()),
			"port":             types.Int64Value(int64(p.GetPort())),
			"target_port":      target,
			"target_port_name": stringFromRemote(p.GetTargetPortName(), pm.TargetPortName),
			"node_port":        types.Int64Value(int64(p.GetNodePort())),
		}))
	}
	return types.ListValueMust(servicePortObjectType, elems), diags
}

// endpointsValue renders endpoints in a stable order, whatever order the
// node lists them in, so that a refresh does not reorder them.
func endpointsValue(eps []*herdv1.ServiceEndpoint) types.List {
	sorted := append([]*herdv1.ServiceEndpoint(nil), eps...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.GetNode() != b.GetNode() {
			return a.GetNode() < b.GetNode()
		}
		if a.GetPod() != b.GetPod() {
			return a.GetPod() < b.GetPod()
		}
		return a.GetIp() < b.GetIp()
	})
	elems := make([]attr.Value, 0, len(sorted))
	for _, e := range sorted {
		elems = append(elems, types.ObjectValueMust(endpointAttrTypes, map[string]attr.Value{
			"node":  types.StringValue(e.GetNode()),
			"pod":   types.StringValue(e.GetPod()),
			"ip":    types.StringValue(e.GetIp()),
			"ready": types.BoolValue(e.GetReady()),
		}))
	}
	return types.ListValueMust(endpointObjectType, elems)
}
