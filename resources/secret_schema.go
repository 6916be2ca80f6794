package resources

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
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

func (r *secretResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_secret"
}

func (r *secretResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A secret: named key/value data (passwords, keys, certificates, registry credentials) that " +
			"pods mount as files (`secret_mount`) or read as environment variables (`secret_env`) and that pods use " +
			"to pull images (`image_pull_secret`).\n\n" +
			"Secrets are cluster-scoped, like services: written through any member (`node`), they travel, encrypted " +
			"by the gossip key, only to the live members whose labels match `node_selector` (all members when it is " +
			"unset), and are kept there sealed. A pod on a node that may not hold a secret it uses is refused. The " +
			"secrets API requires an **admin** client certificate (`herdctl certs client NAME --admin`).\n\n" +
			"**Write-only data (recommended).** With `data_wo` and `data_wo_version` (Terraform or OpenTofu 1.11 " +
			"and later) the values are never written to a plan or to the state. Terraform cannot see them change: " +
			"change `data_wo_version` to push new values. **`data`** is the weaker choice for older CLIs: its values " +
			"are marked sensitive (hidden in the CLI output) but stored in plain text in the state, which must then " +
			"be protected like the secret itself.\n\n" +
			"**Changes.** New data, `node_selector` and `immutable = true` change the secret in place; `namespace`, " +
			"`name` and `type` replace it, and so does new data for an `immutable` secret (as in Kubernetes: an " +
			"immutable secret's data never changes, a new secret takes its place). Pods that mount the secret see " +
			"new files at once; pods with `restart_on_secret_change` are restarted, one at a time across the " +
			"cluster, and **the plan lists them** in `restarts` (and in a warning) before you apply. Environment " +
			"variables (`secret_env`) only change when a container restarts.\n\n" +
			"**Drift.** The provider never reads values back. A refresh reads the secret's `version`, `checksum` " +
			"(a keyed HMAC of the data, computed with a key derived from the cluster's gossip key, so it reveals " +
			"nothing about the values), key names and holders. When the checksum differs from the one of the data " +
			"Terraform last wrote, the data was changed behind Terraform's back: the plan shows an in-place update " +
			"(`checksum` known after apply) that writes the configured data again. A secret deleted behind " +
			"Terraform's back shows up as a creation.\n\n" +
			"**Import** takes `NAMESPACE/NAME@NODEID`; values are never imported. To adopt an existing secret, " +
			"import it and keep its values in `data_wo` (with any `data_wo_version`) or `data`: the first apply " +
			"writes them, which changes nothing on the nodes (and restarts nothing) when they are the values the " +
			"secret already has.\n\n" +
			"Invalid input (key names that are not safe file names, such as `..` or anything with `/`; more than " +
			"1 MiB of keys and values; the keys a type requires) is refused at plan time with the path of the " +
			"offending attribute; for `data_wo`, as soon as the values are known.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`NAMESPACE/NAME`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The member to write and read the secret through: the `id` of a `herd_node` " +
					"(`NAME@ADDRESS`). It need not hold the secret. Any member serves the cluster's secrets, so changing " +
					"it does not replace the secret.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The secret's namespace, a lowercase RFC 1123 label; default `default`. Pods refer " +
					"to secrets of other namespaces as `NAMESPACE/NAME`. Changing it replaces the secret.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.DefaultNamespace),
				PlanModifiers: replaceString,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The secret's name, unique in its namespace: a lowercase RFC 1123 label. Changing " +
					"it replaces the secret.",
				Required:      true,
				PlanModifiers: replaceString,
			},
			"type": schema.StringAttribute{
				MarkdownDescription: "`opaque` (the default: any keys), `tls` (keys `tls.crt` and `tls.key`), " +
					"`basic-auth` (`username` and `password`) or `registry` (`registry`, the registry's host, " +
					"`username` and `password`: credentials to pull images, see `herd_pod`'s `image_pull_secret`). " +
					"The keys a type requires must be present and not empty; other keys may be added. Changing it " +
					"replaces the secret.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.SecretTypeOpaque),
				PlanModifiers: replaceString,
			},
			"data_wo": schema.MapAttribute{
				MarkdownDescription: "The secret's data, **write-only**: never stored in a plan or in the state " +
					"(Terraform or OpenTofu 1.11 and later). Keys are file names when mounted: letters, digits, `-`, " +
					"`_` and `.`, not `.` or `..`, at most 253 characters; keys and values together at most 1 MiB. " +
					"Values are text (UTF-8); encode binary values, e.g. with `base64encode`. Requires " +
					"`data_wo_version`; conflicts with `data`. Feed it from an ephemeral resource (such as " +
					"`herd_secret`'s) or a variable marked `ephemeral` to keep the values out of every file Terraform " +
					"writes.",
				ElementType: types.StringType,
				Optional:    true,
				Sensitive:   true,
				WriteOnly:   true,
			},
			"data_wo_version": schema.Int64Attribute{
				MarkdownDescription: "The version of `data_wo`. Terraform never sees write-only values, so changing " +
					"them alone does nothing: change this number (any new value) to push them. Required with " +
					"`data_wo`.",
				Optional: true,
			},
			"data": schema.MapAttribute{
				MarkdownDescription: "The secret's data, for CLIs without write-only attributes (before 1.11): the " +
					"same rules as `data_wo`, but the values are **stored in the state** (marked sensitive, so hidden " +
					"in the CLI's output). Prefer `data_wo`. Changing it pushes the new values.",
				ElementType: types.StringType,
				Optional:    true,
				Sensitive:   true,
			},
			"node_selector": schema.MapAttribute{
				MarkdownDescription: "Only the members whose labels (`herd_node`'s `labels`) include all of these ever " +
					"receive the secret; unset or empty: every member. At least one live member must match. A pod " +
					"that uses the secret on a node outside the selector is refused. Changes in place: members that " +
					"no longer match drop the secret.",
				ElementType: types.StringType,
				Optional:    true,
			},
			"immutable": schema.BoolAttribute{
				MarkdownDescription: "Once `true`, the data can no longer change: new data replaces the secret (a " +
					"new secret is created under the same name), and so does setting it back to `false`. Default " +
					"`false`; setting it to `true` changes the secret in place.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
			},
			"keys": schema.ListAttribute{
				MarkdownDescription: "The secret's key names, sorted (never the values).",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the secret: a secret recreated under the same " +
					"name gets a new one.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "Version of the secret; new data, a new `node_selector` or `immutable` raise it.",
				Computed:            true,
			},
			"checksum": schema.StringAttribute{
				MarkdownDescription: "`hmac-sha256:<hex>` of the data, keyed by a key derived from the cluster's gossip " +
					"key: equal data gives an equal checksum, and the values cannot be guessed from it. It changes " +
					"when the data changes, and tells a change made behind Terraform's back (see above).",
				Computed: true,
			},
			"synced": schema.BoolAttribute{
				MarkdownDescription: "Every live member the selector matches holds the current version, as `node` " +
					"sees it.",
				Computed: true,
			},
			"holders": schema.ListNestedAttribute{
				MarkdownDescription: "The live members that hold the secret, sorted by name, with the version each " +
					"holds, as `node` sees them at the last refresh. Members outside `node_selector` never appear.",
				Computed: true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"node":    schema.StringAttribute{MarkdownDescription: "The member's name.", Computed: true},
						"version": schema.Int64Attribute{MarkdownDescription: "The version it holds.", Computed: true},
					},
				},
			},
			"restarts": schema.ListAttribute{
				MarkdownDescription: "The pods (`NODE/POD`) that the apply restarts because they use the secret with " +
					"`restart_on_secret_change` and its data changes, in restart order (one at a time). In a plan " +
					"that changes the data, agentd answers a dry run: the list is known before you apply, and a " +
					"warning repeats it (it is unknown only when the node cannot be asked at plan time). Empty when " +
					"the data does not change; kept from the last apply otherwise.",
				ElementType: types.StringType,
				Computed:    true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": secretTimeoutsBlock(ctx),
		},
	}
}

func secretTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Update: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long creating the secret may take, including waiting until every live "+
			"member the selector matches holds it (a Go duration; default `\"%s\"`).", shortDuration(defaultSecretWriteTimeout)),
		UpdateDescription: fmt.Sprintf("The same for an update, including the restarts of pods with "+
			"`restart_on_secret_change` (default `\"%s\"`).", shortDuration(defaultSecretWriteTimeout)),
		DeleteDescription: fmt.Sprintf("How long deleting the secret may take (default `\"%s\"`).",
			shortDuration(defaultSecretDeleteTimeout)),
	}, "Time limits of the operations on this secret. Changing them does not replace it.")
}
