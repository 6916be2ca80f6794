package resources

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func (r *volumeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_volume"
}

func (r *volumeResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A persistent volume on one node: an ext4 filesystem in an image file under agentd's " +
			"`--volume-dir`, attached to a loop device and mounted by agentd. Its `size` is a hard limit: a full " +
			"volume fails writes inside it with ENOSPC and affects nothing else on the node. Volumes outlive pods: " +
			"pods on the same node mount one by name, one pod read-write at a time (`bound_to`), any number " +
			"read-only (`readers`).\n\n" +
			"**Changes.** A larger `size` grows the filesystem in place; a smaller one is " +
			"refused at plan time (ext4 cannot shrink online: create a new volume and copy the data with " +
			"`herdctl volume backup` and `restore`). Sizes are compared as bytes: `\"1024Mi\"` and `\"1Gi\"` are the " +
			"same size, and changing one into the other is an in-place update that changes nothing on the node. " +
			"`node`, `namespace` and `name` replace the volume, which deletes its data.\n\n" +
			"**Deletion protection.** `deletion_protection` is `true` unless set otherwise: while it is, agentd " +
			"refuses to delete the volume, and a plan that would destroy or replace it fails before anything reaches " +
			"the node. To delete a volume, set `deletion_protection = false`, apply, then destroy (or replace).\n\n" +
			"**Drift.** `used_bytes`, `phase`, `bound_to` and `readers` change as pods use the volume; a refresh " +
			"reads them, and they never cause a diff. A volume deleted behind Terraform's back, or deleted and " +
			"created again under the same name (another `uid`), is gone from the state: the next plan creates it.\n\n" +
			"**Import** takes `NODEID/NAMESPACE/NAME` (the `id`), or the identity `{ node, namespace, name }`.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`NODEID/NAMESPACE/NAME`, where `NODEID` is the `herd_node` id (`NAME@ADDRESS`).",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The node that holds the volume: the `id` of a `herd_node` (`NAME@ADDRESS`). " +
					"Set it, or leave it out and give `node_candidates`: herd then chooses the node at creation and " +
					"keeps it. Volumes are node-local; changing a configured `node` replaces the volume (a new, empty " +
					"one on the other node).",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{nodeIDValidator()},
				// A chosen node stays: with no node configured the state's
				// is planned; a configured other one replaces.
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown(), stringplanmodifier.RequiresReplace()},
			},
			"node_candidates": schema.ListAttribute{
				MarkdownDescription: "Without `node`: the `herd_node` ids herd may put the volume on. At creation herd " +
					"asks each one and its scheduler takes the emptiest ready node (`spread`: most free CPU and memory " +
					"for its size, ties to the smaller name), as it places a deployment's replica; the volume is then " +
					"fixed there (`node`), and a deployment that mounts it runs on that node. Changing the list later " +
					"moves nothing. Conflicts with `node`.",
				Optional:    true,
				ElementType: types.StringType,
				Validators:  []validator.List{listvalidator.SizeAtLeast(1), listvalidator.ValueStringsAre(nodeIDValidator())},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The volume's namespace, a lowercase RFC 1123 label; default `default`. Pods " +
					"mount volumes of their own namespace. Changing it replaces the volume.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.DefaultVolumeNamespace),
				PlanModifiers: replaceString,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The volume's name, unique in its namespace on the node: a lowercase RFC 1123 " +
					"label. Changing it replaces the volume.",
				Required:      true,
				PlanModifiers: replaceString,
			},
			"size": schema.StringAttribute{
				MarkdownDescription: "The size of the volume's filesystem image, a quantity of bytes such as " +
					"`\"10Gi\"` or `\"500M\"`, from `1Mi` to `64Ti` (ext4's own metadata takes a little of it: see " +
					"`capacity_bytes`). A larger size grows the volume in place; a smaller one is refused at plan time.",
				Required: true,
			},
			"deletion_protection": schema.BoolAttribute{
				MarkdownDescription: "While `true` (the default), the volume cannot be deleted: agentd refuses, and " +
					"a plan that destroys or replaces it fails. Changes in place.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(true),
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the volume: a volume created again under the " +
					"same name gets a new one.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"size_bytes": schema.Int64Attribute{
				MarkdownDescription: "`size` in bytes.",
				Computed:            true,
			},
			"capacity_bytes": schema.Int64Attribute{
				MarkdownDescription: "The bytes the volume's files may take, as the filesystem reports them (a little " +
					"less than `size_bytes`). It grows with `size`.",
				Computed: true,
			},
			"used_bytes": schema.Int64Attribute{
				MarkdownDescription: "Bytes in use in the filesystem at the last refresh.",
				Computed:            true,
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: "`Available` (no pod mounts it read-write) or `Bound` (a pod does: `bound_to`), " +
					"at the last refresh.",
				Computed: true,
			},
			"bound_to": schema.StringAttribute{
				MarkdownDescription: "The pod that mounts the volume read-write, empty when none, at the last refresh.",
				Computed:            true,
			},
			"readers": schema.ListAttribute{
				MarkdownDescription: "The pods that mount the volume read-only, at the last refresh.",
				ElementType:         types.StringType,
				Computed:            true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": volumeTimeoutsBlock(ctx),
		},
	}
}

func volumeTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Update: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long creating the volume (its image and filesystem) may take (a Go "+
			"duration; default `\"%s\"`).", shortDuration(defaultVolumeWriteTimeout)),
		UpdateDescription: fmt.Sprintf("How long growing it or changing `deletion_protection` may take (default "+
			"`\"%s\"`).", shortDuration(defaultVolumeWriteTimeout)),
		DeleteDescription: fmt.Sprintf("How long deleting it may take (default `\"%s\"`).",
			shortDuration(defaultVolumeDeleteTimeout)),
	}, "Time limits of the operations on this volume. Changing them does not replace it.")
}
