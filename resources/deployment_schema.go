package resources

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func (r *deploymentResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_deployment"
}

func (r *deploymentResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	keepInt := []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A deployment: `replicas` copies of a pod `template` that herd places on the nodes of a " +
			"cluster, rolls out without dropping a request and heals between applies.\n\n" +
			"Deployments are cluster-scoped, like services: written through any member (`node`) and replicated to every " +
			"member; exactly one live member drives each deployment (creates and deletes its replicas). The agentd must " +
			"run in a cluster.\n\n" +
			"`replicas` changes in place (a scale: surviving replicas are untouched). A change of the template, " +
			"`selector`, `node_selector`, `placement` or `strategy` changes in place too; a template change makes a new " +
			"`revision` and rolls it out (`strategy`): new replicas are started and must become ready before old ones " +
			"are drained and deleted (but for a template that writes a `herd_volume`: its one replica is stopped before " +
			"the new one starts, see `template`). The namespace and name force a replacement.\n\n" +
			"`plan` asks `node` for a dry run: the rollout plan appears as a warning (revisions, steps, nodes that gain " +
			"or lose replicas) and `planned_nodes` lists where new replicas go; a replica that fits on no node fails the " +
			"plan with the reason for each node. When `node` cannot be reached at plan time, the plan says so and goes " +
			"on without the dry run.\n\n" +
			"`apply` waits until the rollout is `Complete`. A rollout that fails (a replica that does not become ready " +
			"within `strategy.progress_deadline_seconds`) fails the apply with the failing replica's probe message and " +
			"last log lines; with `strategy.auto_rollback` the replicas return to the last complete revision " +
			"(`phase = \"RolledBack\"`, `revision` the one rolled back to). The failed template stays the " +
			"deployment's, so the next plan is empty until the configuration changes; fix the template and apply.\n\n" +
			"Invalid input is refused at plan time, with the path of the offending attribute.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`NAMESPACE/NAME`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The member to write, read and dry-run the deployment through: the `id` of a " +
					"`herd_node` (`NAME@ADDRESS`). Any member serves the cluster's deployments, so changing it does not " +
					"replace the deployment; it does not decide where replicas run.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The deployment's namespace, a lowercase RFC 1123 label; default `default`. Changing " +
					"it replaces the deployment.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.DefaultNamespace),
				PlanModifiers: replaceString,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The deployment's name, unique in its namespace: a lowercase RFC 1123 "+
					"label of at most %d characters (replicas are named `NAME-REVISION-xxxxx`). Changing it replaces the "+
					"deployment.", spec.MaxDeploymentName),
				Required:      true,
				PlanModifiers: replaceString,
			},
			"replicas": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("How many replicas to run, 0 to %d. Changes in place: a scale creates or "+
					"deletes (drains first) only the replicas that differ.", spec.MaxReplicas),
				Required: true,
			},
			"selector": schema.MapAttribute{
				MarkdownDescription: "Labels that identify the replicas (label syntax as for `herd_pod`); not empty, and " +
					"every one must be in `template.labels`. A `herd_service` with the same selector serves the " +
					"replicas. herd also labels every replica `herd.io/deployment = NAMESPACE.NAME` and " +
					"`herd.io/revision = REVISION`.",
				ElementType: types.StringType,
				Required:    true,
			},
			"node_selector": schema.MapAttribute{
				MarkdownDescription: "Only nodes with all these labels run replicas.",
				ElementType:         types.StringType,
				Optional:            true,
			},
			"placement": schema.SingleNestedAttribute{
				MarkdownDescription: "How replicas are spread over the nodes that fit them (their requests fit the " +
					"node's free capacity, the node matches `node_selector` and holds the secrets the template uses).",
				Optional: true,
				Computed: true,
				Default: objectdefault.StaticValue(types.ObjectValueMust(placementAttrTypes, map[string]attr.Value{
					"strategy": types.StringValue(spec.PlacementBinPack), "max_per_node": types.Int64Value(0),
				})),
				Attributes: map[string]schema.Attribute{
					"strategy": schema.StringAttribute{
						MarkdownDescription: fmt.Sprintf("`%s` (the default: the fullest node that fits, leaving whole "+
							"nodes free) or `%s` (the node with the fewest replicas of this deployment, then the emptiest).",
							spec.PlacementBinPack, spec.PlacementSpread),
						Optional: true,
						Computed: true,
						Default:  stringdefault.StaticString(spec.PlacementBinPack),
					},
					"max_per_node": schema.Int64Attribute{
						MarkdownDescription: "At most this many replicas on one node; 0 (the default): no limit.",
						Optional:            true,
						Computed:            true,
						Default:             int64default.StaticInt64(0),
					},
				},
			},
			"strategy": schema.SingleNestedAttribute{
				MarkdownDescription: "How a new revision replaces the old one.",
				Optional:            true,
				Computed:            true,
				Default:             objectdefault.StaticValue(defaultStrategyObject()),
				Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						MarkdownDescription: fmt.Sprintf("`%s` (the default): new replicas replace old ones a few at a "+
							"time (`max_surge`, `max_unavailable`), each old one drained only once a new one is available. "+
							"`%s`: every new replica is started next to the old ones; once all are available, services "+
							"switch to them at once, then the old ones are drained and deleted.",
							spec.StrategyRollingUpdate, spec.StrategyBlueGreen),
						Optional: true,
						Computed: true,
						Default:  stringdefault.StaticString(spec.StrategyRollingUpdate),
					},
					"max_surge": schema.Int64Attribute{
						MarkdownDescription: fmt.Sprintf("`%s`: how many replicas above `replicas` may exist during a "+
							"rollout; default %d. `max_surge` and `max_unavailable` must not both be 0.",
							spec.StrategyRollingUpdate, spec.DefaultMaxSurge),
						Optional: true,
						Computed: true,
						Default:  int64default.StaticInt64(spec.DefaultMaxSurge),
					},
					"max_unavailable": schema.Int64Attribute{
						MarkdownDescription: fmt.Sprintf("`%s`: how many replicas below `replicas` may be available "+
							"during a rollout; default %d.", spec.StrategyRollingUpdate, spec.DefaultMaxUnavailable),
						Optional: true,
						Computed: true,
						Default:  int64default.StaticInt64(spec.DefaultMaxUnavailable),
					},
					"min_ready_seconds": schema.Int64Attribute{
						MarkdownDescription: fmt.Sprintf("A new replica counts as available once it has been ready this "+
							"many seconds, 0 (the default) to %d; below `progress_deadline_seconds`.", spec.MaxMinReadySeconds),
						Optional: true,
						Computed: true,
						Default:  int64default.StaticInt64(0),
					},
					"progress_deadline_seconds": schema.Int64Attribute{
						MarkdownDescription: fmt.Sprintf("A rollout that is not complete this many seconds after it "+
							"started has failed; 1 to %d, default %d.", spec.MaxProgressDeadline, spec.DefaultProgressDeadline),
						Optional: true,
						Computed: true,
						Default:  int64default.StaticInt64(spec.DefaultProgressDeadline),
					},
					"auto_rollback": schema.BoolAttribute{
						MarkdownDescription: "When a rollout fails, return to the last revision whose rollout completed " +
							"(default `true`). Either way the apply fails with the reason.",
						Optional: true,
						Computed: true,
						Default:  booldefault.StaticBool(true),
					},
				},
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the deployment: one recreated under the same name " +
					"gets a new one (and never adopts the old one's replicas).",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"revision": schema.Int64Attribute{
				MarkdownDescription: "The revision the replicas run (converge on): 1 at creation, one more with each " +
					"template change; after a rollback, the revision rolled back to.",
				Computed:      true,
				PlanModifiers: keepInt,
			},
			"ready_replicas": schema.Int64Attribute{
				MarkdownDescription: "Replicas that are ready, as of the last refresh.",
				Computed:            true,
				PlanModifiers:       keepInt,
			},
			"updated_replicas": schema.Int64Attribute{
				MarkdownDescription: "Replicas of `revision`, as of the last refresh.",
				Computed:            true,
				PlanModifiers:       keepInt,
			},
			"available_replicas": schema.Int64Attribute{
				MarkdownDescription: "Replicas ready for `strategy.min_ready_seconds`, as of the last refresh.",
				Computed:            true,
				PlanModifiers:       keepInt,
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("`%s`, `%s`, `%s` or `%s`, as of the last refresh.",
					spec.PhaseProgressing, spec.PhaseComplete, spec.PhaseFailed, spec.PhaseRolledBack),
				Computed:      true,
				PlanModifiers: keepString,
			},
			"message": schema.StringAttribute{
				MarkdownDescription: "Why the deployment is in its phase, e.g. the probe message and log lines of the " +
					"replica that failed a rollout.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"replica_status": schema.ListNestedAttribute{
				MarkdownDescription: "The replicas, as of the last refresh, ordered by pod name.",
				Computed:            true,
				PlanModifiers:       []planmodifier.List{listplanmodifier.UseStateForUnknown()},
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"pod":      schema.StringAttribute{MarkdownDescription: "The replica's pod name.", Computed: true},
						"uid":      schema.StringAttribute{MarkdownDescription: "The pod's uid.", Computed: true},
						"node":     schema.StringAttribute{MarkdownDescription: "The node that runs it.", Computed: true},
						"revision": schema.Int64Attribute{MarkdownDescription: "Its revision.", Computed: true},
						"phase":    schema.StringAttribute{MarkdownDescription: "The pod's phase.", Computed: true},
						"ready":    schema.BoolAttribute{MarkdownDescription: "It is ready.", Computed: true},
						"pod_ip":   schema.StringAttribute{MarkdownDescription: "The pod's IP.", Computed: true},
					},
				},
			},
			"planned_nodes": schema.ListAttribute{
				MarkdownDescription: "What the plan's dry run said: the nodes new replicas go to, one entry per new " +
					"replica (empty when none is created, e.g. a scale down). `apply` places them there while they " +
					"still fit. Unknown in a plan whose dry run could not run; then apply records where they went.",
				ElementType:   types.StringType,
				Computed:      true,
				PlanModifiers: []planmodifier.List{listplanmodifier.UseStateForUnknown()},
			},
		},
		Blocks: map[string]schema.Block{
			"template": templateBlock(ctx),
			"timeouts": deploymentTimeoutsBlock(ctx),
		},
	}
}

// defaultStrategyObject is the strategy of spec.DefaultDeployment.
func defaultStrategyObject() types.Object {
	return types.ObjectValueMust(strategyAttrTypes, map[string]attr.Value{
		"type":                      types.StringValue(spec.StrategyRollingUpdate),
		"max_surge":                 types.Int64Value(spec.DefaultMaxSurge),
		"max_unavailable":           types.Int64Value(spec.DefaultMaxUnavailable),
		"min_ready_seconds":         types.Int64Value(0),
		"progress_deadline_seconds": types.Int64Value(spec.DefaultProgressDeadline),
		"auto_rollback":             types.BoolValue(true),
	})
}

// templatePodAttributes are the herd_pod attributes a template has.
var templatePodAttributes = []string{
	"restart_policy", "termination_grace_period_seconds", "image_pull_secret", "restart_on_secret_change",
	"restart_on_config_change",
}

// templatePodBlocks are the herd_pod blocks a template has.
var templatePodBlocks = []string{"container", "empty_dir"}

// templateBlock is the pod template: herd_pod's own schema (its container
// blocks and pod attributes, so both stay the same) without the
// replacements, since a template changes in place by rolling out.
func templateBlock(ctx context.Context) schema.Block {
	var pod resource.SchemaResponse
	(&podResource{}).Schema(ctx, resource.SchemaRequest{}, &pod)
	attrs := map[string]schema.Attribute{
		"labels": schema.MapAttribute{
			MarkdownDescription: "Labels of every replica (label syntax as for `herd_pod`); must contain every " +
				"`selector` label. Labels under `herd.io/` are herd's.",
			ElementType: types.StringType,
			Optional:    true,
		},
	}
	for _, name := range templatePodAttributes {
		attrs[name] = rolloutAttribute(pod.Schema.Attributes[name])
	}
	blocks := map[string]schema.Block{}
	for _, name := range templatePodBlocks {
		blocks[name] = rolloutBlock(pod.Schema.Blocks[name])
	}
	blocks["container"] = withTemplateVolumeMounts(blocks["container"].(schema.ListNestedBlock))
	return schema.SingleNestedBlock{
		MarkdownDescription: "The replicas' pod, with the attributes and the `container` and `empty_dir` blocks of " +
			"`herd_pod` (but its `node` and `name`: herd places and names the replicas). Required. Changing it makes a " +
			"new `revision` and rolls it out. " + templateVolumesDescription,
		Attributes: attrs,
		Blocks:     blocks,
	}
}

// templateVolumesDescription is what a template's volume mounts mean for
// its replicas (agentd's scheduler and rollout, checked by
// spec.ValidateDeployment at plan time).
const templateVolumesDescription = "A deployment may mount `herd_volume`s of its namespace; its replicas then run " +
	"only on the node that has them. A template that writes a volume (a `volume_mount` without " +
	"`read_only`) runs at most one replica and rolls out by stopping the old replica before starting the new one " +
	"(never two writers, at the cost of a short gap): `replicas` at most 1 and no `BlueGreen` strategy; it never " +
	"surges, so `max_surge` and `max_unavailable` do not apply. Read-only mounts may be shared by any number of " +
	"replicas, all on the volume's node."

// withTemplateVolumeMounts is herd_pod's container block with the
// volume_mount descriptions of a template: the mount rules are the
// deployment's, not a single pod's.
func withTemplateVolumeMounts(c schema.ListNestedBlock) schema.ListNestedBlock {
	blocks := maps.Clone(c.NestedObject.Blocks)
	vm := blocks["volume_mount"].(schema.ListNestedBlock)
	vm.MarkdownDescription = fmt.Sprintf("Mounts a persistent volume (`volume`) or one of the template's `empty_dir`s "+
		"(`empty_dir`) into the container; exactly one of the two. %s At most %d per container. Adding, removing or "+
		"changing one rolls out a new revision (a volume's other spelling does not).", templateVolumesDescription, spec.MaxVolumeMounts)
	attrs := maps.Clone(vm.NestedObject.Attributes)
	volume := attrs["volume"].(schema.StringAttribute)
	volume.MarkdownDescription = "A `herd_volume` of the deployment's namespace: its `id` (`herd_volume.data.id`, " +
		"which lets the plan check the namespace, and orders the apply; its node is not checked, since the replicas go " +
		"where the volume is) or its name. Switching between the two spellings of the same volume rolls out nothing."
	attrs["volume"] = volume
	vm.NestedObject.Attributes = attrs
	blocks["volume_mount"] = vm
	c.NestedObject.Blocks = blocks
	return c
}

func deploymentTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Update: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long creating the deployment may take, including waiting until its "+
			"rollout is complete (a Go duration; default `\"%s\"`).", shortDuration(defaultDeploymentWriteTimeout)),
		UpdateDescription: fmt.Sprintf("The same for an update (default `\"%s\"`). Keep it above "+
			"`strategy.progress_deadline_seconds`, so that a failed rollout is reported with its reason.",
			shortDuration(defaultDeploymentWriteTimeout)),
		DeleteDescription: fmt.Sprintf("How long deleting the deployment may take, including draining and stopping "+
			"its replicas (default `\"%s\"`).", shortDuration(defaultDeploymentDeleteTimeout)),
	}, "Time limits of the operations on this deployment. Changing them does not replace it.")
}

// The rollout* functions turn a piece of herd_pod's schema into the same
// piece of a template: without RequiresReplace (a template changes by
// rolling out) and with descriptions that say so. Other plan modifiers are
// kept. They panic on a kind of attribute or block they do not know, which
// the schema tests catch.

func rolloutDescription(d string) string {
	return strings.ReplaceAll(d, "replaces the pod", "rolls out a new revision")
}

// requiresReplace reports a plan modifier made by a RequiresReplace of
// the framework (its types are not exported; their descriptions are).
func requiresReplace(description string) bool {
	for _, d := range []string{
		stringplanmodifier.RequiresReplace().Description(context.Background()),
		int64planmodifier.RequiresReplace().Description(context.Background()),
		boolplanmodifier.RequiresReplace().Description(context.Background()),
		listplanmodifier.RequiresReplace().Description(context.Background()),
		mapplanmodifier.RequiresReplace().Description(context.Background()),
		objectplanmodifier.RequiresReplace().Description(context.Background()),
	} {
		if description == d {
			return true
		}
	}
	return false
}

// withoutReplace filters the RequiresReplace modifiers out of mods.
func withoutReplace[M interface {
	Description(context.Context) string
}](mods []M) []M {
	var out []M
	for _, m := range mods {
		if !requiresReplace(m.Description(context.Background())) {
			out = append(out, m)
		}
	}
	return out
}

func rolloutAttributes(in map[string]schema.Attribute) map[string]schema.Attribute {
	out := make(map[string]schema.Attribute, len(in))
	for k, a := range in {
		out[k] = rolloutAttribute(a)
	}
	return out
}

func rolloutBlocks(in map[string]schema.Block) map[string]schema.Block {
	out := make(map[string]schema.Block, len(in))
	for k, b := range in {
		out[k] = rolloutBlock(b)
	}
	return out
}

func rolloutAttribute(a schema.Attribute) schema.Attribute {
	switch a := a.(type) {
	case schema.StringAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		return a
	case schema.Int64Attribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		return a
	case schema.BoolAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		return a
	case schema.ListAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		return a
	case schema.MapAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		return a
	case schema.SetAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		return a
	case schema.SingleNestedAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		a.Attributes = rolloutAttributes(a.Attributes)
		return a
	case schema.ListNestedAttribute:
		a.MarkdownDescription, a.PlanModifiers = rolloutDescription(a.MarkdownDescription), withoutReplace(a.PlanModifiers)
		a.NestedObject.Attributes = rolloutAttributes(a.NestedObject.Attributes)
		a.NestedObject.PlanModifiers = withoutReplace(a.NestedObject.PlanModifiers)
		return a
	}
	panic(fmt.Sprintf("herd_deployment template: herd_pod attribute of kind %T not handled", a))
}

func rolloutBlock(b schema.Block) schema.Block {
	switch b := b.(type) {
	case schema.ListNestedBlock:
		b.MarkdownDescription, b.PlanModifiers = rolloutDescription(b.MarkdownDescription), withoutReplace(b.PlanModifiers)
		b.NestedObject.Attributes = rolloutAttributes(b.NestedObject.Attributes)
		b.NestedObject.Blocks = rolloutBlocks(b.NestedObject.Blocks)
		b.NestedObject.PlanModifiers = withoutReplace(b.NestedObject.PlanModifiers)
		return b
	case schema.SingleNestedBlock:
		b.MarkdownDescription, b.PlanModifiers = rolloutDescription(b.MarkdownDescription), withoutReplace(b.PlanModifiers)
		b.Attributes = rolloutAttributes(b.Attributes)
		b.Blocks = rolloutBlocks(b.Blocks)
		return b
	}
	panic(fmt.Sprintf("herd_deployment template: herd_pod block of kind %T not handled", b))
}
