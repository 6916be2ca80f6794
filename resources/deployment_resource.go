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
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ resource.Resource                = (*deploymentResource)(nil)
	_ resource.ResourceWithConfigure   = (*deploymentResource)(nil)
	_ resource.ResourceWithImportState = (*deploymentResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*deploymentResource)(nil)
	_ resource.ResourceWithIdentity    = (*deploymentResource)(nil)
)

// Default timeouts of herd_deployment: writing includes the rollout, whose
// own deadline (progress_deadline_seconds) defaults to 10 minutes, and a
// rollback after it.
const (
	defaultDeploymentWriteTimeout  = 20 * time.Minute
	defaultDeploymentDeleteTimeout = 10 * time.Minute
	deploymentPollInterval         = 500 * time.Millisecond
)

// NewDeploymentResource returns the herd_deployment resource.
func NewDeploymentResource() resource.Resource { return &deploymentResource{} }

type deploymentResource struct {
	resourceClients
}

func (r *deploymentResource) IdentitySchema(_ context.Context, _ resource.IdentitySchemaRequest, resp *resource.IdentitySchemaResponse) {
	resp.IdentitySchema = namespacedIdentitySchema("deployment")
}

func (r *deploymentResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[deploymentModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	setIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, plan.Timeouts.Create, true, &resp.State, &resp.Diagnostics)
}

func (r *deploymentResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	plan, ok := configuredModel[deploymentModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, plan.identity(), &resp.Diagnostics)
	r.apply(ctx, plan, plan.Timeouts.Update, false, &resp.State, &resp.Diagnostics)
}

// apply writes the plan through its node and waits, within the
// operation's timeout, until the rollout has ended. create refuses a
// deployment that exists already (ApplyDeployment would take it over).
func (r *deploymentResource) apply(ctx context.Context, plan deploymentModel, timeouts timeoutsFunc, create bool,
	st stateSetter, diags *diag.Diagnostics) {
	timeout, d := timeouts(ctx, defaultDeploymentWriteTimeout)
	diags.Append(d...)
	conv, d := deploymentSpecFromModel(ctx, plan, true)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	if errs := conv.validate(); len(errs) > 0 {
		addDeploymentFieldErrors(diags, errs)
		return
	}
	s := conv.spec
	nodeID := plan.Node.ValueString()
	dc, err := r.clients.DeploymentClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := serviceID(s.GetNamespace(), s.GetName())
	if create && !refuseExistingDeployment(cctx, dc, s, nodeID, diags) {
		return
	}
	applied, err := dc.ApplyDeployment(cctx, &herdv1.ApplyDeploymentRequest{Spec: s, PlacementHint: plannedHint(plan.PlannedNodes)})
	if err != nil {
		if hasReason(err, herdv1.ReasonUnplaceable) {
			diags.AddAttributeError(path.Root("replicas"), "Deployment does not fit the cluster",
				fmt.Sprintf("%s cannot place the replicas of %s: %s", nodeDescription(nodeID), key, status.Convert(err).Message()))
			return
		}
		addRPCError(diags, "apply deployment "+key, nodeID, err)
		return
	}
	// planned_nodes is what the plan said; a plan without a dry run gets
	// what this apply planned.
	if plan.PlannedNodes.IsUnknown() || plan.PlannedNodes.IsNull() {
		plan.PlannedNodes = plannedNodes(applied.GetPlan())
	}
	dep, err := waitRolledOut(cctx, dc, applied.GetDeployment())
	next := plan
	diags.Append(next.setFromDeployment(ctx, dep, plan)...)
	if diags.HasError() {
		return
	}
	// The deployment exists from here on: whatever happens, the state
	// records what it reached.
	defer func() { diags.Append(st.Set(ctx, &next)...) }()
	stat := dep.GetStatus()
	switch {
	case err != nil && isWaitExpired(cctx, err):
		op := "update"
		if create {
			op = "create"
		}
		diags.AddError("Deployment rollout not complete in time",
			fmt.Sprintf("Deployment %s (revision %d) is %s after %s: %s\n\nThe rollout goes on in the cluster; "+
				"`terraform refresh` shows where it is, and a longer timeouts.%s waits for it.", key, dep.GetRevision(),
				phaseOrPending(stat), timeout, messageOr(stat, "no message"), op))
	case err != nil:
		addRPCError(diags, fmt.Sprintf("read deployment %s after applying it", key), nodeID, err)
	case stat.GetPhase() == spec.PhaseFailed || stat.GetPhase() == spec.PhaseRolledBack:
		detail := fmt.Sprintf("The rollout of revision %d of deployment %s failed: %s", dep.GetRevision(), key,
			messageOr(stat, "no message"))
		if stat.GetPhase() == spec.PhaseRolledBack {
			detail += fmt.Sprintf("\n\nThe replicas were rolled back to revision %d.", stat.GetCurrentRevision())
		}
		diags.AddError("Deployment rollout failed", detail+"\n\nFix the template and apply again.")
	}
}

// refuseExistingDeployment stops Create before it writes: ApplyDeployment
// would take over a deployment of the same name.
func refuseExistingDeployment(ctx context.Context, dc herdv1.DeploymentServiceClient, s *herdv1.DeploymentSpec, nodeID string, diags *diag.Diagnostics) bool {
	ns, name := s.GetNamespace(), s.GetName()
	_, err := dc.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Namespace: ns, Name: name})
	if err == nil {
		diags.AddError("Deployment already exists",
			fmt.Sprintf("The cluster of %s already has a deployment %s/%s. Choose another name, delete it, or import it "+
				"with the id %q.", nodeDescription(nodeID), ns, name, serviceImportID(ns, name, nodeID)))
		return false
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(diags, fmt.Sprintf("look up deployment %s/%s", ns, name), nodeID, err)
		return false
	}
	return true
}

func phaseOrPending(st *herdv1.DeploymentStatus) string {
	if st.GetPhase() == "" {
		return "not driven yet"
	}
	return st.GetPhase()
}

func messageOr(st *herdv1.DeploymentStatus, dflt string) string {
	if st.GetMessage() == "" {
		return dflt
	}
	return st.GetMessage()
}

// rolledOut reports that the driver has acted on the deployment's version
// and its rollout has ended: complete, failed or rolled back.
func rolledOut(d *herdv1.Deployment) bool {
	st := d.GetStatus()
	if st.GetObservedVersion() < d.GetVersion() {
		return false
	}
	switch st.GetPhase() {
	case spec.PhaseComplete, spec.PhaseFailed, spec.PhaseRolledBack:
		return true
	}
	return false
}

// waitRolledOut polls GetDeployment until the rollout of applied's version
// has ended or ctx ends, riding out an unreachable node. It returns the
// last deployment seen, never nil.
func waitRolledOut(ctx context.Context, dc herdv1.DeploymentServiceClient, applied *herdv1.Deployment) (*herdv1.Deployment, error) {
	if applied == nil {
		applied = &herdv1.Deployment{}
	}
	version := applied.GetVersion()
	last := applied
	if rolledOut(last) {
		return last, nil
	}
	req := &herdv1.GetDeploymentRequest{Namespace: applied.GetSpec().GetNamespace(), Name: applied.GetSpec().GetName()}
	err := wait.PollUntilContextCancel(ctx, deploymentPollInterval, false, func(ctx context.Context) (bool, error) {
		got, err := dc.GetDeployment(ctx, req)
		if err != nil {
			if isUnreachable(err) && ctx.Err() == nil {
				return false, nil
			}
			return false, err
		}
		if got.GetVersion() < version {
			return false, nil // a member that has not seen the write yet
		}
		last = got
		return rolledOut(got), nil
	})
	return last, err
}

func (r *deploymentResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[deploymentModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, state.identity(), &resp.Diagnostics)
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	dc, err := r.clients.DeploymentClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	dep, err := dc.GetDeployment(cctx, &herdv1.GetDeploymentRequest{Namespace: ns, Name: name})
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read deployment %s/%s", ns, name), nodeID, err)
		return
	}
	next := state
	resp.Diagnostics.Append(next.setFromDeployment(ctx, dep, state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
}

func (r *deploymentResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[deploymentModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultDeploymentDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, ns, name := state.Node.ValueString(), state.Namespace.ValueString(), state.Name.ValueString()
	dc, err := r.clients.DeploymentClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	what := fmt.Sprintf("delete deployment %s/%s", ns, name)
	// agentd forgets a deleted deployment at once and its driver removes
	// the replicas afterwards, where nothing here can watch it. Scaling to
	// 0 first drains and deletes them while the status still reports it.
	// Only the incarnation in state is ours: one recreated under the name
	// by someone else is neither scaled nor deleted.
	uid := state.UID.ValueString()
	if err := scaleToZero(cctx, dc, ns, name, uid); err != nil {
		if status.Code(err) == codes.NotFound || errors.Is(err, errReplaced) {
			return
		}
		addRPCError(&resp.Diagnostics, fmt.Sprintf("%s: scale it to 0 replicas first (within %s)", what, timeout), nodeID, err)
		return
	}
	_, err = dc.DeleteDeployment(cctx, &herdv1.DeleteDeploymentRequest{Namespace: ns, Name: name, Uid: uid})
	err = replacedIsGone(cctx, err, uid, func(ctx context.Context) (string, error) {
		d, err := dc.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Namespace: ns, Name: name})
		return d.GetUid(), err
	})
	if err != nil {
		addRPCError(&resp.Diagnostics, what, nodeID, err)
	}
}

// scaleToZero applies the deployment with 0 replicas and waits until its
// driver reports none left (draining ones included). NotFound: the
// deployment is gone already; errReplaced: the name holds another
// incarnation than uid (when set), which is left alone.
func scaleToZero(ctx context.Context, dc herdv1.DeploymentServiceClient, ns, name, uid string) error {
	req := &herdv1.GetDeploymentRequest{Namespace: ns, Name: name}
	dep, err := dc.GetDeployment(ctx, req)
	if err != nil {
		return err
	}
	if uid != "" && dep.GetUid() != uid {
		return fmt.Errorf("deployment %s/%s has uid %s, not %s: %w", ns, name, dep.GetUid(), uid, errReplaced)
	}
	s := proto.Clone(dep.GetSpec()).(*herdv1.DeploymentSpec)
	s.Replicas = 0
	applied, err := dc.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: s})
	if err != nil {
		return err
	}
	version := applied.GetDeployment().GetVersion()
	var left int
	err = wait.PollUntilContextCancel(ctx, deploymentPollInterval, true, func(ctx context.Context) (bool, error) {
		got, err := dc.GetDeployment(ctx, req)
		switch {
		case err != nil && isUnreachable(err) && ctx.Err() == nil:
			return false, nil
		case err != nil:
			return false, err
		case uid != "" && got.GetUid() != uid:
			return false, fmt.Errorf("deployment %s/%s has uid %s, not %s: %w", ns, name, got.GetUid(), uid, errReplaced)
		}
		left = len(got.GetStatus().GetReplicaStatus())
		return got.GetVersion() >= version && got.GetStatus().GetObservedVersion() >= version && left == 0, nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("deployment %s/%s still has %d replica(s): %w", ns, name, left, err)
	}
	return err
}

// ImportState takes NAMESPACE/NAME@NODEID (or NAME@NODEID in the default
// namespace), as herd_service does, or the identity {namespace, name, node}.
func (r *deploymentResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ns, name, nodeID, err := namespacedImport(ctx, req, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a deployment with NAMESPACE/NAME@NODEID, where NODEID is the id of a herd_node of its cluster "+
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
