package resources

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

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
