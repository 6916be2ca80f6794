package resources

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// ValidateConfig checks the configuration with agentd's own rules
// (spec.ValidateVolume). Values not known yet are skipped: they stand in
// as valid ones.
func (r *volumeResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg volumeModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	known := func(v types.String, stand string) string {
		if v.IsUnknown() {
			return stand
		}
		return v.ValueString()
	}
	s := &herdv1.VolumeSpec{
		Namespace: known(cfg.Namespace, spec.DefaultVolumeNamespace),
		Name:      known(cfg.Name, "unknown"),
		Size:      known(cfg.Size, "1Mi"),
	}
	addVolumeFieldErrors(&resp.Diagnostics, spec.ValidateVolume(s))
	switch nodeSet, candSet := !cfg.Node.IsNull(), !cfg.NodeCandidates.IsNull(); {
	case nodeSet && candSet:
		resp.Diagnostics.AddAttributeError(path.Root("node_candidates"), "Invalid volume specification",
			"node_candidates conflicts with node: give the node, or the candidates for herd to choose from")
	case !nodeSet && !candSet:
		resp.Diagnostics.AddAttributeError(path.Root("node"), "Invalid volume specification",
			"set node (the herd_node that holds the volume), or node_candidates for herd to choose one")
	}
}

// addVolumeFieldErrors reports spec.ValidateVolume's errors at the
// attributes: the spec's fields are the schema's.
func addVolumeFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors) {
	addSpecFieldErrors(diags, errs, fixedSummary("Invalid volume specification"),
		func(p spec.Path) path.Path { return attributePath(p, func(_ int, f string) string { return f }) }, nil)
}

// ModifyPlan refuses, before anything reaches the node:
//
//   - destroying or replacing a volume whose deletion_protection is true
//     in the prior state (agentd would refuse the delete half-way through
//     a replacement, and a destroy plan that cannot be applied helps
//     nobody);
//   - shrinking a volume (spec.CheckVolumeResize), comparing bytes.
//
// It also plans size_bytes (the configured size parsed) and keeps uid and
// capacity_bytes while the size stays the same number of bytes. used_bytes,
// phase, bound_to and readers change as pods use the volume: an update
// leaves them unknown, and without a change they are not touched.
func (r *volumeResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	set := func(name string, v attr.Value) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), v)...)
	}
	if req.State.Raw.IsNull() {
		if req.Plan.Raw.IsNull() {
			return
		}
		var plan volumeModel
		resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
		if resp.Diagnostics.HasError() {
			return
		}
		if b, ok := knownVolumeBytes(plan.Size); ok {
			set("size_bytes", types.Int64Value(b))
		}
		return
	}
	var state volumeModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	protected := state.DeletionProtection.ValueBool()
	ref := fmt.Sprintf("%s/%s on %s", state.Namespace.ValueString(), state.Name.ValueString(),
		nodeDescription(state.Node.ValueString()))
	if req.Plan.Raw.IsNull() {
		if protected {
			resp.Diagnostics.AddAttributeError(path.Root("deletion_protection"), "Volume is protected from deletion",
				fmt.Sprintf("Volume %s has deletion_protection = true, so it cannot be destroyed (destroying it "+
					"deletes its data). To destroy it, set deletion_protection = false, apply, then destroy.", ref))
		}
		return
	}
	var plan volumeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if replace := volumeReplacedBy(plan, state, resp.RequiresReplace); len(replace) > 0 {
		if protected {
			attrs := make([]string, len(replace))
			for i, p := range replace {
				attrs[i] = p.String()
			}
			resp.Diagnostics.AddAttributeError(path.Root("deletion_protection"), "Volume is protected from deletion",
				fmt.Sprintf("Changing %s replaces volume %s (a new, empty volume takes its place and its data is "+
					"deleted), but it has deletion_protection = true. To replace it, set deletion_protection = false, "+
					"apply, then apply the replacement.", strings.Join(attrs, ", "), ref))
		}
		return // planned again as a creation
	}

	from, fromOK := stateVolumeBytes(state)
	to, toOK := knownVolumeBytes(plan.Size)
	if fromOK && toOK {
		if err := spec.CheckVolumeResize(from, to, state.Size.ValueString(), plan.Size.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("size"), "Volume cannot shrink",
				fmt.Sprintf("size: %v", err))
			return
		}
	}
	if req.Plan.Raw.Equal(req.State.Raw) {
		return // nothing changes
	}
	warnNodeNotCandidate(ctx, plan, state, &resp.Diagnostics)
	set("uid", state.UID)
	set("id", state.ID)
	switch {
	case !toOK:
		set("size_bytes", types.Int64Unknown())
		set("capacity_bytes", types.Int64Unknown())
	case fromOK && to == from:
		set("size_bytes", types.Int64Value(to))
		set("capacity_bytes", state.CapacityBytes)
	default:
		set("size_bytes", types.Int64Value(to))
		set("capacity_bytes", types.Int64Unknown())
	}
}

// volumeReplacedBy lists the attributes that replace the volume. The
// framework keeps what the attributes' RequiresReplace found to itself
// (ModifyPlan's response starts empty), so the attributes the schema
// marks are compared here as RequiresReplace compares them: a value not
// known yet replaces too.
func volumeReplacedBy(plan, state volumeModel, already path.Paths) path.Paths {
	out := slices.Clone(already)
	for _, a := range []struct {
		name        string
		plan, state types.String
	}{{"node", plan.Node, state.Node}, {"namespace", plan.Namespace, state.Namespace}, {"name", plan.Name, state.Name}} {
		if p := path.Root(a.name); !a.plan.Equal(a.state) && !out.Contains(p) {
			out = append(out, p)
		}
	}
	return out
}

// knownVolumeBytes parses a planned size; false when it is unknown or
// invalid (ValidateConfig reports that).
func knownVolumeBytes(size types.String) (int64, bool) {
	if size.IsNull() || size.IsUnknown() {
		return 0, false
	}
	b, err := spec.ParseVolumeSize(size.ValueString())
	return b, err == nil
}

// stateVolumeBytes is the size of the volume in state: the bytes agentd
// reported, else its size parsed.
func stateVolumeBytes(state volumeModel) (int64, bool) {
	if !state.SizeBytes.IsNull() && !state.SizeBytes.IsUnknown() && state.SizeBytes.ValueInt64() > 0 {
		return state.SizeBytes.ValueInt64(), true
	}
	return knownVolumeBytes(state.Size)
}

// warnNodeNotCandidate says, when node_candidates no longer lists the node
// herd chose, that the volume stays where its data is: the list is only
// read at creation, and moving is a replacement the user must ask for.
func warnNodeNotCandidate(ctx context.Context, plan, state volumeModel, diags *diag.Diagnostics) {
	if plan.NodeCandidates.IsNull() || plan.NodeCandidates.IsUnknown() || !plan.Node.Equal(state.Node) {
		return
	}
	var cands []types.String
	if d := plan.NodeCandidates.ElementsAs(ctx, &cands, false); d.HasError() {
		return
	}
	for _, c := range cands {
		if c.IsUnknown() || c.Equal(state.Node) {
			return
		}
	}
	diags.AddAttributeWarning(path.Root("node_candidates"), "Volume stays on its node",
		fmt.Sprintf("Volume %s/%s stays on %s, which node_candidates no longer lists: herd chooses among the "+
			"candidates only when it creates a volume, and never moves one (its data is on that node). To move it, "+
			"set node to the other node, which replaces it with a new, empty volume.",
			state.Namespace.ValueString(), state.Name.ValueString(), nodeDescription(state.Node.ValueString())))
}
