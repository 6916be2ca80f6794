package resources

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

var (
	_ resource.Resource                   = (*secretResource)(nil)
	_ resource.ResourceWithConfigure      = (*secretResource)(nil)
	_ resource.ResourceWithImportState    = (*secretResource)(nil)
	_ resource.ResourceWithValidateConfig = (*secretResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*secretResource)(nil)
)

// Default timeouts of herd_secret: writing includes waiting until every
// live member the selector matches holds the new version.
const (
	defaultSecretWriteTimeout  = 2 * time.Minute
	defaultSecretDeleteTimeout = time.Minute
	secretPollInterval         = 250 * time.Millisecond
	// privateAppliedChecksum is the private-state key of the checksum of
	// the data Terraform last wrote: a refreshed checksum that differs
	// from it is a change made behind Terraform's back.
	privateAppliedChecksum = "applied_checksum"
)

// NewSecretResource returns the herd_secret resource.
func NewSecretResource() resource.Resource { return &secretResource{} }

type secretResource struct {
	resourceClients
}

func (r *secretResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[secretModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	setIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, req.Config, plan.Timeouts.Create, refuseExistingSecret, &resp.State, resp.Private, &resp.Diagnostics)
}

// refuseExistingSecret stops Create before it writes: ApplySecret would
// quietly overwrite a secret of the same name, so it refuses, and says how
// to adopt it instead.
func refuseExistingSecret(ctx context.Context, sc herdv1.SecretServiceClient, s *herdv1.SecretSpec, nodeID string, diags *diag.Diagnostics) bool {
	_, err := sc.GetSecret(ctx, &herdv1.GetSecretRequest{Namespace: s.GetNamespace(), Name: s.GetName()})
	if err == nil {
		diags.AddError("Secret already exists",
			fmt.Sprintf("The cluster of %s already has a secret %s/%s. Choose another name, delete it, or adopt it: "+
				"import it with the id %q and keep its values in data_wo or data (the first apply writes them).",
				nodeDescription(nodeID), s.GetNamespace(), s.GetName(), secretImportID(s.GetNamespace(), s.GetName(), nodeID)))
		return false
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(diags, fmt.Sprintf("look up secret %s/%s", s.GetNamespace(), s.GetName()), nodeID, err)
		return false
	}
	return true
}

func (r *secretResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	plan, ok := configuredModel[secretModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, req.Config, plan.Timeouts.Update, nil, &resp.State, resp.Private, &resp.Diagnostics)
}

// apply is what Create and Update share once the identity is set: within
// the operation's timeout (Timeouts.Create or Timeouts.Update), it
// prepares the spec, lets check (when set) refuse it, and writes it.
func (r *secretResource) apply(ctx context.Context, plan secretModel, config tfsdk.Config, timeouts timeoutsFunc,
	check func(context.Context, herdv1.SecretServiceClient, *herdv1.SecretSpec, string, *diag.Diagnostics) bool,
	st stateSetter, private privateSetter, diags *diag.Diagnostics) {
	timeout, d := timeouts(ctx, defaultSecretWriteTimeout)
	diags.Append(d...)
	sc, s, ok := r.prepare(ctx, plan, config, diags)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if check != nil && !check(cctx, sc, s, plan.Node.ValueString(), diags) {
		return
	}
	r.write(cctx, sc, s, &plan, st, private, diags)
}

// prepare builds the spec to apply, its data from the plan (data) or the
// configuration (data_wo, which is never in the plan), validated again,
// and gets a client of the write-through node.
func (r *secretResource) prepare(ctx context.Context, plan secretModel, config tfsdk.Config, diags *diag.Diagnostics) (
	herdv1.SecretServiceClient, *herdv1.SecretSpec, bool) {
	var dataWO types.Map
	diags.Append(config.GetAttribute(ctx, path.Root(secretAttrDataWO), &dataWO)...)
	if diags.HasError() {
		return nil, nil, false
	}
	dataAttr, data, ok := secretDataSource(plan.Data, dataWO)
	if !ok {
		diags.AddError("Missing secret data", "Neither data_wo nor data is set. This is a bug in the herd provider "+
			"or in Terraform (write-only attributes need Terraform or OpenTofu 1.11 or later); please report it.")
		return nil, nil, false
	}
	conv := secretSpecFromValues(plan.Namespace, plan.Name, plan.Type, plan.NodeSelector, plan.Immutable, dataAttr, data)
	if errs := conv.validate(); len(errs) > 0 || len(conv.unknown) > 0 {
		addSecretFieldErrors(diags, errs, dataAttr)
		if len(conv.unknown) > 0 {
			diags.AddError("Secret values not known", "Some of the secret's values are still unknown at apply "+
				"time. This is a bug in the herd provider or in Terraform; please report it.")
		}
		return nil, nil, false
	}
	nodeID := plan.Node.ValueString()
	sc, err := r.clients.SecretClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return nil, nil, false
	}
	return sc, conv.spec, true
}

// write applies the secret, waits until every live member the selector
// matches holds it and stores what agentd reports. restarts keeps its
// planned value (agentd's dry run); pods restarted beyond it are reported.
func (r *secretResource) write(ctx context.Context, sc herdv1.SecretServiceClient, s *herdv1.SecretSpec, plan *secretModel,
	st stateSetter, private privateSetter, diags *diag.Diagnostics) {
	nodeID := plan.Node.ValueString()
	what := fmt.Sprintf("apply secret %s/%s", s.GetNamespace(), s.GetName())
	applied, err := sc.ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: s})
	if err != nil {
		addRPCError(diags, what, nodeID, err)
		return
	}
	sec, err := waitSecretSynced(ctx, sc, applied.GetSecret())
	next := *plan
	next.ID = types.StringValue(secretID(s.GetNamespace(), s.GetName()))
	next.DataWO = types.MapNull(types.StringType)
	actual := podRefs(applied.GetRestartedPods())
	if plan.Restarts.IsUnknown() || plan.Restarts.IsNull() {
		next.Restarts = stringListValue(actual)
	} else if planned := stringList(plan.Restarts); !slices.Equal(planned, actual) {
		diags.AddWarning("Restarted pods differ from the plan",
			fmt.Sprintf("The plan listed %s; applying secret %s/%s restarted %s (pods changed between plan and "+
				"apply). restarts keeps the planned list.", listOrNone(planned), s.GetNamespace(), s.GetName(),
				listOrNone(actual)))
	}
	if err != nil && !isWaitExpired(ctx, err) {
		addRPCError(diags, fmt.Sprintf("read secret %s/%s after applying it", s.GetNamespace(), s.GetName()), nodeID, err)
		sec = applied.GetSecret()
	}
	next.setFromSecret(sec)
	if (err == nil && !sec.GetStatus().GetSynced()) || isWaitExpired(ctx, err) {
		diags.AddWarning("Secret not replicated yet",
			fmt.Sprintf("Secret %s/%s (version %d) is not held by every live member its node_selector matches yet, "+
				"as %s sees it: %s. Pods on the members that lack it cannot use it until they hold it.",
				s.GetNamespace(), s.GetName(), sec.GetStatus().GetVersion(), nodeDescription(nodeID),
				laggingSecretMembers(sec.GetStatus())))
	}
	diags.Append(setAppliedChecksum(context.Background(), private, sec.GetStatus().GetChecksum())...)
	diags.Append(st.Set(context.Background(), &next)...)
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "no pod"
	}
	return strings.Join(l, ", ")
}

// waitSecretSynced polls GetSecret until the secret is synced or ctx ends;
// it returns the last secret seen, never nil.
func waitSecretSynced(ctx context.Context, sc herdv1.SecretServiceClient, sec *herdv1.Secret) (*herdv1.Secret, error) {
	if sec == nil {
		sec = &herdv1.Secret{}
	}
	ns, name := sec.GetMeta().GetNamespace(), sec.GetMeta().GetName()
	return waitSynced(ctx, secretPollInterval, sec, func(ctx context.Context) (*herdv1.Secret, error) {
		return sc.GetSecret(ctx, &herdv1.GetSecretRequest{Namespace: ns, Name: name})
	}, (*herdv1.Secret).GetStatus)
}

// laggingSecretMembers names the holders that lack the current version.
func laggingSecretMembers(st *herdv1.SecretStatus) string {
	var out []string
	for _, m := range st.GetMembers() {
		if m.GetVersion() != st.GetVersion() {
			out = append(out, fmt.Sprintf("%s has version %d", m.GetNode(), m.GetVersion()))
		}
	}
	if len(out) == 0 {
		return "a matching member does not hold it at all"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (r *secretResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[secretModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, state.identity(), &resp.Diagnostics)
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	sc, err := r.clients.SecretClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	sec, err := sc.GetSecret(cctx, &herdv1.GetSecretRequest{Namespace: ns, Name: name})
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read secret %s/%s", ns, name), nodeID, err)
		return
	}
	next := state
	next.setFromSecret(sec)
	next.ID = types.StringValue(secretID(next.Namespace.ValueString(), next.Name.ValueString()))
	if next.Restarts.IsNull() || next.Restarts.IsUnknown() {
		next.Restarts = types.ListValueMust(types.StringType, nil) // imported
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *secretResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[secretModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultSecretDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	sc, err := r.clients.SecretClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A secret that is already gone is deleted, and so is one whose name
	// now holds another incarnation (someone else's, which stays).
	uid := state.UID.ValueString()
	_, err = sc.DeleteSecret(cctx, &herdv1.DeleteSecretRequest{Namespace: ns, Name: name, Uid: uid})
	err = replacedIsGone(cctx, err, uid, func(ctx context.Context) (string, error) {
		s, err := sc.GetSecret(ctx, &herdv1.GetSecretRequest{Namespace: ns, Name: name})
		return s.GetUid(), err
	})
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("delete secret %s/%s", ns, name), nodeID, err)
	}
}

// ImportState takes NAMESPACE/NAME@NODEID (or NAME@NODEID in the default
// namespace), as herd_service does. Values are not imported.
// It takes the identity {namespace, name, node} too.
func (r *secretResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ns, name, nodeID, err := namespacedImport(ctx, req, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a secret with NAMESPACE/NAME@NODEID, where NODEID is the id of a herd_node of its cluster "+
			"(NAME@ADDRESS), e.g. default/db-password@node-1@10.0.0.5:7443. Values are not imported: keep them in "+
			"data_wo (or data); the first apply writes them.")
		return
	}
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{
		"id": secretID(ns, name), "node": nodeID, "namespace": ns, "name": name,
	})
	setIdentity(ctx, resp.Identity, namespacedIdentityModel{
		Namespace: types.StringValue(ns), Name: types.StringValue(name), Node: types.StringValue(nodeID),
	}, &resp.Diagnostics)
}
