package resources

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/identityschema"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Resource identity: every resource names the remote object it manages
// with a small identity object, which `import { identity = { ... } }`
// takes instead of an id string (the ids keep working).
//
// An identity never changes for the life of the resource: Terraform and
// OpenTofu refuse an identity that changes on refresh or update. Create
// and import set it; Read and Update only fill it in when the state has
// none (a state written by a provider release without identity) and keep
// it otherwise. The node of herd_service, herd_secret and herd_cluster is
// the one they were created or imported through: their node changes in
// place (another member, another address of the same node), and any
// member (any address) still reaches the object.

var (
	_ resource.ResourceWithIdentity = (*nodeResource)(nil)
	_ resource.ResourceWithIdentity = (*podResource)(nil)
	_ resource.ResourceWithIdentity = (*serviceResource)(nil)
	_ resource.ResourceWithIdentity = (*secretResource)(nil)
	_ resource.ResourceWithIdentity = (*nestedClusterResource)(nil)
)

// Identity of herd_node.
type nodeIdentityModel struct {
	Name    types.String `tfsdk:"name"`
	Address types.String `tfsdk:"address"`
}

// Identity of herd_pod.
type podIdentityModel struct {
	Node types.String `tfsdk:"node"`
	Name types.String `tfsdk:"name"`
}

// Identity of herd_service and herd_secret.
type namespacedIdentityModel struct {
	Namespace types.String `tfsdk:"namespace"`
	Name      types.String `tfsdk:"name"`
	Node      types.String `tfsdk:"node"`
}

// identity of a herd_service.
func (m serviceModel) identity() namespacedIdentityModel {
	return namespacedIdentityModel{Namespace: m.Namespace, Name: m.Name, Node: m.Node}
}

// identity of a herd_secret.
func (m secretModel) identity() namespacedIdentityModel {
	return namespacedIdentityModel{Namespace: m.Namespace, Name: m.Name, Node: m.Node}
}

// Identity of herd_cluster.
type clusterIdentityModel struct {
	Name types.String `tfsdk:"name"`
	Node types.String `tfsdk:"node"`
}

const descIdentityNode = "The `id` of the `herd_node` (`NAME@ADDRESS`) "

func (r *nodeResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = identityschema.Schema{Attributes: map[string]identityschema.Attribute{
		"name":    identityschema.StringAttribute{RequiredForImport: true, Description: "The node's name."},
		"address": identityschema.StringAttribute{RequiredForImport: true, Description: "Where the node's agentd listens."},
	}}
}

func (r *podResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = identityschema.Schema{Attributes: map[string]identityschema.Attribute{
		"node": identityschema.StringAttribute{RequiredForImport: true, Description: descIdentityNode + "that runs the pod."},
		"name": identityschema.StringAttribute{RequiredForImport: true, Description: "The pod's name."},
	}}
}

func namespacedIdentitySchema(what string) identityschema.Schema {
	return identityschema.Schema{Attributes: map[string]identityschema.Attribute{
		"namespace": identityschema.StringAttribute{OptionalForImport: true,
			Description: fmt.Sprintf("The %s's namespace; `default` when not set.", what)},
		"name": identityschema.StringAttribute{RequiredForImport: true, Description: fmt.Sprintf("The %s's name.", what)},
		"node": identityschema.StringAttribute{RequiredForImport: true,
			Description: descIdentityNode + fmt.Sprintf("of a member to reach the %s through.", what)},
	}}
}

func (r *serviceResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = namespacedIdentitySchema("service")
}

func (r *secretResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = namespacedIdentitySchema("secret")
}

func (r *nestedClusterResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = identityschema.Schema{Attributes: map[string]identityschema.Attribute{
		"name": identityschema.StringAttribute{RequiredForImport: true, Description: "The cluster's name."},
		"node": identityschema.StringAttribute{RequiredForImport: true, Description: descIdentityNode + "that owns the cluster."},
	}}
}

// setIdentity sets a new resource's identity. ident is nil when the
// resource is served without identity support.
func setIdentity(ctx context.Context, ident *tfsdk.ResourceIdentity, v any, diags *diag.Diagnostics) {
	if ident == nil {
		return
	}
	diags.Append(ident.Set(ctx, v)...)
}

// fillIdentity sets the identity only when there is none yet (a state
// written without identity); an identity that is there is never changed.
func fillIdentity(ctx context.Context, ident *tfsdk.ResourceIdentity, v any, diags *diag.Diagnostics) {
	if ident == nil || !ident.Raw.IsFullyNull() {
		return
	}
	diags.Append(ident.Set(ctx, v)...)
}

// importIdentity reads the identity of an import by identity into v. It
// reports false for an import by id string.
func importIdentity(ctx context.Context, req resource.ImportStateRequest, v any, diags *diag.Diagnostics) bool {
	if req.ID != "" || req.Identity == nil || req.Identity.Raw.IsFullyNull() {
		return false
	}
	diags.Append(req.Identity.Get(ctx, v)...)
	return true
}

// namespaceOrDefault is an imported identity's namespace: "default" when
// left out.
func namespaceOrDefault(ns types.String) types.String {
	if ns.IsNull() || ns.IsUnknown() || ns.ValueString() == "" {
		return types.StringValue(spec.DefaultNamespace)
	}
	return ns
}
