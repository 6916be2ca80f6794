package resources

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

var (
	_ resource.Resource                   = (*nestedClusterResource)(nil)
	_ resource.ResourceWithConfigure      = (*nestedClusterResource)(nil)
	_ resource.ResourceWithImportState    = (*nestedClusterResource)(nil)
	_ resource.ResourceWithValidateConfig = (*nestedClusterResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*nestedClusterResource)(nil)
)

// Default timeouts of herd_cluster: creating boots VMs and runs kubeadm.
const (
	defaultNestedCreateTimeout = 30 * time.Minute
	defaultNestedUpdateTimeout = 30 * time.Minute
	defaultNestedDeleteTimeout = 15 * time.Minute
)

// nestedPollInterval is how often a wait asks GetNestedCluster.
var nestedPollInterval = 2 * time.Second

// NewNestedClusterResource returns the herd_cluster resource.
func NewNestedClusterResource() resource.Resource { return &nestedClusterResource{} }

type nestedClusterResource struct {
	resourceClients
}

// planSpec converts a plan (every value known) into the spec to apply,
// validated again.
func (r *nestedClusterResource) planSpec(ctx context.Context, plan nestedClusterModel, diags *diag.Diagnostics) (*herdv1.NestedClusterSpec, bool) {
	conv, d := nestedSpecFromModel(ctx, plan)
	diags.Append(d...)
	if diags.HasError() {
		return nil, false
	}
	if errs := conv.validate(); len(errs) > 0 || len(conv.unknown) > 0 {
		addNestedFieldErrors(diags, errs)
		if len(conv.unknown) > 0 && len(errs) == 0 {
			diags.AddError("Cluster specification not known", "Some of the cluster's values are still unknown at "+
				"apply time. This is a bug in the herd provider or in Terraform; please report it.")
		}
		return nil, false
	}
	return conv.spec, true
}

func (r *nestedClusterResource) client(nodeID string, diags *diag.Diagnostics) (herdv1.NestedClusterServiceClient, bool) {
	nc, err := r.clients.NestedClusterClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return nil, false
	}
	return nc, true
}

// specAndClient validates the planned spec and dials the owning node: what
// Create and Update both need before they call agentd.
func (r *nestedClusterResource) specAndClient(ctx context.Context, plan nestedClusterModel, diags *diag.Diagnostics) (*herdv1.NestedClusterSpec, herdv1.NestedClusterServiceClient, bool) {
	s, ok := r.planSpec(ctx, plan, diags)
	if !ok {
		return nil, nil, false
	}
	nc, ok := r.client(plan.Node.ValueString(), diags)
	return s, nc, ok
}

func (r *nestedClusterResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[nestedClusterModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	setIdentity(ctx, resp.Identity, clusterIdentityModel{Name: plan.Name, Node: plan.Node}, &resp.Diagnostics)
	timeout, diags := plan.Timeouts.Create(ctx, defaultNestedCreateTimeout)
	resp.Diagnostics.Append(diags...)
	s, nc, ok := r.specAndClient(ctx, plan, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := plan.Node.ValueString()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// ApplyNestedCluster would answer for an existing cluster of the same
	// name as for a new one: refuse, and say how to adopt it.
	_, err := nc.GetNestedCluster(cctx, &herdv1.GetNestedClusterRequest{Name: s.GetName()})
	if err == nil {
		resp.Diagnostics.AddError("Cluster already exists",
			fmt.Sprintf("%s already has a nested cluster %q. Choose another name, delete it, or import it with the "+
				"id %q.", nodeDescription(nodeID), s.GetName(), nestedClusterID(s.GetName(), nodeID)))
		return
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("look up cluster %q", s.GetName()), nodeID, err)
		return
	}
	applied, err := nc.ApplyNestedCluster(cctx, &herdv1.ApplyNestedClusterRequest{Spec: s})
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("create cluster %q", s.GetName()), nodeID, err)
		return
	}
	cl, werr := waitNestedReady(cctx, nc, applied.GetCluster(), s)
	next := plan
	if werr == nil {
		r.fill(ctx, nc, &next, cl, &resp.Diagnostics)
		resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
		return
	}
	var failed *nestedFailedError
	switch {
	case errors.As(werr, &failed):
		resp.Diagnostics.AddError("Cluster creation failed", failed.detail(nodeID, s.GetKeepOnFailure()))
		if !s.GetKeepOnFailure() {
			return // agentd removed what it made: nothing to record
		}
	case cctx.Err() != nil:
		resp.Diagnostics.AddError("Timed out: create cluster "+s.GetName(),
			fmt.Sprintf("Cluster %q on %s was not Ready within %s: %s. agentd goes on in the background; the cluster "+
				"is saved in the state as tainted, so the next apply replaces it (set deletion_protection = false "+
				"for that) unless you untaint it once it is Ready (`tofu untaint`).", s.GetName(),
				nodeDescription(nodeID), shortDuration(timeout), progress(cl)))
	default:
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read cluster %q while creating it", s.GetName()), nodeID, werr)
	}
	// The cluster exists: record it (tainted, as the apply failed).
	r.fill(ctx, nc, &next, cl, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *nestedClusterResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan, state nestedClusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	fillIdentity(ctx, resp.Identity, clusterIdentityModel{Name: plan.Name, Node: plan.Node}, &resp.Diagnostics)
	timeout, diags := plan.Timeouts.Update(ctx, defaultNestedUpdateTimeout)
	resp.Diagnostics.Append(diags...)
	s, nc, ok := r.specAndClient(ctx, plan, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := plan.Node.ValueString()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	what := fmt.Sprintf("update cluster %q", s.GetName())
	applied, err := nc.ApplyNestedCluster(cctx, &herdv1.ApplyNestedClusterRequest{Spec: s})
	if err != nil {
		addRPCError(&resp.Diagnostics, what, nodeID, err)
		return
	}
	cl := applied.GetCluster()
	if !workersReplicas(plan.Workers).Equal(workersReplicas(state.Workers)) {
		var werr error
		cl, werr = waitNestedReady(cctx, nc, cl, s)
		if werr != nil {
			// The state keeps the old replicas: the next plan scales again.
			var failed *nestedFailedError
			switch {
			case errors.As(werr, &failed):
				resp.Diagnostics.AddError("Scaling failed", failed.detail(nodeID, true))
			case cctx.Err() != nil:
				resp.Diagnostics.AddError("Timed out: "+what, fmt.Sprintf("Cluster %q on %s was not Ready with %d "+
					"worker(s) within %s: %s. agentd goes on in the background; the next plan scales again.",
					s.GetName(), nodeDescription(nodeID), s.GetWorkers().GetReplicas(), shortDuration(timeout), progress(cl)))
			default:
				addRPCError(&resp.Diagnostics, fmt.Sprintf("read cluster %q while scaling it", s.GetName()), nodeID, werr)
			}
			return
		}
	}
	next := plan
	r.fill(ctx, nc, &next, cl, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

// nestedFailedError is a cluster agentd reports as Failed.
type nestedFailedError struct{ cl *herdv1.NestedCluster }

func (e *nestedFailedError) Error() string { return "cluster failed: " + e.cl.GetStatus().GetMessage() }

func (e *nestedFailedError) detail(nodeID string, kept bool) string {
	st := e.cl.GetStatus()
	msg := st.GetMessage()
	if msg == "" {
		msg = "(agentd gave no message)"
	}
	after := "agentd removed every host object it had made for it."
	if kept {
		after = fmt.Sprintf("agentd kept what it made (keep_on_failure), in host namespace %q.", st.GetHostNamespace())
	}
	return fmt.Sprintf("Cluster %q on %s failed at step %q: %s\n\n%s", e.cl.GetSpec().GetName(),
		nodeDescription(nodeID), st.GetStep(), msg, after)
}

// progress describes where a cluster is: its phase and step.
func progress(cl *herdv1.NestedCluster) string {
	st := cl.GetStatus()
	if st == nil {
		return "no status was read"
	}
	out := fmt.Sprintf("phase %s", st.GetPhase())
	if st.GetStep() != "" {
		out += fmt.Sprintf(", step in progress %q", st.GetStep())
	}
	if st.GetMessage() != "" {
		out += ": " + st.GetMessage()
	}
	return out
}

// waitNestedReady polls GetNestedCluster until the cluster is Ready with
// the VMs the spec asks for, or Failed (a *nestedFailedError), or ctx
// ends (ctx's error). It returns the last cluster seen.
func waitNestedReady(ctx context.Context, nc herdv1.NestedClusterServiceClient, cl *herdv1.NestedCluster,
	s *herdv1.NestedClusterSpec) (*herdv1.NestedCluster, error) {
	if cl == nil {
		cl = &herdv1.NestedCluster{}
	}
	done := func() (bool, error) {
		switch cl.GetStatus().GetPhase() {
		case nestedPhaseFailed:
			return true, &nestedFailedError{cl: cl}
		case nestedPhaseReady:
			return vmsMatch(cl.GetStatus().GetVms(), s), nil
		}
		return false, nil
	}
	if ok, err := done(); ok || err != nil {
		return cl, err
	}
	err := wait.PollUntilContextCancel(ctx, nestedPollInterval, false, func(ctx context.Context) (bool, error) {
		got, err := nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: s.GetName()})
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if isUnreachable(err) {
				return false, nil
			}
			return false, err
		}
		cl = got
		return done()
	})
	return cl, err
}

// vmsMatch reports whether a Ready cluster has the VMs the spec asks for
// (agentd may report Ready a moment before a scale shows in its VMs).
func vmsMatch(vms []*herdv1.NestedVM, s *herdv1.NestedClusterSpec) bool {
	if len(vms) == 0 {
		return true // agentd lists no VMs: trust the phase
	}
	return countVMs(vms, nestedRoleControlPlane) == int(s.GetControlPlane().GetReplicas()) &&
		countVMs(vms, nestedRoleWorker) == int(s.GetWorkers().GetReplicas())
}

// fill sets the computed attributes that are unknown in m from cl, and the
// kubeconfig from GetNestedClusterKubeconfig. Known (planned) values are
// kept: the plan promised them.
func (r *nestedClusterResource) fill(ctx context.Context, nc herdv1.NestedClusterServiceClient, m *nestedClusterModel,
	cl *herdv1.NestedCluster, diags *diag.Diagnostics) {
	st := cl.GetStatus()
	m.ID = types.StringValue(nestedClusterID(m.Name.ValueString(), m.Node.ValueString()))
	orRemote := func(v types.String, remote string) types.String {
		if v.IsUnknown() || v.IsNull() {
			return types.StringValue(remote)
		}
		return v
	}
	m.UID = orRemote(m.UID, cl.GetUid())
	m.Endpoint = orRemote(m.Endpoint, st.GetEndpoint())
	m.CACertificate = orRemote(m.CACertificate, st.GetCaCertificate())
	m.HostNamespace = orRemote(m.HostNamespace, st.GetHostNamespace())
	m.Phase = orRemote(m.Phase, st.GetPhase())
	if m.VMs.IsUnknown() || m.VMs.IsNull() {
		m.VMs = vmsValue(st.GetVms())
	}
	if m.Kubeconfig.IsUnknown() || m.Kubeconfig.IsNull() {
		m.Kubeconfig = r.kubeconfig(ctx, nc, m.Node.ValueString(), m.Name.ValueString(), types.StringNull(), diags)
	}
}

// kubeconfig reads the cluster's admin kubeconfig. Before agentd has
// generated it (NotFound, FailedPrecondition) it is prior, or "".
func (r *nestedClusterResource) kubeconfig(ctx context.Context, nc herdv1.NestedClusterServiceClient, nodeID, name string,
	prior types.String, diags *diag.Diagnostics) types.String {
	if prior.IsUnknown() || prior.IsNull() {
		prior = types.StringValue("")
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	got, err := nc.GetNestedClusterKubeconfig(cctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: name})
	switch status.Code(err) {
	case codes.OK:
		return types.StringValue(string(got.GetKubeconfig()))
	case codes.NotFound, codes.FailedPrecondition:
		return prior
	}
	summary, detail := describeRPCError(fmt.Sprintf("read the kubeconfig of cluster %q", name), nodeID, err)
	diags.AddWarning(summary, detail+"\n\nkubeconfig keeps its last value.")
	return prior
}

func (r *nestedClusterResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[nestedClusterModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, clusterIdentityModel{Name: state.Name, Node: state.Node}, &resp.Diagnostics)
	nodeID, name := state.Node.ValueString(), state.Name.ValueString()
	nc, ok := r.client(nodeID, &resp.Diagnostics)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	cl, err := nc.GetNestedCluster(cctx, &herdv1.GetNestedClusterRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read cluster %q", name), nodeID, err)
		return
	}
	next := state
	next.setFromCluster(cl, state)
	next.ID = types.StringValue(nestedClusterID(next.Name.ValueString(), nodeID))
	next.Kubeconfig = r.kubeconfig(ctx, nc, nodeID, name, state.Kubeconfig, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *nestedClusterResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[nestedClusterModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	// The plan refuses this already; a CLI that skips planning the
	// destroy still meets this check, and agentd's.
	if state.DeletionProtection.IsNull() || state.DeletionProtection.ValueBool() {
		resp.Diagnostics.AddAttributeError(path.Root("deletion_protection"), "Cluster is protected from deletion",
			"deletion_protection is set: set it to false and apply, then destroy.")
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultNestedDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, name := state.Node.ValueString(), state.Name.ValueString()
	nc, ok := r.client(nodeID, &resp.Diagnostics)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	what := fmt.Sprintf("delete cluster %q", name)
	// Only the incarnation in state: one recreated under the name by
	// someone else is not ours, and stays.
	uid := state.UID.ValueString()
	_, err := nc.DeleteNestedCluster(cctx, &herdv1.DeleteNestedClusterRequest{Name: name, Uid: uid})
	err = replacedIsGone(cctx, err, uid, func(ctx context.Context) (string, error) {
		cl, err := nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: name})
		return cl.GetUid(), err
	})
	if err != nil {
		addRPCError(&resp.Diagnostics, what, nodeID, err)
		return
	}
	// Deletion may go on in the background (phase Deleting): wait until
	// the cluster is gone.
	var last *herdv1.NestedCluster
	err = wait.PollUntilContextCancel(cctx, nestedPollInterval, true, func(ctx context.Context) (bool, error) {
		cl, err := nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: name})
		switch {
		case status.Code(err) == codes.NotFound, err == nil && uid != "" && cl.GetUid() != uid:
			return true, nil
		case err == nil:
			last = cl
		case ctx.Err() != nil, isUnreachable(err):
			// Gone quiet or out of time: keep asking; the loop ends on ctx.
			return false, nil //nolint:nilerr // not a failure of the delete
		default:
			return false, err
		}
		return false, nil
	})
	switch {
	case err == nil:
	case cctx.Err() != nil:
		resp.Diagnostics.AddError("Timed out: "+what, fmt.Sprintf("Cluster %q on %s was still there after %s: %s.",
			name, nodeDescription(nodeID), shortDuration(timeout), progress(last)))
	default:
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read cluster %q while deleting it", name), nodeID, err)
	}
}

// ImportState takes NAME@NODEID.
func (r *nestedClusterResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	var ident clusterIdentityModel
	id := req.ID
	if importIdentity(ctx, req, &ident, &resp.Diagnostics) {
		if resp.Diagnostics.HasError() {
			return
		}
		id = nestedClusterID(ident.Name.ValueString(), ident.Node.ValueString())
	}
	name, nodeID, err := parseNestedClusterID(id)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a cluster with NAME@NODEID, where NODEID is the id of the herd_node that owns it "+
			"(NAME@ADDRESS), e.g. dev@node-1@10.0.0.5:7443, or with its identity "+
			"{ name = \"dev\", node = \"node-1@10.0.0.5:7443\" }.")
		return
	}
	// Read fills everything else.
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{"id": id, "node": nodeID, "name": name})
	setIdentity(ctx, resp.Identity, clusterIdentityModel{Name: types.StringValue(name), Node: types.StringValue(nodeID)}, &resp.Diagnostics)
}
