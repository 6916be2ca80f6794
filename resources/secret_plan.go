package resources

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// ValidateConfig checks the configuration with agentd's own rules. Write-only
// values are part of the configuration (and only of it), so data_wo is
// checked here, as soon as its values are known.
func (r *secretResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg secretModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	checkSecretDataChoice(cfg.Data, cfg.DataWO, cfg.DataWOVersion, &resp.Diagnostics)
	attrName, data, ok := secretDataSource(cfg.Data, cfg.DataWO)
	if !ok {
		// Reported above; still check the rest, without the data.
		data = types.MapUnknown(types.StringType)
	}
	conv := secretSpecFromValues(cfg.Namespace, cfg.Name, cfg.Type, cfg.NodeSelector, cfg.Immutable, attrName, data)
	addSecretFieldErrors(&resp.Diagnostics, conv.validate(), attrName)
}

// ModifyPlan decides what an update does to the computed attributes, and
// asks the node which pods a data change restarts:
//
//   - a creation restarts nothing (restarts = []);
//   - the data changes when data changes, when data_wo_version changes, or
//     when the node's checksum is not the one of the data Terraform last
//     wrote (a change behind its back): checksum and version are then
//     unknown, restarts is agentd's dry-run answer, and a warning lists
//     the restarts;
//   - an immutable secret whose data changes is replaced, and so is one
//     whose immutable goes back to false;
//   - without a data change the checksum and key names are kept and
//     restarts is empty.
func (r *secretResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan, cfg secretModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	dataAttr, data, hasData := secretDataSource(cfg.Data, cfg.DataWO)
	plannedKeys := types.ListUnknown(types.StringType)
	if hasData && !data.IsUnknown() {
		plannedKeys = stringListValue(sortedDataKeys(data))
	}
	emptyList := types.ListValueMust(types.StringType, nil)

	if req.State.Raw.IsNull() {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("restarts"), emptyList)...)
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("keys"), plannedKeys)...)
		return
	}
	var state secretModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}

	drift := false
	if applied := appliedChecksum(ctx, req.Private); applied != "" && !state.Checksum.IsNull() &&
		state.Checksum.ValueString() != applied {
		drift = true
		resp.Diagnostics.AddWarning("Secret changed outside Terraform",
			fmt.Sprintf("The data of secret %s/%s on the cluster is not the data Terraform last wrote (its checksum "+
				"changed from %s to %s): someone changed it behind Terraform's back. This apply writes the "+
				"configured data again.", state.Namespace.ValueString(), state.Name.ValueString(), applied,
				state.Checksum.ValueString()))
	}
	// A secret some matching member lacks (synced = false) is written
	// again, as herd_service does: agentd pushes it anew.
	repair := !state.Synced.IsNull() && !state.Synced.IsUnknown() && !state.Synced.ValueBool()
	if !drift && !repair && req.Plan.Raw.Equal(req.State.Raw) {
		return // nothing changes
	}
	if !plan.Namespace.Equal(state.Namespace) || !plan.Name.Equal(state.Name) || !plan.Type.Equal(state.Type) {
		return // replaced: planned again as a creation
	}

	dataChange := drift
	switch dataAttr {
	case secretAttrDataWO:
		dataChange = dataChange || !plan.DataWOVersion.Equal(state.DataWOVersion) || !state.Data.IsNull()
	case secretAttrData:
		dataChange = dataChange || !plan.Data.Equal(state.Data)
	}

	// An immutable secret's data never changes: a new secret replaces it.
	if state.Immutable.ValueBool() && !plan.Immutable.IsUnknown() {
		replace := path.Paths{}
		if !plan.Immutable.ValueBool() {
			replace = append(replace, path.Root("immutable"))
		}
		if dataChange {
			p := path.Root(secretAttrData)
			if dataAttr == secretAttrDataWO {
				p = path.Root(secretAttrDataWOVersion)
			}
			replace = append(replace, p)
		}
		if len(replace) > 0 {
			resp.RequiresReplace = append(resp.RequiresReplace, replace...)
			return
		}
	}

	set := func(name string, v attr.Value) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), v)...)
	}
	set("uid", state.UID)
	set("synced", types.BoolUnknown())
	set("holders", types.ListUnknown(holderObjectType))
	// Update always sends the configured data: these are the keys after it.
	set("keys", plannedKeys)

	// Which pods does the apply restart, does anything change? Only agentd
	// knows: ask it for a dry run of the very spec Update will apply.
	restarts, dry, diags := r.dryRun(ctx, plan, dataAttr, data, hasData)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	checksumUnknown, versionUnknown := dataChange, true
	switch {
	case dry != nil:
		versionUnknown = dry.GetChanged()
		willChange := dry.GetSecret().GetStatus().GetChecksum() != state.Checksum.ValueString()
		if willChange && !dataChange {
			// data_wo edited without a version bump: Update must send the
			// data with any change, so the secret gets the new values.
			checksumUnknown = true
			if dataAttr == secretAttrDataWO {
				resp.Diagnostics.AddAttributeWarning(path.Root(secretAttrDataWO), "Write-only data changed without a version bump",
					"This apply changes other attributes of the secret and therefore sends data_wo, whose values "+
						"differ from the secret's: the secret gets the new values. Change data_wo_version together "+
						"with data_wo to make such changes explicit.")
			}
		}
		if !willChange && dataAttr == secretAttrData {
			// The same values (e.g. adopted after an import): the checksum
			// stays. data_wo may still change between plan and apply
			// (ephemeral values are read again), so its stays unknown.
			checksumUnknown = false
		}
	case dataAttr == secretAttrDataWO:
		checksumUnknown = true // cannot tell without asking
	}
	if checksumUnknown {
		set("checksum", types.StringUnknown())
	} else {
		set("checksum", state.Checksum)
	}
	if versionUnknown {
		set("version", types.Int64Unknown())
	} else {
		set("version", state.Version)
	}
	set("restarts", restarts)
	if n := len(restarts.Elements()); n > 0 && !restarts.IsUnknown() {
		resp.Diagnostics.AddWarning(fmt.Sprintf("Applying secret %s/%s restarts %d pod(s)", plan.Namespace.ValueString(),
			plan.Name.ValueString(), n),
			fmt.Sprintf("The secret's data changes, and these pods use it with restart_on_secret_change: they are "+
				"restarted one at a time, in this order: %s.", strings.Join(stringList(restarts), ", ")))
	}
}

// dryRun asks the write-through node what applying the planned spec does
// (ApplySecret with dry_run): the pods it restarts and, in the answer, the
// version and checksum the secret would have. restarts is unknown and the
// answer nil when the question cannot be asked (node or values not known
// yet, or the node unreachable: a warning says so).
func (r *secretResource) dryRun(ctx context.Context, plan secretModel, dataAttr string, data types.Map,
	hasData bool) (restarts types.List, answer *herdv1.ApplySecretResponse, diags diag.Diagnostics) {
	unknown := types.ListUnknown(types.StringType)
	if r.clients == nil || !hasData || !secretDataKnown(data) || plan.Node.IsUnknown() ||
		plan.NodeSelector.IsUnknown() || plan.Immutable.IsUnknown() {
		return unknown, nil, diags
	}
	conv := secretSpecFromValues(plan.Namespace, plan.Name, plan.Type, plan.NodeSelector, plan.Immutable, dataAttr, data)
	if len(conv.unknown) > 0 {
		return unknown, nil, diags
	}
	nodeID := plan.Node.ValueString()
	sc, err := r.clients.SecretClient(nodeID)
	if err != nil {
		addRPCError(&diags, "connect to the node", nodeID, err)
		return unknown, nil, diags
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	what := fmt.Sprintf("plan secret %s/%s (dry run)", conv.spec.GetNamespace(), conv.spec.GetName())
	got, err := sc.ApplySecret(cctx, &herdv1.ApplySecretRequest{Spec: conv.spec, DryRun: true})
	if err != nil {
		if isUnreachable(err) {
			summary, detail := describeRPCError(what, nodeID, err)
			diags.AddWarning(summary, detail+"\n\nThe plan cannot tell which pods the apply restarts (restarts is "+
				"known after apply).")
			return unknown, nil, diags
		}
		addRPCError(&diags, what, nodeID, err)
		return unknown, nil, diags
	}
	return stringListValue(podRefs(got.GetRestartedPods())), got, diags
}

// appliedChecksum reads the checksum Terraform last wrote from private
// state; "" when there is none (a secret imported and not written yet).
func appliedChecksum(ctx context.Context, p interface {
	GetKey(context.Context, string) ([]byte, diag.Diagnostics)
}) string {
	b, diags := p.GetKey(ctx, privateAppliedChecksum)
	if diags.HasError() || len(b) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return ""
	}
	return s
}

type privateSetter interface {
	SetKey(context.Context, string, []byte) diag.Diagnostics
}

func setAppliedChecksum(ctx context.Context, p privateSetter, checksum string) diag.Diagnostics {
	b, _ := json.Marshal(checksum)
	return p.SetKey(ctx, privateAppliedChecksum, b)
}
