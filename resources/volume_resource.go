package resources

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/identityschema"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ resource.Resource                   = (*volumeResource)(nil)
	_ resource.ResourceWithConfigure      = (*volumeResource)(nil)
	_ resource.ResourceWithImportState    = (*volumeResource)(nil)
	_ resource.ResourceWithValidateConfig = (*volumeResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*volumeResource)(nil)
	_ resource.ResourceWithIdentity       = (*volumeResource)(nil)
)

// Default timeouts of herd_volume: creating one writes a sparse image and
// an ext4 filesystem, growing one resizes it; neither takes long.
const (
	defaultVolumeWriteTimeout  = 2 * time.Minute
	defaultVolumeDeleteTimeout = time.Minute
)

// NewVolumeResource returns the herd_volume resource.
func NewVolumeResource() resource.Resource { return &volumeResource{} }

type volumeResource struct {
	resourceClients
}

func (r *volumeResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = identityschema.Schema{Attributes: map[string]identityschema.Attribute{
		"node": identityschema.StringAttribute{RequiredForImport: true, Description: descIdentityNode + "that holds the volume."},
		"namespace": identityschema.StringAttribute{OptionalForImport: true,
			Description: "The volume's namespace; `default` when not set."},
		"name": identityschema.StringAttribute{RequiredForImport: true, Description: "The volume's name."},
	}}
}

func (r *volumeResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[volumeModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	if plan.Node.IsUnknown() || plan.Node.IsNull() {
		var cands []string
		resp.Diagnostics.Append(plan.NodeCandidates.ElementsAs(ctx, &cands, false)...)
		if resp.Diagnostics.HasError() {
			return
		}
		s := plan.volumeSpec()
		node, err := r.chooseNode(ctx, spec.VolumeNamespace(s)+"/"+s.GetName(), cands)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("node_candidates"), "No node for the volume", err.Error())
			return
		}
		plan.Node = types.StringValue(node)
	}
	setIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, plan.Timeouts.Create, refuseExistingVolume, &resp.State, &resp.Diagnostics)
}

// refuseExistingVolume stops Create before it writes: ApplyVolume would
// quietly adopt (and maybe grow) a volume of the same name, with someone
// else's data in it, so it refuses, and says how to import it instead.
func refuseExistingVolume(ctx context.Context, vc herdv1.VolumeServiceClient, s *herdv1.VolumeSpec, nodeID string, diags *diag.Diagnostics) bool {
	_, err := vc.GetVolume(ctx, &herdv1.GetVolumeRequest{Namespace: s.GetNamespace(), Name: s.GetName()})
	if err == nil {
		diags.AddError("Volume already exists",
			fmt.Sprintf("%s already has a volume %s/%s. Choose another name, delete it, or import it with the id %q "+
				"(terraform import, or an import block).", nodeDescription(nodeID), s.GetNamespace(), s.GetName(),
				volumeID(nodeID, s.GetNamespace(), s.GetName())))
		return false
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(diags, fmt.Sprintf("look up volume %s/%s", s.GetNamespace(), s.GetName()), nodeID, err)
		return false
	}
	return true
}

func (r *volumeResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	plan, ok := configuredModel[volumeModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, plan.Timeouts.Update, nil, &resp.State, &resp.Diagnostics)
}

// apply is what Create and Update share: within the operation's timeout,
// it validates the spec again, lets check (when set) refuse it, applies it
// and stores what agentd reports.
func (r *volumeResource) apply(ctx context.Context, plan volumeModel, timeouts timeoutsFunc,
	check func(context.Context, herdv1.VolumeServiceClient, *herdv1.VolumeSpec, string, *diag.Diagnostics) bool,
	st stateSetter, diags *diag.Diagnostics) {
	timeout, d := timeouts(ctx, defaultVolumeWriteTimeout)
	diags.Append(d...)
	s := plan.volumeSpec()
	if errs := spec.ValidateVolume(s); len(errs) > 0 {
		addVolumeFieldErrors(diags, errs)
	}
	if diags.HasError() {
		return
	}
	nodeID := plan.Node.ValueString()
	vc, err := r.clients.VolumeClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if check != nil && !check(cctx, vc, s, nodeID, diags) {
		return
	}
	applied, err := vc.ApplyVolume(cctx, &herdv1.ApplyVolumeRequest{Spec: s})
	if err != nil {
		addRPCError(diags, fmt.Sprintf("apply volume %s/%s", s.GetNamespace(), s.GetName()), nodeID, err)
		return
	}
	next := plan
	next.setFromVolume(applied.GetVolume())
	next.Size = plan.Size // what was applied, in the configuration's spelling
	if msg := applied.GetVolume().GetStatus().GetMessage(); msg != "" {
		diags.AddWarning("Volume not usable",
			fmt.Sprintf("Volume %s/%s on %s was applied, but agentd reports: %s", s.GetNamespace(), s.GetName(),
				nodeDescription(nodeID), msg))
	}
	diags.Append(st.Set(ctx, &next)...)
}

func (r *volumeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[volumeModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, state.identity(), &resp.Diagnostics)
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	vc, err := r.clients.VolumeClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	v, err := vc.GetVolume(cctx, &herdv1.GetVolumeRequest{Namespace: ns, Name: name})
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read volume %s/%s", ns, name), nodeID, err)
		return
	}
	// Another uid under the name: ours was deleted and someone created
	// another (with other data). It is not ours to manage; the plan shows a
	// creation, which refuses and says how to import that one.
	if uid := state.UID.ValueString(); uid != "" && v.GetUid() != uid {
		resp.Diagnostics.AddWarning("Volume replaced outside Terraform",
			fmt.Sprintf("Volume %s/%s on %s is not the one Terraform created (uid %s, now %s): it was deleted and "+
				"created again behind Terraform's back. It is removed from the state; import it to manage it.",
				ns, name, nodeDescription(nodeID), uid, v.GetUid()))
		resp.State.RemoveResource(ctx)
		return
	}
	next := state
	next.setFromVolume(v)
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *volumeResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[volumeModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultVolumeDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	vc, err := r.clients.VolumeClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A volume that is already gone is deleted (existed=false, or
	// NotFound), and so is one whose name now holds another incarnation
	// (someone else's, which stays). agentd refuses the delete of ours
	// while its deletion_protection is true or a pod mounts it.
	uid := state.UID.ValueString()
	_, err = vc.DeleteVolume(cctx, &herdv1.DeleteVolumeRequest{Namespace: ns, Name: name, Uid: uid})
	err = replacedIsGone(cctx, err, uid, func(ctx context.Context) (string, error) {
		v, err := vc.GetVolume(ctx, &herdv1.GetVolumeRequest{Namespace: ns, Name: name})
		return v.GetUid(), err
	})
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("delete volume %s/%s", ns, name), nodeID, err)
	}
}

// ImportState takes the id NODEID/NAMESPACE/NAME, or the identity
// {node, namespace, name}.
func (r *volumeResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	var nodeID, ns, name string
	var err error
	var ident namespacedIdentityModel
	if importIdentity(ctx, req, &ident, &resp.Diagnostics) {
		if resp.Diagnostics.HasError() {
			return
		}
		nodeID, ns, name, err = parseVolumeID(volumeID(ident.Node.ValueString(),
			namespaceOrDefault(ident.Namespace).ValueString(), ident.Name.ValueString()))
	} else {
		nodeID, ns, name, err = parseVolumeID(req.ID)
	}
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a volume with NODEID/NAMESPACE/NAME, where NODEID is the id of the herd_node that holds it "+
			"(NAME@ADDRESS), e.g. node-1@10.0.0.5:7443/default/data.")
		return
	}
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{
		"id": volumeID(nodeID, ns, name), "node": nodeID, "namespace": ns, "name": name,
	})
	setIdentity(ctx, resp.Identity, namespacedIdentityModel{
		Namespace: types.StringValue(ns), Name: types.StringValue(name), Node: types.StringValue(nodeID),
	}, &resp.Diagnostics)
}
