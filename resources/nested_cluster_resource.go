package resources

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/objectvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
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
	clients Clients
}

// nestedClusterModel is the state of herd_cluster.
type nestedClusterModel struct {
	ID                 types.String   `tfsdk:"id"`
	Node               types.String   `tfsdk:"node"`
	Name               types.String   `tfsdk:"name"`
	KubernetesVersion  types.String   `tfsdk:"kubernetes_version"`
	ControlPlane       types.Object   `tfsdk:"control_plane"`
	Workers            types.Object   `tfsdk:"workers"`
	PodCIDR            types.String   `tfsdk:"pod_cidr"`
	ServiceCIDR        types.String   `tfsdk:"service_cidr"`
	EndpointExposure   types.String   `tfsdk:"endpoint_exposure"`
	NetworkBinding     types.String   `tfsdk:"network_binding"`
	DeletionProtection types.Bool     `tfsdk:"deletion_protection"`
	KeepOnFailure      types.Bool     `tfsdk:"keep_on_failure"`
	StepTimeout        types.String   `tfsdk:"step_timeout"`
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
	UID                types.String   `tfsdk:"uid"`
	Endpoint           types.String   `tfsdk:"endpoint"`
	CACertificate      types.String   `tfsdk:"ca_certificate"`
	HostNamespace      types.String   `tfsdk:"host_namespace"`
	Phase              types.String   `tfsdk:"phase"`
	VMs                types.List     `tfsdk:"vms"`
	Kubeconfig         types.String   `tfsdk:"kubeconfig"`
}

func (r *nestedClusterResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster"
}

func (r *nestedClusterResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A nested Kubernetes cluster: its control plane and workers are KubeVirt " +
			"VirtualMachines on a host Kubernetes cluster, built by the agentd that owns it (`node`, started with " +
			"`--nested-kubeconfig`). agentd generates the cluster's PKI and admin kubeconfig up front, creates the " +
			"VMs (cloud-init runs kubeadm; nothing depends on SSH into a guest), exposes the API server and waits, " +
			"step by step with a bound on each wait (`step_timeout`), until every VM runs and every nested node is " +
			"Ready. Every host object it creates carries herd's marker; agentd never modifies or deletes a host " +
			"object without it.\n\n" +
			"**Changes.** `workers.replicas` scales the cluster in place; `deletion_protection`, `keep_on_failure`, " +
			"`step_timeout` and `timeouts` change in place without touching a VM. Every other change (name, version, " +
			"any attribute of `control_plane`, the workers' machine shape, the ranges, exposure and binding, another " +
			"owning node) **replaces** the cluster, and the plan says so (`# forces replacement`) before anything " +
			"happens. A changed address of the same agentd (same node name) changes in place.\n\n" +
			"**Deletion protection.** `deletion_protection` defaults to `true`: a plan that would destroy or replace " +
			"the cluster is refused (so is `destroy`) until it is set to `false` and applied. agentd refuses too.\n\n" +
			"**Failure.** When a step of the creation fails, agentd removes everything it made (unless " +
			"`keep_on_failure`) and the apply fails with agentd's account: the step, the VM's status and its recent " +
			"events. With `keep_on_failure = true` the objects are kept for debugging and the cluster is saved in the " +
			"state as tainted.\n\n" +
			"**Validation.** Names, the version, replicas, quantities, CIDRs (each a network address, pod and service " +
			"ranges disjoint) and the binding are checked at plan time, with the attribute's path. Overlap of " +
			"`pod_cidr` and `service_cidr` with the host cluster's ranges and herd's own ranges is checked by agentd " +
			"when the apply starts, before any VM is created: only the node knows those ranges, and the provider " +
			"makes no call at plan time.\n\n" +
			"**Testing.** No VM boots in herd's own tests: the test machines have no hardware virtualization " +
			"(`/dev/kvm` exists but the CPU offers no VT-x/AMD-V), so KubeVirt cannot run a guest there. The tests " +
			"check plans through OpenTofu, and agentd's side against a Kubernetes API server that serves " +
			"KubeVirt's resource types, with the VMs' status played by the test; that a real guest boots, runs " +
			"kubeadm and joins is not shown by them.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`NAME@NODEID`, also the import id.",
				Computed:            true,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The agentd that builds and owns the cluster: the `id` of a `herd_node` " +
					"(`NAME@ADDRESS`). Another node name replaces the cluster; another address of the same node does not.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The cluster's name, unique on its node: a lowercase RFC 1123 label of at "+
					"most %d characters (its VMs and host objects are named after it). Replaces.", spec.MaxNestedClusterName),
				Required: true,
			},
			"kubernetes_version": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The nested cluster's Kubernetes release, `MAJOR.MINOR.PATCH` such as "+
					"`1.34.3` (1.%d or later); the images must carry kubeadm for it. Replaces (herd does not upgrade "+
					"clusters in place).", spec.MinNestedMinor),
				Required: true,
			},
			"pod_cidr": schema.StringAttribute{
				MarkdownDescription: "The nested cluster's pod range, an IPv4 network address from `/8` to `/24` such " +
					"as `10.200.0.0/16`. It " +
					"may not overlap `service_cidr` (checked at plan time) nor the host cluster's ranges or herd's " +
					"(`--cluster-cidr`, `--service-cidr`; checked by agentd at apply). No default: no range is safe " +
					"everywhere. Replaces.",
				Required: true,
			},
			"service_cidr": schema.StringAttribute{
				MarkdownDescription: "The nested cluster's service range, an IPv4 network address from `/12` to `/28` " +
					"such as `10.201.0.0/16`; the same overlap rules as `pod_cidr`. Replaces.",
				Required: true,
			},
			"endpoint_exposure": schema.StringAttribute{
				MarkdownDescription: "How the nested API server is reached from outside the host cluster: " +
					"`LoadBalancer` (the default), `NodePort` or `ClusterIP` (only from inside the host cluster). " +
					"Replaces.",
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(nestedExposureLoadBalancer),
			},
			"network_binding": schema.StringAttribute{
				MarkdownDescription: "How the VMs' network interface is bound to the pod network: `bridge` (the " +
					"default) or `passt`. `masquerade` is refused at plan time: every guest would see the same NAT " +
					"address, which breaks a cluster of several nodes. Replaces.",
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(nestedBindingBridge),
			},
			"deletion_protection": schema.BoolAttribute{
				MarkdownDescription: "While `true` (the default), destroying or replacing the cluster is refused, at " +
					"plan time and by agentd. Set it to `false` and apply (an in-place change) before a destroy or a " +
					"replacement.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(true),
			},
			"keep_on_failure": schema.BoolAttribute{
				MarkdownDescription: "When a creation fails, keep what was made for debugging instead of removing it " +
					"(default `false`). The kept cluster is saved in the state as tainted. Changes in place.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
			},
			"step_timeout": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The bound on each wait of agentd's creation and scaling steps "+
					"(a VM running, a nested node Ready, the API server answering), as a Go duration of whole "+
					"seconds from `%s` to `%s` (default `\"%s\"`). A step that does not finish in time fails the "+
					"creation with the step's name. Changes in place. The whole operation is bounded by `timeouts`.",
					durationText(nestedMinStepTimeout), durationText(nestedMaxStepTimeout), shortDuration(nestedDefaultStepTimeout)),
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(shortDuration(nestedDefaultStepTimeout)),
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the cluster.",
				Computed:            true,
			},
			"endpoint": schema.StringAttribute{
				MarkdownDescription: "`https://HOST:PORT` of the nested API server.",
				Computed:            true,
			},
			"ca_certificate": schema.StringAttribute{
				MarkdownDescription: "PEM of the nested cluster's CA (the API server's certificate chains to it).",
				Computed:            true,
			},
			"host_namespace": schema.StringAttribute{
				MarkdownDescription: "The host cluster's namespace that holds the cluster's objects.",
				Computed:            true,
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: "`Creating`, `Ready`, `Failed`, `Scaling` or `Deleting`, at the last refresh.",
				Computed:            true,
			},
			"vms": schema.ListNestedAttribute{
				MarkdownDescription: "The cluster's VirtualMachines at the last refresh, control plane first, by name.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name": schema.StringAttribute{MarkdownDescription: "The VirtualMachine's name.", Computed: true},
						"role": schema.StringAttribute{MarkdownDescription: "`control-plane` or `worker`.", Computed: true},
						"phase": schema.StringAttribute{
							MarkdownDescription: "KubeVirt's printable status (`Starting`, `Running`, …).",
							Computed:            true,
						},
						"ready":      schema.BoolAttribute{MarkdownDescription: "The VM is ready.", Computed: true},
						"ip":         schema.StringAttribute{MarkdownDescription: "The VM's IP.", Computed: true},
						"node_ready": schema.BoolAttribute{MarkdownDescription: "The nested Kubernetes node on it is Ready.", Computed: true},
					},
				},
			},
			"kubeconfig": schema.StringAttribute{
				MarkdownDescription: "The nested cluster's admin kubeconfig (YAML, with the endpoint, the CA and a " +
					"client certificate and key). **Sensitive, and stored in the state**: protect the state like the " +
					"cluster itself, or leave it unused and read the kubeconfig with the ephemeral resource " +
					"`herd_cluster_kubeconfig`, which is never stored.",
				Computed:  true,
				Sensitive: true,
			},
		},
		Blocks: map[string]schema.Block{
			"control_plane": nestedMachinesBlock(true),
			"workers":       nestedMachinesBlock(false),
			"timeouts":      nestedTimeoutsBlock(ctx),
		},
	}
}

// nestedMachinesBlock is the control_plane or workers block. Values are
// checked in ValidateConfig, with the rest of the spec.
func nestedMachinesBlock(controlPlane bool) schema.Block {
	desc := "The control plane's VMs (required). Any change replaces the cluster."
	replicas := schema.Int64Attribute{
		MarkdownDescription: "`1` (the default) or `3` control-plane VMs (etcd needs an odd number of members; 3 " +
			"tolerate one failure).",
		Optional: true,
		Computed: true,
		Default:  int64default.StaticInt64(nestedDefaultControlPlane),
	}
	shape, minCPU, minMem := "Replaces.", "2", "1700Mi"
	if !controlPlane {
		minCPU, minMem = "1", "1Gi"
		desc = "The worker VMs (required). `replicas` scales in place; any other change replaces the cluster."
		replicas = schema.Int64Attribute{
			MarkdownDescription: fmt.Sprintf("The number of worker VMs, 0 to %d. Changes in place: agentd adds or "+
				"removes workers, and the apply waits until the cluster is Ready again.", nestedMaxWorkers),
			Required: true,
		}
		shape = "Replaces the cluster (only `replicas` scales in place)."
	}
	return schema.SingleNestedBlock{
		MarkdownDescription: desc,
		Validators:          []validator.Object{objectvalidator.IsRequired()},
		Attributes: map[string]schema.Attribute{
			"replicas": replicas,
			"cpu": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("Virtual CPUs of each VM, whole CPUs such as `2` (default `%s`; "+
					"at least %s). %s", nestedDefaultCPU, minCPU, shape),
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(nestedDefaultCPU),
			},
			"memory": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("Memory of each VM, a quantity such as `4Gi` (default `%s`; at "+
					"least `%s`). %s", nestedDefaultMemory, minMem, shape),
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(nestedDefaultMemory),
			},
			"image": schema.StringAttribute{
				MarkdownDescription: "The VMs' container disk image: an OS with cloud-init and kubeadm, kubelet and a " +
					"container runtime for `kubernetes_version`. Required (for workers: unless `replicas` is 0). " + shape,
				Optional: true, // ValidateConfig requires it, with the path
			},
			"data_volume_size": schema.StringAttribute{
				MarkdownDescription: "Boot from a DataVolume of this size (e.g. `20Gi`, at least `1Gi`) imported from " +
					"`image` by CDI, instead of an ephemeral container disk. " + shape,
				Optional: true,
			},
		},
	}
}

func nestedTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Update: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long creating the cluster may take, until it is Ready (a Go duration; "+
			"default `\"%s\"`).", shortDuration(defaultNestedCreateTimeout)),
		UpdateDescription: fmt.Sprintf("How long scaling may take, until the cluster is Ready again (default `\"%s\"`).",
			shortDuration(defaultNestedUpdateTimeout)),
		DeleteDescription: fmt.Sprintf("How long removing every host object may take (default `\"%s\"`).",
			shortDuration(defaultNestedDeleteTimeout)),
	}, "Time limits of the operations on this cluster. Changing them does not replace it.")
}

func (r *nestedClusterResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFromProviderData(req.ProviderData, &resp.Diagnostics)
}

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

func (r *nestedClusterResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan nestedClusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultNestedCreateTimeout)
	resp.Diagnostics.Append(diags...)
	s, ok := r.planSpec(ctx, plan, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := plan.Node.ValueString()
	nc, ok := r.client(nodeID, &resp.Diagnostics)
	if !ok {
		return
	}
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
	timeout, diags := plan.Timeouts.Update(ctx, defaultNestedUpdateTimeout)
	resp.Diagnostics.Append(diags...)
	s, ok := r.planSpec(ctx, plan, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := plan.Node.ValueString()
	nc, ok := r.client(nodeID, &resp.Diagnostics)
	if !ok {
		return
	}
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
	for {
		switch cl.GetStatus().GetPhase() {
		case nestedPhaseFailed:
			return cl, &nestedFailedError{cl: cl}
		case nestedPhaseReady:
			if vmsMatch(cl.GetStatus().GetVms(), s) {
				return cl, nil
			}
		}
		select {
		case <-ctx.Done():
			return cl, ctx.Err()
		case <-time.After(nestedPollInterval):
		}
		got, err := nc.GetNestedCluster(ctx, &herdv1.GetNestedClusterRequest{Name: s.GetName()})
		if err != nil {
			if isUnreachable(err) && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				return cl, ctx.Err()
			}
			return cl, err
		}
		cl = got
	}
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
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var state nestedClusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
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

// setFromCluster fills every attribute agentd reports (spec and status),
// keeping prior's spelling of equal quantities, ranges and durations.
func (m *nestedClusterModel) setFromCluster(cl *herdv1.NestedCluster, prior nestedClusterModel) {
	if s := cl.GetSpec(); s != nil {
		if s.GetName() != "" {
			m.Name = types.StringValue(s.GetName())
		}
		m.KubernetesVersion = types.StringValue(s.GetKubernetesVersion())
		m.ControlPlane = machinesValue(s.GetControlPlane(), prior.ControlPlane)
		m.Workers = machinesValue(s.GetWorkers(), prior.Workers)
		m.PodCIDR = cidrFromRemote(s.GetPodCidr(), prior.PodCIDR)
		m.ServiceCIDR = cidrFromRemote(s.GetServiceCidr(), prior.ServiceCIDR)
		m.EndpointExposure = types.StringValue(orDefault(s.GetEndpointExposure(), nestedExposureLoadBalancer))
		m.NetworkBinding = types.StringValue(orDefault(s.GetNetworkBinding(), nestedBindingBridge))
		m.DeletionProtection = types.BoolValue(s.GetDeletionProtection())
		m.KeepOnFailure = types.BoolValue(s.GetKeepOnFailure())
		m.StepTimeout = stepTimeoutFromRemote(s.GetStepTimeoutSeconds(), prior.StepTimeout)
	}
	st := cl.GetStatus()
	m.UID = types.StringValue(cl.GetUid())
	m.Endpoint = types.StringValue(st.GetEndpoint())
	m.CACertificate = types.StringValue(st.GetCaCertificate())
	m.HostNamespace = types.StringValue(st.GetHostNamespace())
	m.Phase = types.StringValue(st.GetPhase())
	m.VMs = vmsValue(st.GetVms())
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *nestedClusterResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var state nestedClusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
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
	if _, err := nc.DeleteNestedCluster(cctx, &herdv1.DeleteNestedClusterRequest{Name: name}); err != nil &&
		status.Code(err) != codes.NotFound {
		addRPCError(&resp.Diagnostics, what, nodeID, err)
		return
	}
	// Deletion may go on in the background (phase Deleting): wait until
	// the cluster is gone.
	var last *herdv1.NestedCluster
	for {
		cl, err := nc.GetNestedCluster(cctx, &herdv1.GetNestedClusterRequest{Name: name})
		switch {
		case status.Code(err) == codes.NotFound:
			return
		case err == nil:
			last = cl
		case isUnreachable(err) && cctx.Err() == nil:
		case cctx.Err() != nil:
		default:
			addRPCError(&resp.Diagnostics, fmt.Sprintf("read cluster %q while deleting it", name), nodeID, err)
			return
		}
		select {
		case <-cctx.Done():
			resp.Diagnostics.AddError("Timed out: "+what, fmt.Sprintf("Cluster %q on %s was still there after %s: %s.",
				name, nodeDescription(nodeID), shortDuration(timeout), progress(last)))
			return
		case <-time.After(nestedPollInterval):
		}
	}
}

// ImportState takes NAME@NODEID.
func (r *nestedClusterResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name, nodeID, err := parseNestedClusterID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a cluster with NAME@NODEID, where NODEID is the id of the herd_node that owns it "+
			"(NAME@ADDRESS), e.g. dev@node-1@10.0.0.5:7443.")
		return
	}
	// Read fills everything else.
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{"id": req.ID, "node": nodeID, "name": name})
}
