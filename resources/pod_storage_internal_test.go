package resources

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// A volume's id and its name are the same mount; anything else about a
// volume_mount replaces the pod.
func TestVolumeMountReplace(t *testing.T) {
	const id = "node-a@127.0.0.1:1/default/data"
	str := types.StringValue
	mounts := func(volume types.String, path string) types.List {
		return types.ListValueMust(volumeMountObjectType, []attr.Value{types.ObjectValueMust(volumeMountAttrTypes, map[string]attr.Value{
			"volume": volume, "empty_dir": types.StringNull(), "path": str(path),
			"read_only": types.BoolNull(), "sub_path": types.StringNull(),
		})})
	}
	cases := []struct {
		name         string
		state, plan  types.String
		path         string // the plan's mount path; the state's is /data
		wantReplaced bool
	}{
		{name: "name to id", state: str("data"), plan: str(id), path: "/data"},
		{name: "id to name", state: str(id), plan: str("data"), path: "/data"},
		{name: "another volume", state: str("data"), plan: str("logs"), path: "/data", wantReplaced: true},
		{name: "id of another volume", state: str("data"), plan: str("node-a@127.0.0.1:1/default/logs"), path: "/data", wantReplaced: true},
		{name: "unknown id", state: str("data"), plan: types.StringUnknown(), path: "/data", wantReplaced: true},
		{name: "empty_dir instead", state: str("data"), plan: types.StringNull(), path: "/data", wantReplaced: true},
		{name: "same volume, another path", state: str("data"), plan: str(id), path: "/other", wantReplaced: true},
	}
	ctx := context.Background()
	// A pod in the state and in the plan: an update, not a create or a
	// destroy, which never replace.
	raw := tftypes.NewValue(tftypes.Object{}, map[string]tftypes.Value{})
	state, plan := tfsdk.State{Raw: raw}, tfsdk.Plan{Raw: raw}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sreq := planmodifier.StringRequest{State: state, Plan: plan, StateValue: tc.state, PlanValue: tc.plan, ConfigValue: tc.plan}
			sresp := &planmodifier.StringResponse{PlanValue: tc.plan}
			replaceUnlessSameVolume().PlanModifyString(ctx, sreq, sresp)
			lreq := planmodifier.ListRequest{State: state, Plan: plan,
				StateValue: mounts(tc.state, "/data"), PlanValue: mounts(tc.plan, tc.path), ConfigValue: mounts(tc.plan, tc.path)}
			lresp := &planmodifier.ListResponse{PlanValue: lreq.PlanValue}
			replaceUnlessSameMounts().PlanModifyList(ctx, lreq, lresp)
			if got := sresp.RequiresReplace || lresp.RequiresReplace; got != tc.wantReplaced {
				t.Errorf("replaced = %t (volume %t, list %t), want %t", got, sresp.RequiresReplace, lresp.RequiresReplace, tc.wantReplaced)
			}
		})
	}
}
