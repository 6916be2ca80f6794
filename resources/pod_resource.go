package resources

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ resource.Resource                   = (*podResource)(nil)
	_ resource.ResourceWithConfigure      = (*podResource)(nil)
	_ resource.ResourceWithImportState    = (*podResource)(nil)
	_ resource.ResourceWithValidateConfig = (*podResource)(nil)
)

// Default timeouts of herd_pod.
const (
	defaultPodCreateTimeout = 5 * time.Minute
	defaultPodDeleteTimeout = 5 * time.Minute
)

// NewPodResource returns the herd_pod resource.
func NewPodResource() resource.Resource { return &podResource{} }

type podResource struct {
	resourceClients
}

func (r *podResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_pod"
}

func (r *podResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	replaceList := []planmodifier.List{listplanmodifier.RequiresReplace()}
	replaceMap := []planmodifier.Map{mapplanmodifier.RequiresReplace()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}

	resp.Schema = schema.Schema{
		MarkdownDescription: "A pod: one or more containers that run together on one node, as real containerd containers " +
			"managed by the node's agentd.\n\n" +
			"Pods are cattle: every attribute of the specification forces a replacement when it changes (only `timeouts` " +
			"change in place). `apply` waits until the pod has completed successfully or every container has started: a " +
			"container with a `readiness_probe` once it is ready (and then the pod is `ready`), one with only a " +
			"`startup_probe` once that passed, and one without either once it has been running for half a second (by its " +
			"node's clock) without a restart. A container that fails to start, or exits within that half second, fails the " +
			"apply with its exit code and its last log lines, and the pod is deleted so that nothing half-made is left " +
			"behind.\n\n" +
			"Between applies, agentd keeps the pod running on its node (restarting containers according to `restart_policy`). " +
			"A pod deleted behind Terraform's back shows up as a creation in the next plan.\n\n" +
			"Invalid input (names, image references, quantities, labels, ...) is refused at plan time, with the path of the " +
			"offending attribute.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The pod reference `NODEID/NAME`, e.g. `node-a@10.0.0.5:7443/web`. Import a pod with this id.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The node that runs the pod: the `id` of a `herd_node` (`NAME@ADDRESS`). Changing it replaces the pod.",
				Required:            true,
				Validators:          []validator.String{nodeIDValidator()},
				PlanModifiers:       replaceString,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The pod's name, unique on its node: a lowercase RFC 1123 label (at most 63 characters of " +
					"`a-z`, `0-9` and `-`, starting and ending with a letter or digit). Changing it replaces the pod.",
				Required:      true,
				PlanModifiers: replaceString,
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The pod's namespace, a lowercase RFC 1123 label; `default` unless set. The pod may use " +
					"only secrets of its namespace (a reference `NAME` is in it) and only services of its namespace select " +
					"it; a certificate limited to namespaces manages only pods of those. Pod names stay unique on a node " +
					"across namespaces. Changing it replaces the pod.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.DefaultPodNamespace),
				PlanModifiers: replaceString,
			},
			"labels": schema.MapAttribute{
				MarkdownDescription: "Labels of the pod (Kubernetes label syntax: keys are an optional DNS-subdomain prefix and `/`, " +
					"then a name of at most 63 characters; values at most 63 characters). `herd_pods` filters on them. " +
					"Changing them replaces the pod.",
				ElementType:   types.StringType,
				Optional:      true,
				PlanModifiers: replaceMap,
			},
			"restart_policy": schema.StringAttribute{
				MarkdownDescription: "When agentd restarts a container that exited: `Always` (the default), `OnFailure` (non-zero " +
					"exit only) or `Never`. Changing it replaces the pod.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.RestartAlways),
				Validators:    []validator.String{stringvalidator.OneOf(spec.RestartPolicies...)},
				PlanModifiers: replaceString,
			},
			"termination_grace_period_seconds": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("Seconds between SIGTERM and SIGKILL when the pod is stopped, 0 to %d. "+
					"Defaults to %d. Changing it replaces the pod.", spec.MaxGracePeriod, spec.DefaultGracePeriod),
				Optional:      true,
				Computed:      true,
				Default:       int64default.StaticInt64(spec.DefaultGracePeriod),
				Validators:    []validator.Int64{int64validator.Between(0, spec.MaxGracePeriod)},
				PlanModifiers: []planmodifier.Int64{int64planmodifier.RequiresReplace()},
			},
			"image_pull_secret": schema.StringAttribute{
				MarkdownDescription: "A `herd_secret` of type `registry` (`NAME` or `NAMESPACE/NAME`) whose credentials " +
					"pull this pod's images from the registry it names (its `registry` key, a host such as " +
					"`registry.example.com:5000`). The node must hold the secret. Changing it replaces the pod.",
				Optional:      true,
				PlanModifiers: replaceString,
			},
			"restart_on_secret_change": schema.BoolAttribute{
				MarkdownDescription: "When a secret the pod uses (mounts, env, pull secret) gets new data, restart the " +
					"pod's containers instead of only updating its files; pods are restarted one at a time across the " +
					"cluster, and `herd_secret`'s plan lists them in `restarts`. Needed for `secret_env` and for " +
					"programs that read their secrets once. Default `false`. Changing it replaces the pod.",
				Optional:      true,
				Computed:      true,
				Default:       booldefault.StaticBool(false),
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
			},
			"restart_on_config_change": schema.BoolAttribute{
				MarkdownDescription: "When a container's `config_file` content or mode changes, restart that container " +
					"instead of only updating its files (for programs that read their configuration once). Default `false`. " +
					"Changing it replaces the pod.",
				Optional:      true,
				Computed:      true,
				Default:       booldefault.StaticBool(false),
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the pod: a pod recreated under the same name gets a new one.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: "Observed phase of the pod: `Pending`, `Running`, `Succeeded` or `Failed`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"start_time": schema.StringAttribute{
				MarkdownDescription: "When the pod started (RFC 3339), if it has.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"restart_count": schema.Int64Attribute{
				MarkdownDescription: "Total number of container restarts of the pod.",
				Computed:            true,
				PlanModifiers:       []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
			},
			"pod_ip": schema.StringAttribute{
				MarkdownDescription: "The pod's IP address in its node's pod network; empty (`\"\"`) when the node runs pods " +
					"without a pod network.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"ready": schema.BoolAttribute{
				MarkdownDescription: "Whether the pod is ready: running, with every container ready (see `readiness_probe`).",
				Computed:            true,
				PlanModifiers:       []planmodifier.Bool{boolplanmodifier.UseStateForUnknown()},
			},
			"qos_class": schema.StringAttribute{
				MarkdownDescription: "The pod's QoS class by Kubernetes' rules: `Guaranteed` (every container has CPU and memory " +
					"limits, and requests equal to them), `BestEffort` (no container has a request or limit) or `Burstable`. " +
					"It sets how readily the kernel's OOM killer picks the pod's processes (`oom_score_adj` as the kubelet sets it).",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"container_status": schema.ListNestedAttribute{
				MarkdownDescription: "Observed status of each container, as of the last refresh.",
				Computed:            true,
				PlanModifiers:       []planmodifier.List{listplanmodifier.UseStateForUnknown()},
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name":  schema.StringAttribute{MarkdownDescription: "Container name.", Computed: true},
						"state": schema.StringAttribute{MarkdownDescription: "`waiting`, `running` or `terminated`.", Computed: true},
						"reason": schema.StringAttribute{
							MarkdownDescription: "Why the container is in that state, e.g. `ContainerCreating`, `CrashLoopBackOff`, " +
								"`Completed`, `Error`, `OOMKilled`; empty when running normally.",
							Computed: true,
						},
						"restart_count":  schema.Int64Attribute{MarkdownDescription: "How many times agentd restarted the container.", Computed: true},
						"last_exit_code": schema.Int64Attribute{MarkdownDescription: "Exit code of the last run that ended; null if none has.", Computed: true},
						"pid":            schema.Int64Attribute{MarkdownDescription: "Host PID of the container's main process; 0 when not running.", Computed: true},
						"started_at":     schema.StringAttribute{MarkdownDescription: "When the current run started (RFC 3339); null if it has not.", Computed: true},
						"ready": schema.BoolAttribute{
							MarkdownDescription: "Whether the container runs and passes its readiness probe (runs, without one).",
							Computed:            true,
						},
					},
				},
			},
		},
		Blocks: map[string]schema.Block{
			"container": schema.ListNestedBlock{
				MarkdownDescription: fmt.Sprintf("A container of the pod; at least one, at most %d. Adding, removing or "+
					"changing a container replaces the pod.", spec.MaxContainers),
				// Config file content changes in place (pod_storage.go).
				PlanModifiers: []planmodifier.List{replaceUnlessConfigOnly()},
				NestedObject: schema.NestedBlockObject{
					Attributes: map[string]schema.Attribute{
						"name": schema.StringAttribute{
							MarkdownDescription: "The container's name, unique within the pod: a lowercase RFC 1123 label.",
							Required:            true,
							PlanModifiers:       replaceString,
						},
						"image": schema.StringAttribute{
							MarkdownDescription: "OCI image reference, e.g. `registry.example.com/app:1.2` or `busybox@sha256:...`; " +
								"like Docker, `busybox` means `docker.io/library/busybox:latest`.",
							Required:      true,
							PlanModifiers: replaceString,
						},
						"command": schema.ListAttribute{
							MarkdownDescription: "Replaces the image's entrypoint.",
							ElementType:         types.StringType,
							Optional:            true,
							PlanModifiers:       replaceList,
						},
						"args": schema.ListAttribute{
							MarkdownDescription: "Replaces the image's cmd (the arguments of the entrypoint).",
							ElementType:         types.StringType,
							Optional:            true,
							PlanModifiers:       replaceList,
						},
						"env": schema.MapAttribute{
							MarkdownDescription: "Environment variables; names must match `[A-Za-z_][A-Za-z0-9_]*`. Do not put secrets here: they would be stored in plain text in the state.",
							ElementType:         types.StringType,
							Optional:            true,
							PlanModifiers:       replaceMap,
						},
						"working_dir": schema.StringAttribute{
							MarkdownDescription: "Working directory of the main process, an absolute path. Defaults to the image's.",
							Optional:            true,
							PlanModifiers:       replaceString,
						},
						"cpu": schema.StringAttribute{
							MarkdownDescription: "CPU limit as a quantity: `\"500m\"` (millicores), `\"0.5\"` or `\"2\"` (CPUs); at least `1m`, " +
								"no finer than one millicore. Unset: no limit.",
							Optional:      true,
							PlanModifiers: replaceString,
						},
						"memory": schema.StringAttribute{
							MarkdownDescription: "Memory limit as a quantity: `\"512Mi\"`, `\"1Gi\"`, `\"1G\"` or a number of bytes; at least `6Mi`. " +
								"Unset: no limit.",
							Optional:      true,
							PlanModifiers: replaceString,
						},
						"cpu_request": schema.StringAttribute{
							MarkdownDescription: "CPU reserved for the container, a quantity like `cpu`, at most `cpu`. The node admits the pod " +
								"only if the requests of all its pods fit in its allocatable CPU. Unset: equal to `cpu` when `cpu` is set " +
								"(as Kubernetes does), else none.",
							Optional:      true,
							PlanModifiers: replaceString,
						},
						"memory_request": schema.StringAttribute{
							MarkdownDescription: "Memory reserved for the container, a quantity like `memory`, at most `memory`. The node " +
								"admits the pod only if the requests of all its pods fit in its allocatable memory. Unset: equal to " +
								"`memory` when `memory` is set, else none.",
							Optional:      true,
							PlanModifiers: replaceString,
						},
					},
					Blocks: withStorageBlocks(withSecretBlocks(containerBlocks(portBlock(replaceString, replaceList)))),
				},
			},
			"empty_dir": emptyDirBlock(),
			"timeouts":  timeoutsBlock(ctx),
		},
	}
	precomputeTypes(&resp.Schema)
}

// portBlock is the port block of a container. Its values are checked by
// agentd's validation (ValidateConfig), not by framework validators, so
// that each problem is reported once.
func portBlock(replaceString []planmodifier.String, replaceList []planmodifier.List) schema.Block {
	return schema.ListNestedBlock{
		MarkdownDescription: "A port the container listens on; any number. Port names and `container_port`/`protocol` " +
			"pairs are unique across the whole pod (its containers share one network namespace). Adding, removing " +
			"or changing a port replaces the pod.",
		PlanModifiers: replaceList,
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"name": schema.StringAttribute{
					MarkdownDescription: "Name of the port, unique in the pod, to refer to it by name: at most 15 " +
						"characters of `a-z`, `0-9` and `-`, with at least one letter, not starting or ending with `-` " +
						"and without `--` (an IANA service name, as in Kubernetes).",
					Optional:      true,
					PlanModifiers: replaceString,
				},
				"container_port": schema.Int64Attribute{
					MarkdownDescription: "The port number, 1 to 65535.",
					Required:            true,
					PlanModifiers:       []planmodifier.Int64{int64planmodifier.RequiresReplace()},
				},
				"protocol": schema.StringAttribute{
					MarkdownDescription: fmt.Sprintf("`%s` (the default) or `%s`.", spec.ProtocolTCP, spec.ProtocolUDP),
					Optional:            true,
					Computed:            true,
					Default:             stringdefault.StaticString(spec.ProtocolTCP),
					PlanModifiers:       replaceString,
				},
			},
		},
	}
}

// describedTimeouts is the framework's timeouts block with a description
// of the block itself.
func describedTimeouts(ctx context.Context, opts timeouts.Opts, description string) schema.Block {
	b := timeouts.Block(ctx, opts)
	if nb, ok := b.(schema.SingleNestedBlock); ok {
		nb.MarkdownDescription = description
		return nb
	}
	return b
}

// timeoutsBlock is the framework's timeouts block with herd's descriptions.
func timeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long `apply` waits for the pod to start (a Go duration such as `\"90s\"` or `\"10m\"`; "+
			"default `\"%s\"`). When it expires, the pod is deleted and the apply fails with the state of the container "+
			"that did not start and its last log lines.", shortDuration(defaultPodCreateTimeout)),
		DeleteDescription: fmt.Sprintf("How long deleting the pod may take, including its containers' termination grace "+
			"period (a Go duration; default `\"%s\"`).", shortDuration(defaultPodDeleteTimeout)),
	}, "Time limits of the operations on this pod. Changing them does not replace the pod.")
}

// shortDuration renders whole minutes as "5m" rather than "5m0s".
func shortDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// ValidateConfig runs agentd's own pod validation on the configuration, so
// bad input is refused at plan time at the attribute that holds it. Values
// not known yet are skipped.
func (r *podResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg podModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	conv, diags := podSpecFromModel(ctx, cfg, false)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	addFieldErrors(&resp.Diagnostics, validatePodSpec(conv))
}

func (r *podResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, ok := configuredModel[podModel](ctx, r.clients, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	setIdentity(ctx, resp.Identity, podIdentityModel{Node: plan.Node, Name: plan.Name}, &resp.Diagnostics)
	createTimeout, diags := plan.Timeouts.Create(ctx, defaultPodCreateTimeout)
	resp.Diagnostics.Append(diags...)
	deleteTimeout, diags := plan.Timeouts.Delete(ctx, defaultPodDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	conv, diags := podSpecFromModel(ctx, plan, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	if errs := validatePodSpec(conv); len(errs) > 0 {
		addFieldErrors(&resp.Diagnostics, errs)
		return
	}
	podSpec := conv.spec
	nodeID := plan.Node.ValueString()
	podName := podSpec.GetName()
	pc, err := r.clients.PodClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}

	cctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	applied, err := pc.ApplyPod(cctx, &herdv1.ApplyPodRequest{Spec: podSpec})
	if err != nil {
		if status.Code(err) == codes.AlreadyExists {
			resp.Diagnostics.AddError("Pod already exists with another specification",
				fmt.Sprintf("%s already has a pod named %q with a different specification (%s). Pods are replaced, never "+
					"patched: choose another name, delete that pod, or import it with the id %q.",
					nodeDescription(nodeID), podName, status.Convert(err).Message(), nodeid.FormatPod(nodeID, podName)))
			return
		}
		if hasReason(err, herdv1.ReasonSecretNotAvailable) {
			resp.Diagnostics.AddError("Pod uses a secret its node cannot give it",
				fmt.Sprintf("%s refused pod %q: %s\n\nA node holds a secret only when its labels match the secret's "+
					"node_selector (herd_secret's holders lists the nodes that do): run the pod on one of them, or "+
					"widen the selector.", nodeDescription(nodeID), podName, status.Convert(err).Message()))
			return
		}
		addRPCError(&resp.Diagnostics, fmt.Sprintf("create pod %q", podName), nodeID, err)
		return
	}

	pod, failure, err := waitForPod(cctx, pc, applied.GetPod(), applied.GetCreated(), createTimeout)
	if err == nil && failure == nil {
		plan.ID = types.StringValue(nodeid.FormatPod(nodeID, podName))
		plan.setStatus(pod)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}

	// The pod did not start: collect what explains it, then delete it so
	// that nothing half-made is left behind. ctx may be done (timeout or
	// interrupt), so cleanup gets its own deadline.
	cleanupCtx := context.WithoutCancel(ctx)
	var why, logs string
	if err != nil {
		_, why = describeRPCError(fmt.Sprintf("watch pod %q start", podName), nodeID, err)
	} else {
		why = fmt.Sprintf("Pod %q on %s did not start: %s.", podName, nodeDescription(nodeID), failure)
		if c := failureContainer(failure, podSpec); c != "" {
			lctx, lcancel := context.WithTimeout(cleanupCtx, 15*time.Second)
			logs = fmt.Sprintf("\n\nLast %d log lines of container %q:\n%s", podLogTailLines, c, fetchLogTail(lctx, pc, spec.PodNamespace(podSpec), podName, c))
			lcancel()
		}
	}
	dctx, dcancel := context.WithTimeout(cleanupCtx, deleteTimeout)
	defer dcancel()
	summary := "Pod failed to start"
	if failure != nil && failure.timedOut {
		summary = "Pod did not start in time"
	}
	if derr := deletePod(dctx, pc, spec.PodNamespace(podSpec), podName, applied.GetPod().GetUid()); derr != nil {
		_, ddetail := describeRPCError(fmt.Sprintf("delete pod %q", podName), nodeID, derr)
		resp.Diagnostics.AddError(summary, why+logs+"\n\nDeleting the pod afterwards failed too: "+ddetail+
			"\nThe pod is kept in the state as tainted, so the next apply deletes and recreates it.")
		// Record what exists so Terraform taints it rather than forget it.
		plan.ID = types.StringValue(nodeid.FormatPod(nodeID, podName))
		if pod != nil {
			plan.setStatus(pod)
		} else {
			plan.setStatus(&herdv1.Pod{})
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	resp.Diagnostics.AddError(summary, why+logs+"\n\nThe pod was deleted from the node; fix the cause and apply again.")
}

// failureContainer names the container whose logs explain a failure: the
// failing one, or the only one.
func failureContainer(f *podFailure, s *herdv1.PodSpec) string {
	if f.container != "" {
		return f.container
	}
	if len(s.GetContainers()) == 1 {
		return s.GetContainers()[0].GetName()
	}
	return ""
}

// deletePod deletes the pod of this uid (any uid when empty) and waits
// until the node no longer reports it. A pod that does not exist is
// deleted; a pod of the same name and another uid is another incarnation,
// which agentd refuses to delete.
func deletePod(ctx context.Context, pc herdv1.PodServiceClient, namespace, name, uid string) error {
	_, err := pc.DeletePod(ctx, &herdv1.DeletePodRequest{Name: name, Uid: uid, Namespace: namespace})
	if uid != "" && status.Code(err) == codes.FailedPrecondition {
		// Ours is gone if the name now holds another incarnation: that
		// one is someone else's, and stays.
		if p, gerr := pc.GetPod(ctx, &herdv1.GetPodRequest{Name: name, Namespace: namespace}); gerr == nil && p.GetUid() != uid {
			return nil
		}
		return err
	}
	if err != nil && status.Code(err) != codes.NotFound {
		return err
	}
	var last error // of the last GetPod: nil while the node reports the pod
	err = wait.PollUntilContextCancel(ctx, podPollInterval, true, func(ctx context.Context) (bool, error) {
		var p *herdv1.Pod
		p, last = pc.GetPod(ctx, &herdv1.GetPodRequest{Name: name, Namespace: namespace})
		if status.Code(last) == codes.NotFound || (last == nil && uid != "" && p.GetUid() != uid) {
			return true, nil
		}
		if last != nil && !isUnreachable(last) {
			return false, last
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil:
		return err
	case last == nil:
		return fmt.Errorf("pod %q still exists: %w", name, ctx.Err())
	}
	return last
}

func (r *podResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ok := configuredModel[podModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	fillIdentity(ctx, resp.Identity, podIdentityModel{Node: state.Node, Name: state.Name}, &resp.Diagnostics)
	nodeID, podName := state.Node.ValueString(), state.Name.ValueString()
	pc, err := r.clients.PodClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	pod, err := readPod(cctx, r.clients, pc, nodeID, state.Namespace.ValueString(), podName)
	if status.Code(err) == codes.NotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read pod %q", podName), nodeID, err)
		return
	}
	next := state
	resp.Diagnostics.Append(next.setSpec(ctx, pod.GetSpec(), state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	next.ID = types.StringValue(nodeid.FormatPod(nodeID, next.Name.ValueString()))
	next.setStatus(pod)
	resp.Diagnostics.Append(resp.State.Set(ctx, &next)...)
	if !resp.Diagnostics.HasError() {
		stampRead(ctx, resp, nodeID, state.Namespace.ValueString(), podName, pod)
	}
}

// Update changes timeouts, and config file content and modes, which agentd
// updates in the running pod (every other attribute forces a
// replacement); the plan already carries the prior status.
func (r *podResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state podModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	fillIdentity(ctx, resp.Identity, podIdentityModel{Node: plan.Node, Name: plan.Name}, &resp.Diagnostics)
	if !plan.Containers.Equal(state.Containers) {
		r.updateConfig(ctx, plan, state, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// updateConfig applies a spec that differs from the pod's in config files
// only: agentd rewrites them in place and keeps the pod (same uid).
func (r *podResource) updateConfig(ctx context.Context, plan, state podModel, diags *diag.Diagnostics) {
	if !checkConfigured(r.clients, diags) {
		return
	}
	timeout, d := plan.Timeouts.Create(ctx, defaultPodCreateTimeout)
	diags.Append(d...)
	conv, d := podSpecFromModel(ctx, plan, true)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	if errs := validatePodSpec(conv); len(errs) > 0 {
		addFieldErrors(diags, errs)
		return
	}
	nodeID := plan.Node.ValueString()
	pc, err := r.clients.PodClient(nodeID)
	if err != nil {
		addRPCError(diags, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	what := "update config files of pod " + conv.spec.GetName()
	applied, err := pc.ApplyPod(cctx, &herdv1.ApplyPodRequest{Spec: conv.spec})
	if err != nil {
		addRPCError(diags, what, nodeID, err)
		return
	}
	if uid := applied.GetPod().GetUid(); applied.GetCreated() || uid != state.UID.ValueString() {
		diags.AddError("Pod replaced instead of updated",
			fmt.Sprintf("%s on %s: agentd made pod uid %s, the state has %s. This is a bug in the herd provider or agentd; please report it.",
				what, nodeDescription(nodeID), uid, state.UID.ValueString()))
	}
}

func (r *podResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ok := configuredModel[podModel](ctx, r.clients, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	deleteTimeout, diags := state.Timeouts.Delete(ctx, defaultPodDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	nodeID, podName := state.Node.ValueString(), state.Name.ValueString()
	pc, err := r.clients.PodClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	if err := deletePod(cctx, pc, state.Namespace.ValueString(), podName, state.UID.ValueString()); err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("delete pod %q within %s", podName, deleteTimeout), nodeID, err)
	}
}

// ImportState takes the id NODEID/NAME or the identity {node, name}.
func (r *podResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	var ident podIdentityModel
	id := req.ID
	if importIdentity(ctx, req, &ident, &resp.Diagnostics) {
		if resp.Diagnostics.HasError() {
			return
		}
		id = nodeid.FormatPod(ident.Node.ValueString(), ident.Name.ValueString())
	}
	nodeID, podName, err := nodeid.ParsePod(id)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import id", err.Error()+
			"\n\nImport a pod with its id NODEID/NAME, e.g. node-a@10.0.0.5:7443/web or node-a@unix:///run/herd/agentd.sock/web, "+
			"or its identity { node = \"node-a@10.0.0.5:7443\", name = \"web\" }.")
		return
	}
	setAttrs(ctx, &resp.State, &resp.Diagnostics, map[string]string{"id": id, "node": nodeID, "name": podName})
	setIdentity(ctx, resp.Identity, podIdentityModel{Node: types.StringValue(nodeID), Name: types.StringValue(podName)}, &resp.Diagnostics)
}
