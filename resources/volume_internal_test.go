package resources

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestParseVolumeID(t *testing.T) {
	tests := []struct {
		id, node, ns, name string
		wantErr            bool
	}{
		{id: "node-1@127.0.0.1:7443/default/data", node: "node-1@127.0.0.1:7443", ns: "default", name: "data"},
		{id: "node-1@unix:///run/herd/agentd.sock/shop/db", node: "node-1@unix:///run/herd/agentd.sock", ns: "shop", name: "db"},
		{id: "node-1@[::1]:7443/default/data", node: "node-1@[::1]:7443", ns: "default", name: "data"},
		{id: "node-1@127.0.0.1:7443/data", wantErr: true},
		{id: "default/data", wantErr: true},
		{id: "node-1/default/data", wantErr: true},
		{id: "node-1@127.0.0.1:7443/Default/data", wantErr: true},
		{id: "node-1@127.0.0.1:7443/default/", wantErr: true},
		{id: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			node, ns, name, err := parseVolumeID(tt.id)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %q %q %q", node, ns, name)
				}
				return
			}
			if err != nil || node != tt.node || ns != tt.ns || name != tt.name {
				t.Fatalf("got %q %q %q %v, want %q %q %q", node, ns, name, err, tt.node, tt.ns, tt.name)
			}
			if got := volumeID(node, ns, name); got != tt.id {
				t.Fatalf("volumeID = %q, want %q", got, tt.id)
			}
		})
	}
}

// testVolumeModel is an applied 1Gi volume.
func testVolumeModel(protected bool) volumeModel {
	return volumeModel{
		ID:                 types.StringValue("node-a@127.0.0.1:1/default/data"),
		Node:               types.StringValue("node-a@127.0.0.1:1"),
		NodeCandidates:     types.ListNull(types.StringType),
		Namespace:          types.StringValue("default"),
		Name:               types.StringValue("data"),
		Size:               types.StringValue("1Gi"),
		DeletionProtection: types.BoolValue(protected),
		Timeouts: timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
			"create": types.StringType, "update": types.StringType, "delete": types.StringType,
		})},
		UID:           types.StringValue("u1"),
		SizeBytes:     types.Int64Value(1 << 30),
		CapacityBytes: types.Int64Value(1 << 29),
		UsedBytes:     types.Int64Value(4096),
		Phase:         types.StringValue("Bound"),
		BoundTo:       types.StringValue("db"),
		Readers:       stringListValue([]string{"backup"}),
	}
}

func volumeSchema(t *testing.T) schema.Schema {
	t.Helper()
	var sr resource.SchemaResponse
	(&volumeResource{}).Schema(context.Background(), resource.SchemaRequest{}, &sr)
	if sr.Diagnostics.HasError() {
		t.Fatal(sr.Diagnostics)
	}
	return sr.Schema
}

// unknownComputed marks what the framework marks unknown before a
// resource's ModifyPlan when something changes: the computed attributes
// the configuration leaves null.
func unknownComputed(m volumeModel) volumeModel {
	m.UID = types.StringUnknown()
	m.ID = types.StringUnknown()
	m.SizeBytes = types.Int64Unknown()
	m.CapacityBytes = types.Int64Unknown()
	m.UsedBytes = types.Int64Unknown()
	m.Phase = types.StringUnknown()
	m.BoundTo = types.StringUnknown()
	m.Readers = types.ListUnknown(types.StringType)
	return m
}

// What herd_volume's plan refuses and what it plans, case by case: the
// prior state's deletion_protection guards destroy and replace, a smaller
// size is refused at size (comparing bytes), a growth keeps the uid and
// leaves the capacity to come, the same bytes spelled otherwise keep it.
func TestVolumeModifyPlan(t *testing.T) {
	ctx := context.Background()
	s := volumeSchema(t)
	tests := []struct {
		name      string
		protected bool
		plan      func(volumeModel) *volumeModel // nil: destroy
		wantErr   string                         // in the error's detail; "" for none
		errPath   path.Path
		wantWarn  string // in the one warning's detail; "" for none
		check     func(t *testing.T, got volumeModel)
	}{
		{name: "destroy while protected", protected: true, wantErr: "set deletion_protection = false, apply, then destroy",
			errPath: path.Root("deletion_protection")},
		{name: "destroy unprotected", protected: false},
		{name: "replace while protected", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.Name = types.StringValue("other")
				m = unknownComputed(m)
				return &m
			},
			wantErr: "Changing name replaces volume default/data", errPath: path.Root("deletion_protection")},
		{name: "node not known yet while protected", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.Node = types.StringUnknown()
				m.Namespace = types.StringValue("other")
				m = unknownComputed(m)
				return &m
			},
			wantErr: "Changing node, namespace replaces volume", errPath: path.Root("deletion_protection")},
		{name: "replace unprotected", protected: false,
			plan: func(m volumeModel) *volumeModel {
				m.Node = types.StringValue("node-b@127.0.0.1:2")
				m.Size = types.StringValue("1Mi") // a new volume: no shrink
				m = unknownComputed(m)
				return &m
			}},
		{name: "shrink", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.Size = types.StringValue("1000Mi")
				m = unknownComputed(m)
				return &m
			},
			wantErr: "a volume cannot shrink (from 1Gi to 1000Mi)", errPath: path.Root("size")},
		{name: "grow", protected: true,
			plan: func(m volumeModel) *volumeModel { m.Size = types.StringValue("2Gi"); m = unknownComputed(m); return &m },
			check: func(t *testing.T, got volumeModel) {
				if got.UID.ValueString() != "u1" || got.SizeBytes.ValueInt64() != 2<<30 || !got.CapacityBytes.IsUnknown() ||
					!got.UsedBytes.IsUnknown() {
					t.Fatalf("grow: uid %s size_bytes %s capacity_bytes %s used_bytes %s, want u1, %d, unknown, unknown",
						got.UID, got.SizeBytes, got.CapacityBytes, got.UsedBytes, int64(2<<30))
				}
			}},
		{name: "same bytes spelled otherwise", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.Size = types.StringValue("1024Mi")
				m = unknownComputed(m)
				return &m
			},
			check: func(t *testing.T, got volumeModel) {
				if got.SizeBytes.ValueInt64() != 1<<30 || got.CapacityBytes.ValueInt64() != 1<<29 || got.UID.ValueString() != "u1" {
					t.Fatalf("1Gi to 1024Mi: size_bytes %s capacity_bytes %s uid %s, want kept", got.SizeBytes,
						got.CapacityBytes, got.UID)
				}
			}},
		{name: "protection off", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.DeletionProtection = types.BoolValue(false)
				m = unknownComputed(m)
				return &m
			},
			check: func(t *testing.T, got volumeModel) {
				if got.CapacityBytes.ValueInt64() != 1<<29 || got.ID.IsUnknown() || !got.Phase.IsUnknown() {
					t.Fatalf("protection off: capacity_bytes %s id %s phase %s, want kept, kept, unknown",
						got.CapacityBytes, got.ID, got.Phase)
				}
			}},
		{name: "candidates no longer list the node", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.NodeCandidates = types.ListValueMust(types.StringType, []attr.Value{types.StringValue("node-b@127.0.0.1:2")})
				m = unknownComputed(m)
				return &m
			},
			wantWarn: `default/data stays on node "node-a" at 127.0.0.1:1, which node_candidates no longer lists`,
			check: func(t *testing.T, got volumeModel) {
				if got.Node.ValueString() != "node-a@127.0.0.1:1" || got.ID.IsUnknown() {
					t.Fatalf("candidates changed: node %s id %s, want kept", got.Node, got.ID)
				}
			}},
		{name: "candidates still list the node", protected: true,
			plan: func(m volumeModel) *volumeModel {
				m.NodeCandidates = types.ListValueMust(types.StringType, []attr.Value{
					types.StringValue("node-b@127.0.0.1:2"), types.StringValue("node-a@127.0.0.1:1")})
				m = unknownComputed(m)
				return &m
			}},
		{name: "no change", protected: true,
			plan: func(m volumeModel) *volumeModel { return &m },
			check: func(t *testing.T, got volumeModel) {
				if got.Phase.ValueString() != "Bound" || got.UsedBytes.ValueInt64() != 4096 {
					t.Fatalf("no change: phase %s used_bytes %s, want the state's", got.Phase, got.UsedBytes)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := testVolumeModel(tt.protected)
			state := tfsdk.State{Schema: s, Raw: tftypes.NewValue(s.Type().TerraformType(ctx), nil)}
			if d := state.Set(ctx, &st); d.HasError() {
				t.Fatal(d)
			}
			plan := tfsdk.Plan{Schema: s, Raw: tftypes.NewValue(s.Type().TerraformType(ctx), nil)}
			config := tfsdk.Config{Schema: s, Raw: tftypes.NewValue(s.Type().TerraformType(ctx), nil)}
			if tt.plan != nil {
				if d := plan.Set(ctx, tt.plan(st)); d.HasError() {
					t.Fatal(d)
				}
				config.Raw = plan.Raw.Copy()
			}
			resp := resource.ModifyPlanResponse{Plan: plan, RequiresReplace: path.Paths{}}
			(&volumeResource{}).ModifyPlan(ctx, resource.ModifyPlanRequest{State: state, Plan: plan, Config: config}, &resp)
			if tt.wantErr != "" {
				if resp.Diagnostics.ErrorsCount() != 1 {
					t.Fatalf("want one error, got %v", resp.Diagnostics)
				}
				d := resp.Diagnostics.Errors()[0]
				wp, ok := d.(interface{ Path() path.Path })
				if !ok || !wp.Path().Equal(tt.errPath) || !strings.Contains(d.Detail(), tt.wantErr) {
					t.Fatalf("error %q: %q, want %q at %s", d.Summary(), d.Detail(), tt.wantErr, tt.errPath)
				}
				return
			}
			if resp.Diagnostics.HasError() {
				t.Fatal(resp.Diagnostics)
			}
			switch w := resp.Diagnostics.Warnings(); {
			case tt.wantWarn == "" && len(w) > 0:
				t.Fatalf("want no warning, got %v", w)
			case tt.wantWarn != "" && (len(w) != 1 || !strings.Contains(w[0].Detail(), tt.wantWarn)):
				t.Fatalf("want one warning with %q, got %v", tt.wantWarn, w)
			}
			if tt.check != nil {
				var got volumeModel
				if d := resp.Plan.Get(ctx, &got); d.HasError() {
					t.Fatal(d)
				}
				tt.check(t, got)
			}
		})
	}
}

// A refresh keeps the size's spelling while the bytes are the same, and
// takes agentd's when they differ (grown behind Terraform's back).
func TestVolumeSetFromVolume(t *testing.T) {
	tests := []struct{ prior, remote, want string }{
		{"1024Mi", "1Gi", "1024Mi"},
		{"1Gi", "1Gi", "1Gi"},
		{"1Gi", "2Gi", "2Gi"},
		{"", "1Gi", "1Gi"},
	}
	for _, tt := range tests {
		m := volumeModel{Node: types.StringValue("n@127.0.0.1:1"), Size: types.StringValue(tt.prior)}
		if tt.prior == "" {
			m.Size = types.StringNull() // imported
		}
		b := map[string]int64{"1Gi": 1 << 30, "2Gi": 2 << 30}[tt.remote]
		m.setFromVolume(&herdv1.Volume{
			Spec:      &herdv1.VolumeSpec{Name: "data", Size: tt.remote},
			Uid:       "u1",
			SizeBytes: b,
			Status:    &herdv1.VolumeStatus{Phase: "Available", CapacityBytes: b - 1<<20},
		})
		if m.Size.ValueString() != tt.want || m.Namespace.ValueString() != "default" ||
			m.ID.ValueString() != "n@127.0.0.1:1/default/data" || m.BoundTo.ValueString() != "" || len(m.Readers.Elements()) != 0 {
			t.Errorf("prior %q, remote %q: size %s namespace %s id %s bound_to %s readers %s, want size %q", tt.prior,
				tt.remote, m.Size, m.Namespace, m.ID, m.BoundTo, m.Readers, tt.want)
		}
	}
}
