package resources

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func TestParseServiceImportID(t *testing.T) {
	tests := []struct {
		id, ns, name, node string
		wantErr            bool
	}{
		{id: "default/web@node-1@127.0.0.1:7443", ns: "default", name: "web", node: "node-1@127.0.0.1:7443"},
		{id: "shop/cart@node-1@unix:///run/herd/agentd.sock", ns: "shop", name: "cart", node: "node-1@unix:///run/herd/agentd.sock"},
		{id: "web@node-1@10.0.0.5:7443", ns: "default", name: "web", node: "node-1@10.0.0.5:7443"},
		{id: "default/web", wantErr: true},
		{id: "default/web@", wantErr: true},
		{id: "default/web@node-1", wantErr: true},
		{id: "Default/web@node-1@127.0.0.1:7443", wantErr: true},
		{id: "default/@node-1@127.0.0.1:7443", wantErr: true},
		{id: "@node-1@127.0.0.1:7443", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			ns, name, node, err := parseServiceImportID(tt.id)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %q %q %q", ns, name, node)
				}
				return
			}
			if err != nil || ns != tt.ns || name != tt.name || node != tt.node {
				t.Fatalf("got %q %q %q %v, want %q %q %q", ns, name, node, err, tt.ns, tt.name, tt.node)
			}
			if got, want := serviceImportID(ns, name, node), tt.ns+"/"+tt.name+"@"+tt.node; got != want {
				t.Fatalf("serviceImportID = %q, want %q", got, want)
			}
		})
	}
}

func TestServiceAttributePath(t *testing.T) {
	tests := []struct {
		in   spec.Path
		want path.Path
	}{
		{spec.Path{}.Field("name"), path.Root("name")},
		{spec.Path{}.Field("ports"), path.Root("port")},
		{spec.Path{}.Field("ports").Index(1).Field("target_port"), path.Root("port").AtListIndex(1).AtName("target_port")},
		{spec.Path{}.Field("selector").Key("app"), path.Root("selector").AtMapKey("app")},
	}
	for _, tt := range tests {
		if got := serviceAttributePath(tt.in); !got.Equal(tt.want) {
			t.Errorf("serviceAttributePath(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// testServiceModel is a known, applied ClusterIP service.
func testServiceModel(synced bool) serviceModel {
	port := types.ObjectValueMust(servicePortAttrTypes, map[string]attr.Value{
		"name": types.StringNull(), "protocol": types.StringValue("TCP"), "port": types.Int64Value(80),
		"target_port": types.Int64Value(80), "target_port_name": types.StringNull(), "node_port": types.Int64Value(0),
	})
	return serviceModel{
		ID:              types.StringValue("default/web"),
		Node:            types.StringValue("node-a@127.0.0.1:1"),
		Namespace:       types.StringValue("default"),
		Name:            types.StringValue("web"),
		Type:            types.StringValue("ClusterIP"),
		Selector:        stringMapValue(map[string]string{"app": "web"}),
		SessionAffinity: types.StringValue("None"),
		Ports:           types.ListValueMust(servicePortObjectType, []attr.Value{port}),
		Timeouts: timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
			"create": types.StringType, "update": types.StringType, "delete": types.StringType,
		})},
		ClusterIP: types.StringValue("10.96.0.10"),
		DNSName:   types.StringValue("web.default.svc.cluster.local"),
		UID:       types.StringValue("u1"),
		Version:   types.Int64Value(7),
		Endpoints: endpointsValue(nil),
		Synced:    types.BoolValue(synced),
	}
}

// A service that some live member lacks (synced = false) is planned as an
// in-place update to synced = true, with a new version to come; a synced
// one is left alone.
func TestServiceModifyPlanRepairsUnsynced(t *testing.T) {
	ctx := context.Background()
	r := &serviceResource{}
	var sr resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sr)
	s := sr.Schema
	for _, synced := range []bool{false, true} {
		m := testServiceModel(synced)
		state := tfsdk.State{Schema: s, Raw: tftypes.NewValue(s.Type().TerraformType(ctx), nil)}
		if d := state.Set(ctx, &m); d.HasError() {
			t.Fatal(d)
		}
		plan := tfsdk.Plan{Schema: s, Raw: state.Raw.Copy()}
		resp := resource.ModifyPlanResponse{Plan: plan}
		r.ModifyPlan(ctx, resource.ModifyPlanRequest{State: state, Plan: plan, Config: tfsdk.Config{Schema: s, Raw: state.Raw}}, &resp)
		if resp.Diagnostics.HasError() {
			t.Fatal(resp.Diagnostics)
		}
		var got serviceModel
		if d := resp.Plan.Get(ctx, &got); d.HasError() {
			t.Fatal(d)
		}
		if synced {
			if !got.Synced.ValueBool() || !got.Version.Equal(types.Int64Value(7)) {
				t.Fatalf("synced service: plan changed to synced=%s version=%s", got.Synced, got.Version)
			}
			continue
		}
		if !got.Synced.Equal(types.BoolValue(true)) || !got.Version.IsUnknown() || !got.Endpoints.IsUnknown() {
			t.Fatalf("unsynced service: plan synced=%s version=%s endpoints unknown=%v, want true, unknown, unknown",
				got.Synced, got.Version, got.Endpoints.IsUnknown())
		}
		if !got.ClusterIP.Equal(m.ClusterIP) || !got.UID.Equal(m.UID) {
			t.Fatalf("unsynced service: cluster_ip %s uid %s changed in the plan", got.ClusterIP, got.UID)
		}
	}
}
