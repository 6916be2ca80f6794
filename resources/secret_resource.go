package resources

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
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
	clients Clients
}

// secretModel is the state of herd_secret.
type secretModel struct {
	ID            types.String   `tfsdk:"id"`
	Node          types.String   `tfsdk:"node"`
	Namespace     types.String   `tfsdk:"namespace"`
	Name          types.String   `tfsdk:"name"`
	Type          types.String   `tfsdk:"type"`
	Data          types.Map      `tfsdk:"data"`
	DataWO        types.Map      `tfsdk:"data_wo"`
	DataWOVersion types.Int64    `tfsdk:"data_wo_version"`
	NodeSelector  types.Map      `tfsdk:"node_selector"`
	Immutable     types.Bool     `tfsdk:"immutable"`
	Timeouts      timeouts.Value `tfsdk:"timeouts"`
	Keys          types.List     `tfsdk:"keys"`
	UID           types.String   `tfsdk:"uid"`
	Version       types.Int64    `tfsdk:"version"`
	Checksum      types.String   `tfsdk:"checksum"`
	Synced        types.Bool     `tfsdk:"synced"`
	Holders       types.List     `tfsdk:"holders"`
	Restarts      types.List     `tfsdk:"restarts"`
}

var holderAttrTypes = map[string]attr.Type{
	"node":    types.StringType,
	"version": types.Int64Type,
}

var holderObjectType = types.ObjectType{AttrTypes: holderAttrTypes}

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

func (r *secretResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFromProviderData(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks the configuration with agentd's own rules. Write-only
// values are part of the configuration (and only of it), so data_wo is
// checked here, as soon as its values are known.
func (r *secretResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg secretModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	checkSecretDataChoice(cfg.Data, cfg.DataWO, cfg.DataWOVersion, &resp.Diagnostics)
	attrName, data, ok := secretDataSource(cfg.Data, cfg.DataWO)
	if !ok {
		// Reported above; still check the rest, without the data.
		data = types.MapUnknown(types.StringType)
	}
	conv := secretSpecFromValues(cfg.Namespace, cfg.Name, cfg.Type, cfg.NodeSelector, cfg.Immutable, attrName, data)
	addSecretFieldErrors(&resp.Diagnostics, conv.validate(), attrName)
}

// ModifyPlan decides what an update does to the computed attributes, and
// asks the node which pods a data change restarts:
//
//   - a creation restarts nothing (restarts = []);
//   - the data changes when data changes, when data_wo_version changes, or
//     when the node's checksum is not the one of the data Terraform last
//     wrote (a change behind its back): checksum and version are then
//     unknown, restarts is agentd's dry-run answer, and a warning lists
//     the restarts;
//   - an immutable secret whose data changes is replaced, and so is one
//     whose immutable goes back to false;
//   - without a data change the checksum and key names are kept and
//     restarts is empty.
func (r *secretResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan, cfg secretModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	dataAttr, data, hasData := secretDataSource(cfg.Data, cfg.DataWO)
	plannedKeys := types.ListUnknown(types.StringType)
	if hasData && !data.IsUnknown() {
		plannedKeys = stringListValue(sortedDataKeys(data))
	}
	emptyList := types.ListValueMust(types.StringType, nil)

	if req.State.Raw.IsNull() {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("restarts"), emptyList)...)
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("keys"), plannedKeys)...)
		return
	}
	var state secretModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}

	drift := false
	if applied := appliedChecksum(ctx, req.Private); applied != "" && !state.Checksum.IsNull() &&
		state.Checksum.ValueString() != applied {
		drift = true
		resp.Diagnostics.AddWarning("Secret changed outside Terraform",
			fmt.Sprintf("The data of secret %s/%s on the cluster is not the data Terraform last wrote (its checksum "+
				"changed from %s to %s): someone changed it behind Terraform's back. This apply writes the "+
				"configured data again.", state.Namespace.ValueString(), state.Name.ValueString(), applied,
				state.Checksum.ValueString()))
	}
	// A secret some matching member lacks (synced = false) is written
	// again, as herd_service does: agentd pushes it anew.
	repair := !state.Synced.IsNull() && !state.Synced.IsUnknown() && !state.Synced.ValueBool()
	if !drift && !repair && req.Plan.Raw.Equal(req.State.Raw) {
		return // nothing changes
	}
	if !plan.Namespace.Equal(state.Namespace) || !plan.Name.Equal(state.Name) || !plan.Type.Equal(state.Type) {
		return // replaced: planned again as a creation
	}

	dataChange := drift
	switch dataAttr {
	case secretAttrDataWO:
		dataChange = dataChange || !plan.DataWOVersion.Equal(state.DataWOVersion) || !state.Data.IsNull()
	case secretAttrData:
		dataChange = dataChange || !plan.Data.Equal(state.Data)
	}

	// An immutable secret's data never changes: a new secret replaces it.
	if state.Immutable.ValueBool() && !plan.Immutable.IsUnknown() {
		replace := path.Paths{}
		if !plan.Immutable.ValueBool() {
			replace = append(replace, path.Root("immutable"))
		}
		if dataChange {
			p := path.Root(secretAttrData)
			if dataAttr == secretAttrDataWO {
				p = path.Root(secretAttrDataWOVersion)
			}
			replace = append(replace, p)
		}
		if len(replace) > 0 {
			resp.RequiresReplace = append(resp.RequiresReplace, replace...)
			return
		}
	}

	set := func(name string, v attr.Value) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), v)...)
	}
	set("uid", state.UID)
	set("synced", types.BoolUnknown())
	set("holders", types.ListUnknown(holderObjectType))
	// Update always sends the configured data: these are the keys after it.
	set("keys", plannedKeys)

	// Which pods does the apply restart, does anything change? Only agentd
	// knows: ask it for a dry run of the very spec Update will apply.
	restarts, dry, diags := r.dryRun(ctx, plan, dataAttr, data, hasData)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	checksumUnknown, versionUnknown := dataChange, true
	switch {
	case dry != nil:
		versionUnknown = dry.GetChanged()
		willChange := dry.GetSecret().GetStatus().GetChecksum() != state.Checksum.ValueString()
		if willChange && !dataChange {
			// data_wo edited without a version bump: Update must send the
			// data with any change, so the secret gets the new values.
			checksumUnknown = true
			if dataAttr == secretAttrDataWO {
				resp.Diagnostics.AddAttributeWarning(path.Root(secretAttrDataWO), "Write-only data changed without a version bump",
					"This apply changes other attributes of the secret and therefore sends data_wo, whose values "+
						"differ from the secret's: the secret gets the new values. Change data_wo_version together "+
						"with data_wo to make such changes explicit.")
			}
		}
		if !willChange && dataAttr == secretAttrData {
			// The same values (e.g. adopted after an import): the checksum
			// stays. data_wo may still change between plan and apply
			// (ephemeral values are read again), so its stays unknown.
			checksumUnknown = false
		}
	case dataAttr == secretAttrDataWO:
		checksumUnknown = true // cannot tell without asking
	}
	if checksumUnknown {
		set("checksum", types.StringUnknown())
	} else {
		set("checksum", state.Checksum)
	}
	if versionUnknown {
		set("version", types.Int64Unknown())
	} else {
		set("version", state.Version)
	}
	set("restarts", restarts)
	if n := len(restarts.Elements()); n > 0 && !restarts.IsUnknown() {
		resp.Diagnostics.AddWarning(fmt.Sprintf("Applying secret %s/%s restarts %d pod(s)", plan.Namespace.ValueString(),
			plan.Name.ValueString(), n),
			fmt.Sprintf("The secret's data changes, and these pods use it with restart_on_secret_change: they are "+
				"restarted one at a time, in this order: %s.", strings.Join(stringList(restarts), ", ")))
	}
}

// dryRun asks the write-through node what applying the planned spec does
// (ApplySecret with dry_run): the pods it restarts and, in the answer, the
// version and checksum the secret would have. restarts is unknown and the
// answer nil when the question cannot be asked (node or values not known
// yet, or the node unreachable: a warning says so).
func (r *secretResource) dryRun(ctx context.Context, plan secretModel, dataAttr string, data types.Map,
	hasData bool) (restarts types.List, answer *herdv1.ApplySecretResponse, diags diag.Diagnostics) {
	unknown := types.ListUnknown(types.StringType)
	if r.clients == nil || !hasData || !secretDataKnown(data) || plan.Node.IsUnknown() ||
		plan.NodeSelector.IsUnknown() || plan.Immutable.IsUnknown() {
		return unknown, nil, diags
	}
	conv := secretSpecFromValues(plan.Namespace, plan.Name, plan.Type, plan.NodeSelector, plan.Immutable, dataAttr, data)
	if len(conv.unknown) > 0 {
		return unknown, nil, diags
	}
	nodeID := plan.Node.ValueString()
	sc, err := r.clients.SecretClient(nodeID)
	if err != nil {
		addRPCError(&diags, "connect to the node", nodeID, err)
		return unknown, nil, diags
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+30*time.Second)
	defer cancel()
	what := fmt.Sprintf("plan secret %s/%s (dry run)", conv.spec.GetNamespace(), conv.spec.GetName())
	got, err := sc.ApplySecret(cctx, &herdv1.ApplySecretRequest{Spec: conv.spec, DryRun: true})
	if err != nil {
		if isUnreachable(err) {
			summary, detail := describeRPCError(what, nodeID, err)
			diags.AddWarning(summary, detail+"\n\nThe plan cannot tell which pods the apply restarts (restarts is "+
				"known after apply).")
			return unknown, nil, diags
		}
		addRPCError(&diags, what, nodeID, err)
		return unknown, nil, diags
	}
	return stringListValue(podRefs(got.GetRestartedPods())), got, diags
}

// appliedChecksum reads the checksum Terraform last wrote from private
// state; "" when there is none (a secret imported and not written yet).
func appliedChecksum(ctx context.Context, p interface {
	GetKey(context.Context, string) ([]byte, diag.Diagnostics)
}) string {
	b, diags := p.GetKey(ctx, privateAppliedChecksum)
	if diags.HasError() || len(b) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return ""
	}
	return s
}

type privateSetter interface {
	SetKey(context.Context, string, []byte) diag.Diagnostics
}

func setAppliedChecksum(ctx context.Context, p privateSetter, checksum string) diag.Diagnostics {
	b, _ := json.Marshal(checksum)
	return p.SetKey(ctx, privateAppliedChecksum, b)
}

func (r *secretResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan secretModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultSecretWriteTimeout)
	resp.Diagnostics.Append(diags...)
	sc, s, ok := r.prepare(ctx, plan, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID := plan.Node.ValueString()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// ApplySecret would quietly overwrite a secret of the same name:
	// refuse, and say how to adopt it instead.
	_, err := sc.GetSecret(cctx, &herdv1.GetSecretRequest{Namespace: s.GetNamespace(), Name: s.GetName()})
	if err == nil {
		resp.Diagnostics.AddError("Secret already exists",
			fmt.Sprintf("The cluster of %s already has a secret %s/%s. Choose another name, delete it, or adopt it: "+
				"import it with the id %q and keep its values in data_wo or data (the first apply writes them).",
				nodeDescription(nodeID), s.GetNamespace(), s.GetName(), secretImportID(s.GetNamespace(), s.GetName(), nodeID)))
		return
	}
	if status.Code(err) != codes.NotFound {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("look up secret %s/%s", s.GetNamespace(), s.GetName()), nodeID, err)
		return
	}
	r.write(cctx, sc, s, &plan, &resp.State, resp.Private, &resp.Diagnostics)
}

func (r *secretResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var plan secretModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, defaultSecretWriteTimeout)
	resp.Diagnostics.Append(diags...)
	sc, s, ok := r.prepare(ctx, plan, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.write(cctx, sc, s, &plan, &resp.State, resp.Private, &resp.Diagnostics)
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
	for !sec.GetStatus().GetSynced() {
		select {
		case <-ctx.Done():
			return sec, ctx.Err()
		case <-time.After(secretPollInterval):
		}
		got, err := sc.GetSecret(ctx, &herdv1.GetSecretRequest{Namespace: ns, Name: name})
		if err != nil {
			if isUnreachable(err) && ctx.Err() == nil {
				continue
			}
			return sec, err
		}
		sec = got
	}
	return sec, nil
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

// setFromSecret fills what agentd reports: the metadata (type, selector,
// immutable, key names) and the status. The data attributes are the
// configuration's: agentd never returns values.
func (m *secretModel) setFromSecret(sec *herdv1.Secret) {
	if meta := sec.GetMeta(); meta != nil {
		if meta.GetNamespace() != "" {
			m.Namespace = types.StringValue(meta.GetNamespace())
		}
		if meta.GetName() != "" {
			m.Name = types.StringValue(meta.GetName())
		}
		m.Type = types.StringValue(secretTypeFromRemote(meta.GetType()))
		m.NodeSelector = mapFromRemote(meta.GetNodeSelector(), m.NodeSelector)
		m.Immutable = types.BoolValue(meta.GetImmutable())
		keys := slices.Clone(meta.GetKeys())
		sort.Strings(keys)
		m.Keys = stringListValue(keys)
	}
	st := sec.GetStatus()
	m.UID = types.StringValue(sec.GetUid())
	m.Version = types.Int64Value(int64(st.GetVersion()))
	m.Checksum = types.StringValue(st.GetChecksum())
	m.Synced = types.BoolValue(st.GetSynced())
	m.Holders = holdersValue(st.GetMembers())
}

// holdersValue renders the members holding a secret sorted by name.
func holdersValue(members []*herdv1.MemberVersion) types.List {
	sorted := slices.Clone(members)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetNode() < sorted[j].GetNode() })
	elems := make([]attr.Value, 0, len(sorted))
	for _, mv := range sorted {
		elems = append(elems, types.ObjectValueMust(holderAttrTypes, map[string]attr.Value{
			"node":    types.StringValue(mv.GetNode()),
			"version": types.Int64Value(int64(mv.GetVersion())),
		}))
	}
	return types.ListValueMust(holderObjectType, elems)
}

// stringListValue returns a known list(string), empty for nil.
func stringListValue(ss []string) types.List {
	elems := make([]attr.Value, len(ss))
	for i, s := range ss {
		elems[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, elems)
}

func (r *secretResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var state secretModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
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
	if !checkConfigured(r.clients, &resp.Diagnostics) {
		return
	}
	var state secretModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
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
	// A secret that is already gone is deleted.
	_, err = sc.DeleteSecret(cctx, &herdv1.DeleteSecretRequest{Namespace: ns, Name: name})
	if err != nil && status.Code(err) != codes.NotFound {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("delete secret %s/%s", ns, name), nodeID, err)
	}
}

// ImportState takes NAMESPACE/NAME@NODEID (or NAME@NODEID in the default
// namespace), as herd_service does. Values are not imported.
func (r *secretResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ns, name, nodeID, err := parseServiceImportID(req.ID)
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
}
