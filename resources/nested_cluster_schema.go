package resources

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/objectvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

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
