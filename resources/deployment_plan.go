package resources

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// dryRunGrace is what a plan-time dry run may take beyond dialing.
const dryRunGrace = 20 * time.Second

// ModifyPlan refuses bad input at the attribute that holds it (agentd's
// own validation, on the plan, so with every default applied), marks the
// status unknown when anything changes, and asks node for a dry run: its
// summary becomes a warning and its placement planned_nodes; a replica
// that fits nowhere fails the plan.
func (r *deploymentResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroy
	}
	var plan deploymentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	conv, diags := deploymentSpecFromModel(ctx, plan, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	if errs := conv.validate(); len(errs) > 0 {
		addDeploymentFieldErrors(&resp.Diagnostics, errs)
		return
	}

	specChanged := true
	if !req.State.Raw.IsNull() {
		if req.Plan.Raw.Equal(req.State.Raw) {
			return // nothing changes: the status from the last refresh stays
		}
		var state deploymentModel
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
		if resp.Diagnostics.HasError() {
			return
		}
		specChanged = !sameDeploymentSpec(plan, state)
		plan.markStatusUnknown()
	}
	if specChanged {
		plan.PlannedNodes = types.ListUnknown(types.StringType)
		if conv.known() && !plan.Node.IsUnknown() && r.clients != nil {
			r.dryRun(ctx, plan.Node.ValueString(), conv.spec, &plan, &resp.Diagnostics)
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// sameDeploymentSpec reports that a plan changes nothing that agentd acts
// on (only node or timeouts, say, or a volume's spelling: agentd gets
// its name either way).
func sameDeploymentSpec(a, b deploymentModel) bool {
	return a.Namespace.Equal(b.Namespace) && a.Name.Equal(b.Name) && a.Replicas.Equal(b.Replicas) &&
		a.Selector.Equal(b.Selector) && a.NodeSelector.Equal(b.NodeSelector) &&
		templateByVolumeName(a.Template).Equal(templateByVolumeName(b.Template)) &&
		a.Placement.Equal(b.Placement) && a.Strategy.Equal(b.Strategy)
}

// templateByVolumeName is a template with every volume_mount's volume
// spelled by name (volumeNames).
func templateByVolumeName(t types.Object) types.Object {
	cs, ok := t.Attributes()["container"].(types.List)
	if t.IsNull() || t.IsUnknown() || !ok || cs.IsNull() || cs.IsUnknown() {
		return t
	}
	elems := make([]attr.Value, 0, len(cs.Elements()))
	for _, v := range cs.Elements() {
		obj, ok := v.(types.Object)
		mounts, isList := obj.Attributes()["volume_mount"].(types.List)
		if !ok || obj.IsNull() || obj.IsUnknown() || !isList {
			elems = append(elems, v)
			continue
		}
		attrs := maps.Clone(obj.Attributes())
		attrs["volume_mount"] = volumeNames(mounts)
		elems = append(elems, types.ObjectValueMust(obj.AttributeTypes(context.Background()), attrs))
	}
	attrs := maps.Clone(t.Attributes())
	attrs["container"] = types.ListValueMust(cs.ElementType(context.Background()), elems)
	return types.ObjectValueMust(t.AttributeTypes(context.Background()), attrs)
}

// dryRun asks nodeID what applying s would do. An unreachable node (or an
// agentd without deployments) leaves planned_nodes unknown, with a
// warning: the plan goes on without the dry run.
func (r *deploymentResource) dryRun(ctx context.Context, nodeID string, s *herdv1.DeploymentSpec, plan *deploymentModel, diags *diag.Diagnostics) {
	what := fmt.Sprintf("dry-run deployment %s/%s", s.GetNamespace(), s.GetName())
	dc, err := r.clients.DeploymentClient(nodeID)
	if err != nil {
		// A provider without the settings to reach nodes still plans (as
		// for every other resource); apply reports it.
		_, detail := describeRPCError(what, nodeID, err)
		diags.AddWarning("Deployment not dry-run", "The plan was made without asking the cluster where the replicas "+
			"go (planned_nodes is known after apply): "+detail)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+dryRunGrace)
	defer cancel()
	res, err := dc.ApplyDeployment(cctx, &herdv1.ApplyDeploymentRequest{Spec: s, DryRun: true})
	switch {
	case err == nil:
	case hasReason(err, herdv1.ReasonUnplaceable):
		diags.AddAttributeError(path.Root("replicas"), "Deployment does not fit the cluster",
			fmt.Sprintf("%s cannot place the replicas of %s/%s: %s\n\nFree capacity on the nodes that match "+
				"node_selector (herd_node's allocatable and requested), lower the replicas' cpu_request/memory_request "+
				"or the replicas, or relax placement.max_per_node or node_selector.",
				nodeDescription(nodeID), s.GetNamespace(), s.GetName(), status.Convert(err).Message()))
		return
	case isUnreachable(err) || status.Code(err) == codes.Unimplemented:
		_, detail := describeRPCError(what, nodeID, err)
		diags.AddWarning("Deployment not dry-run", "The plan was made without asking the cluster where the replicas "+
			"go (planned_nodes is known after apply): "+detail)
		return
	default:
		addRPCError(diags, what, nodeID, err)
		return
	}
	if sum := res.GetPlan().GetSummary(); sum != "" {
		diags.AddWarning("Deployment rollout plan", sum)
	}
	plan.PlannedNodes = plannedNodes(res.GetPlan())
}

// plannedHint is the plan's planned_nodes as ApplyDeployment's
// placement_hint: nil when the plan did not know them.
func plannedHint(l types.List) []string {
	if l.IsNull() || l.IsUnknown() {
		return nil
	}
	return stringList(l)
}

// emptyStringList is a known, empty list(string).
func emptyStringList() types.List { return types.ListValueMust(types.StringType, []attr.Value{}) }
