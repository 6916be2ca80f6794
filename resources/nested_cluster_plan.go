package resources

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// ValidateConfig refuses a bad specification at plan time, at the
// attribute that holds the problem. Unknown values are skipped.
func (r *nestedClusterResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg nestedClusterModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	conv, diags := nestedSpecFromModel(ctx, cfg)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	addNestedFieldErrors(&resp.Diagnostics, conv.validate())
}

// nestedReplacePaths lists the attributes whose change replaces the
// cluster: agentd's own list (spec.NestedImmutableChanges: everything but
// workers.replicas, deletion_protection, keep_on_failure and step_timeout)
// and another node name (another address of the same node is no change).
// Where planned values are not known yet, any of them that may differ
// counts as a change.
func nestedReplacePaths(ctx context.Context, plan, state nestedClusterModel) path.Paths {
	var out path.Paths
	if nodeNameChanged(plan.Node, state.Node) {
		out = append(out, path.Root("node"))
	}
	pc, d1 := nestedSpecFromModel(ctx, plan)
	sc, d2 := nestedSpecFromModel(ctx, state)
	if d1.HasError() || d2.HasError() || len(pc.unknown) > 0 || len(sc.unknown) > 0 || len(pc.errs) > 0 {
		return append(out, nestedChangedPaths(ctx, plan, state)...)
	}
	for _, f := range spec.NestedImmutableChanges(sc.spec, pc.spec) {
		p := path.Empty()
		for _, name := range strings.Split(f, ".") {
			p = p.AtName(name)
		}
		out = append(out, p)
	}
	return out
}

// nestedChangedPaths compares attribute by attribute (for plans with
// unknown values): every attribute that replaces and is not equal.
func nestedChangedPaths(ctx context.Context, plan, state nestedClusterModel) path.Paths {
	var out path.Paths
	for _, a := range []struct {
		name        string
		plan, state types.String
	}{
		{"name", plan.Name, state.Name},
		{"kubernetes_version", plan.KubernetesVersion, state.KubernetesVersion},
		{"pod_cidr", plan.PodCIDR, state.PodCIDR},
		{"service_cidr", plan.ServiceCIDR, state.ServiceCIDR},
		{"endpoint_exposure", plan.EndpointExposure, state.EndpointExposure},
		{"network_binding", plan.NetworkBinding, state.NetworkBinding},
	} {
		if !a.plan.Equal(a.state) {
			out = append(out, path.Root(a.name))
		}
	}
	out = append(out, machinesReplacePaths(ctx, "control_plane", plan.ControlPlane, state.ControlPlane, true)...)
	out = append(out, machinesReplacePaths(ctx, "workers", plan.Workers, state.Workers, false)...)
	return out
}

func machinesReplacePaths(ctx context.Context, block string, plan, state types.Object, withReplicas bool) path.Paths {
	if plan.IsUnknown() || plan.IsNull() || state.IsNull() || state.IsUnknown() {
		if plan.Equal(state) {
			return nil
		}
		return path.Paths{path.Root(block)}
	}
	pa, sa := plan.Attributes(), state.Attributes()
	var out path.Paths
	for _, name := range []string{"replicas", "cpu", "memory", "image", "data_volume_size"} {
		if name == "replicas" && !withReplicas {
			continue
		}
		if pv, sv := pa[name], sa[name]; pv == nil || sv == nil || !pv.Equal(sv) {
			out = append(out, path.Root(block).AtName(name))
		}
	}
	return out
}

// nodeNameChanged reports whether the owning agentd changes: another node
// name, or a node id not known yet.
func nodeNameChanged(plan, state types.String) bool {
	if plan.Equal(state) {
		return false
	}
	if plan.IsUnknown() || plan.IsNull() || state.IsNull() || state.IsUnknown() {
		return true
	}
	pn, _, errP := nodeid.Parse(plan.ValueString())
	sn, _, errS := nodeid.Parse(state.ValueString())
	return errP != nil || errS != nil || pn != sn
}

// ModifyPlan decides replacement (see nestedReplacePaths), refuses at plan
// time to destroy or replace a cluster whose state has deletion_protection
// set, and keeps the computed attributes of an in-place change: only a
// change of workers.replicas changes the phase and the VMs.
func (r *nestedClusterResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() {
		return // creation
	}
	var state nestedClusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	protected := state.DeletionProtection.IsNull() || state.DeletionProtection.ValueBool()
	if req.Plan.Raw.IsNull() {
		if protected {
			resp.Diagnostics.AddAttributeError(path.Root("deletion_protection"), "Cluster is protected from deletion",
				deletionProtectedDetail(state, "Destroying it"))
		}
		return
	}
	var plan nestedClusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if replace := nestedReplacePaths(ctx, plan, state); len(replace) > 0 {
		resp.RequiresReplace = append(resp.RequiresReplace, replace...)
		if protected {
			names := make([]string, len(replace))
			for i, p := range replace {
				names[i] = p.String()
			}
			resp.Diagnostics.AddAttributeError(path.Root("deletion_protection"), "Cluster is protected from deletion",
				deletionProtectedDetail(state, fmt.Sprintf("This plan replaces it (destroys it, then creates it "+
					"again) because %s changed, which", strings.Join(names, ", ")))+
					" Setting deletion_protection = false alone is an in-place change: apply it first, then this one.")
		}
		return
	}
	set := func(name string, v attr.Value) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), v)...)
	}
	if plan.Node.IsUnknown() || plan.Name.IsUnknown() {
		set("id", types.StringUnknown())
	} else {
		set("id", types.StringValue(nestedClusterID(plan.Name.ValueString(), plan.Node.ValueString())))
	}
	set("uid", state.UID)
	set("endpoint", state.Endpoint)
	set("ca_certificate", state.CACertificate)
	set("host_namespace", state.HostNamespace)
	set("kubeconfig", state.Kubeconfig)
	if workersReplicas(plan.Workers).Equal(workersReplicas(state.Workers)) {
		set("phase", state.Phase)
		set("vms", state.VMs)
	} else {
		set("phase", types.StringUnknown())
		set("vms", types.ListUnknown(nestedVMObjectType))
	}
}

func deletionProtectedDetail(state nestedClusterModel, what string) string {
	return fmt.Sprintf("%s would delete cluster %q on %s and every host object it owns, and its deletion_protection "+
		"is set: set deletion_protection = false and apply, then destroy.", what, state.Name.ValueString(),
		nodeDescription(state.Node.ValueString()))
}

func workersReplicas(o types.Object) types.Int64 {
	if o.IsNull() || o.IsUnknown() {
		return types.Int64Unknown()
	}
	v, _ := o.Attributes()["replicas"].(types.Int64)
	return v
}
