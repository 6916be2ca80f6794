package resources

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ resource.Resource                   = (*serviceResource)(nil)
	_ resource.ResourceWithConfigure      = (*serviceResource)(nil)
	_ resource.ResourceWithImportState    = (*serviceResource)(nil)
	_ resource.ResourceWithValidateConfig = (*serviceResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*serviceResource)(nil)
)

// Default timeouts of herd_service: creating and updating include waiting
// until every live member holds the new version.
const (
	defaultServiceWriteTimeout  = 2 * time.Minute
	defaultServiceDeleteTimeout = time.Minute
	servicePollInterval         = 250 * time.Millisecond
)

// NewServiceResource returns the herd_service resource.
func NewServiceResource() resource.Resource { return &serviceResource{} }

type serviceResource struct {
	resourceClients
}

func (r *serviceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[serviceModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	setIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, plan.Timeouts.Create, refuseExistingService, &resp.State, &resp.Diagnostics)
}

// refuseExistingService stops Create before it writes: ApplyService would
// quietly take over a service of the same name (someone else's, or one
// managed elsewhere), so it refuses, and says how to adopt it instead.
func refuseExistingService(ctx context.Context, sc herdv1.ServiceServiceClient, s *herdv1.ServiceSpec, nodeID string, diags *diag.Diagnostics) bool {
	_, err := sc.GetService(ctx, &herdv1.GetServiceRequest{Namespace: s.GetNamespace(), Name: s.GetName()})
	if err == nil {
		diags.AddError("Service already exists",
			fmt.Sprintf("The cluster of %s already has a service %s/%s. Choose another name, delete it, or import it with "+
				"the id %q.", nodeDescription(nodeID), s.GetNamespace(), s.GetName(), serviceImportID(s.GetNamespace(), s.GetName(), nodeID)))
		return false
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(diags, fmt.Sprintf("look up service %s/%s", s.GetNamespace(), s.GetName()), nodeID, err)
		return false
	}
	return true
}

func (r *serviceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	plan, ok := configuredModel[serviceModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, plan.Timeouts.Update, nil, &resp.State, &resp.Diagnostics)
}

// apply is what Create and Update share once the identity is set: within
// the operation's timeout (Timeouts.Create or Timeouts.Update), it
// prepares the spec, lets check (when set) refuse it, and writes it.
func (r *serviceResource) apply(ctx context.Context, plan serviceModel, timeouts timeoutsFunc,
	check func(context.Context, herdv1.ServiceServiceClient, *herdv1.ServiceSpec, string, *diag.Diagnostics) bool,
	st stateSetter, diags *diag.Diagnostics) {
	timeout, d := timeouts(ctx, defaultServiceWriteTimeout)
	diags.Append(d...)
	sc, s, ok := r.prepare(ctx, plan, diags)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if check != nil && !check(cctx, sc, s, plan.Node.ValueString(), diags) {
		return
	}
	r.write(cctx, sc, s, &plan, st, diags)
}

// prepare turns the plan into a spec and gets a client of the node the
// service is written through: what Create and Update share.
func (r *serviceResource) prepare(ctx context.Context, plan serviceModel, diags *diag.Diagnostics) (herdv1.ServiceServiceClient, *herdv1.ServiceSpec, bool) {
	s, ok := r.planSpec(ctx, plan, diags)
	if !ok {
		return nil, nil, false
	}
	nodeID := plan.Node.ValueString()
	sc, err := r.clients.ServiceClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return nil, nil, false
	}
	return sc, s, true
}

// planSpec converts a plan (every value known, but for node ports still
// to be allocated) into the spec to apply, validated again.
func (r *serviceResource) planSpec(ctx context.Context, plan serviceModel, diags *diag.Diagnostics) (*herdv1.ServiceSpec, bool) {
	conv, d := serviceSpecFromModel(ctx, plan, false)
	diags.Append(d...)
	if diags.HasError() {
		return nil, false
	}
	if errs := conv.validate(); len(errs) > 0 {
		addServiceFieldErrors(diags, errs)
		return nil, false
	}
	return conv.spec, true
}

// write applies the service, waits until every live member holds it and
// stores what agentd reports. When the plan promised synced = true (the
// repair of a service some member lacked), not getting there is an error;
// otherwise it is a warning and the next plan repairs it.
func (r *serviceResource) write(ctx context.Context, sc herdv1.ServiceServiceClient, s *herdv1.ServiceSpec, plan *serviceModel,
	st stateSetter, diags *diag.Diagnostics) {
	nodeID := plan.Node.ValueString()
	what := fmt.Sprintf("apply service %s/%s", s.GetNamespace(), s.GetName())
	applied, err := sc.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: s})
	if err != nil {
		addRPCError(diags, what, nodeID, err)
		return
	}
	svc, err := waitServiceSynced(ctx, sc, applied.GetService())
	next := *plan
	next.ID = types.StringValue(serviceID(s.GetNamespace(), s.GetName()))
	if err != nil && !isWaitExpired(ctx, err) {
		addRPCError(diags, fmt.Sprintf("read service %s/%s after applying it", s.GetNamespace(), s.GetName()), nodeID, err)
		// The service exists: record what was applied, so it is not lost.
		diags.Append(next.setFromService(ctx, applied.GetService(), *plan)...)
		diags.Append(st.Set(ctx, &next)...)
		return
	}
	promised := plan.Synced.ValueBool() && !plan.Synced.IsUnknown()
	diags.Append(next.setFromService(ctx, svc, *plan)...)
	if !svc.GetStatus().GetSynced() {
		detail := fmt.Sprintf("Service %s/%s (version %d) is not held by every live member yet, as %s sees it: %s. "+
			"The next plan writes it again.", s.GetNamespace(), s.GetName(), svc.GetStatus().GetVersion(),
			nodeDescription(nodeID), laggingMembers(svc.GetStatus()))
		if promised {
			diags.AddError("Service not replicated", detail)
		} else {
			diags.AddWarning("Service not replicated yet", detail)
		}
	}
	diags.Append(st.Set(ctx, &next)...)
}

// stateSetter is what Create and Update write their state through.
type stateSetter interface {
	Set(context.Context, any) diag.Diagnostics
}

// waitServiceSynced polls GetService until the service is synced or ctx
// ends; it returns the last service seen, never nil.
func waitServiceSynced(ctx context.Context, sc herdv1.ServiceServiceClient, svc *herdv1.Service) (*herdv1.Service, error) {
	if svc == nil {
		svc = &herdv1.Service{}
	}
	ns, name := svc.GetSpec().GetNamespace(), svc.GetSpec().GetName()
	return waitSynced(ctx, servicePollInterval, svc, func(ctx context.Context) (*herdv1.Service, error) {
		return sc.GetService(ctx, &herdv1.GetServiceRequest{Namespace: ns, Name: name})
	}, (*herdv1.Service).GetStatus)
}

// isWaitExpired reports that waiting ended because the operation's time
// was up, which leaves the service applied but not (yet) synced.
func isWaitExpired(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (status.Code(err) == codes.DeadlineExceeded || errors.Is(err, ctx.Err()))
}

// laggingMembers names the members that do not hold the current version.
func laggingMembers(st *herdv1.ServiceStatus) string {
	var out []string
	for _, m := range st.GetMembers() {
		if m.GetVersion() != st.GetVersion() {
			out = append(out, fmt.Sprintf("%s has version %d", m.GetNode(), m.GetVersion()))
		}
	}
	if len(out) == 0 {
		return "no member named"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (r *serviceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[serviceModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, state.identity(), &resp.Diagnostics)
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	sc, err := r.clients.ServiceClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	svc, err := sc.GetService(cctx, &herdv1.GetServiceRequest{Namespace: ns, Name: name})
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read service %s/%s", ns, name), nodeID, err)
		return
	}
	next := state
	resp.Diagnostics.Append(next.setFromService(ctx, svc, state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	next.ID = types.StringValue(serviceID(next.Namespace.ValueString(), next.Name.ValueString()))
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *serviceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[serviceModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultServiceDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	sc, err := r.clients.ServiceClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A service that is already gone is deleted: DeleteService succeeds
	// with existed=false, and NotFound is accepted too. Only the
	// incarnation in state is deleted: one recreated under the name by
	// someone else is not ours.
	uid := state.UID.ValueString()
	_, err = sc.DeleteService(cctx, &herdv1.DeleteServiceRequest{Namespace: ns, Name: name, Uid: uid})
	err = replacedIsGone(cctx, err, uid, func(ctx context.Context) (string, error) {
		s, err := sc.GetService(ctx, &herdv1.GetServiceRequest{Namespace: ns, Name: name})
		return s.GetUid(), err
	})
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("delete service %s/%s", ns, name), nodeID, err)
	}
}

// ImportState takes NAMESPACE/NAME@NODEID (or NAME@NODEID in the default
// namespace): the service's id and the member to reach it through.
// It takes the identity {namespace, name, node} too.
func (r *serviceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ns, name, nodeID, err := namespacedImport(ctx, req, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a service with NAMESPACE/NAME@NODEID, where NODEID is the id of a herd_node of its cluster "+
			"(NAME@ADDRESS), e.g. default/web@node-1@10.0.0.5:7443.")
		return
	}
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{
		"id": serviceID(ns, name), "node": nodeID, "namespace": ns, "name": name,
	})
	setIdentity(ctx, resp.Identity, namespacedIdentityModel{
		Namespace: types.StringValue(ns), Name: types.StringValue(name), Node: types.StringValue(nodeID),
	}, &resp.Diagnostics)
}

// namespacedImport returns what an import of herd_service or herd_secret
// names, from its identity or its id NAMESPACE/NAME@NODEID.
func namespacedImport(ctx context.Context, req resource.ImportStateRequest, diags *diag.Diagnostics) (ns, name, nodeID string, err error) {
	var ident namespacedIdentityModel
	if !importIdentity(ctx, req, &ident, diags) {
		return parseServiceImportID(req.ID)
	}
	if diags.HasError() {
		return "", "", "", nil
	}
	id := serviceImportID(namespaceOrDefault(ident.Namespace).ValueString(), ident.Name.ValueString(), ident.Node.ValueString())
	return parseServiceImportID(id)
}

func serviceID(ns, name string) string { return ns + "/" + name }

func serviceImportID(ns, name, nodeID string) string { return serviceID(ns, name) + "@" + nodeID }

// parseServiceImportID splits NAMESPACE/NAME@NODEID at the first '@':
// namespaces and names are RFC 1123 labels, which hold no '@'.
func parseServiceImportID(id string) (ns, name, nodeID string, err error) {
	ref, nodeID, ok := strings.Cut(id, "@")
	if !ok || ref == "" {
		return "", "", "", fmt.Errorf("import id %q: want NAMESPACE/NAME@NODEID", id)
	}
	ns, name, ok = strings.Cut(ref, "/")
	if !ok {
		ns, name = spec.DefaultNamespace, ref
	}
	for _, part := range []struct{ what, v string }{{"namespace", ns}, {"name", name}} {
		if err := spec.ValidateName(part.v); err != nil {
			return "", "", "", fmt.Errorf("import id %q: %s: %w", id, part.what, err)
		}
	}
	if _, _, err := nodeid.Parse(nodeID); err != nil {
		return "", "", "", fmt.Errorf("import id %q: node id: %w", id, err)
	}
	return ns, name, nodeID, nil
}
