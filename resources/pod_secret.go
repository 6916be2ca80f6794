package resources

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Secrets in herd_pod: a container's secret_mount and secret_env blocks,
// the pod's image_pull_secret and restart_on_secret_change. The rules are
// agentd's (spec.ValidatePod calls spec.ValidatePodSecrets); what needs a
// secret's data (it exists on the node, a listed key is in it) is checked
// by agentd when the pod is applied.

// secretMountModel is one secret_mount block.
type secretMountModel struct {
	Secret types.String `tfsdk:"secret"`
	Path   types.String `tfsdk:"path"`
	UID    types.Int64  `tfsdk:"uid"`
	GID    types.Int64  `tfsdk:"gid"`
	Keys   types.List   `tfsdk:"keys"`
	Mode   types.String `tfsdk:"mode"`
}

// secretEnvModel is one secret_env block.
type secretEnvModel struct {
	Name   types.String `tfsdk:"name"`
	Secret types.String `tfsdk:"secret"`
	Key    types.String `tfsdk:"key"`
}

var secretMountAttrTypes = map[string]attr.Type{
	"secret": types.StringType,
	"path":   types.StringType,
	"uid":    types.Int64Type,
	"gid":    types.Int64Type,
	"keys":   types.ListType{ElemType: types.StringType},
	"mode":   types.StringType,
}

var secretMountObjectType = types.ObjectType{AttrTypes: secretMountAttrTypes}

var secretEnvAttrTypes = map[string]attr.Type{
	"name":   types.StringType,
	"secret": types.StringType,
	"key":    types.StringType,
}

var secretEnvObjectType = types.ObjectType{AttrTypes: secretEnvAttrTypes}

// secretRefDescription explains how pods name a secret.
const secretRefDescription = "The secret: `NAME` (a `herd_secret` of namespace `default`) or `NAMESPACE/NAME`, " +
	"e.g. `herd_secret.db.id`."

// withSecretBlocks adds the secret_mount and secret_env blocks to a
// container's blocks.
func withSecretBlocks(blocks map[string]schema.Block) map[string]schema.Block {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	replaceInt := []planmodifier.Int64{int64planmodifier.RequiresReplace()}
	replaceList := []planmodifier.List{listplanmodifier.RequiresReplace()}
	blocks["secret_mount"] = schema.ListNestedBlock{
		MarkdownDescription: fmt.Sprintf("Puts a secret's keys into the container as files, one per key, on a "+
			"tmpfs (never on disk), read-only. When the secret gets new data the files are replaced atomically "+
			"(the directory's entries switch at once) while the container runs, unless the pod sets "+
			"`restart_on_secret_change`. The node must hold the secret (see `herd_secret`'s `node_selector`). At "+
			"most %d per container. Adding, removing or changing one replaces the pod.", spec.MaxSecretMounts),
		PlanModifiers: replaceList,
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"secret": schema.StringAttribute{
					MarkdownDescription: secretRefDescription,
					Required:            true,
					PlanModifiers:       replaceString,
				},
				"path": schema.StringAttribute{
					MarkdownDescription: "The directory in the container that holds the files: an absolute, clean path, " +
						"not `/`, not in `/proc`, `/sys` or `/dev`. Default `/run/secrets/<secret's name>`. Mounts of a " +
						"container must not overlap.",
					Optional:      true,
					PlanModifiers: replaceString,
				},
				"uid": schema.Int64Attribute{
					MarkdownDescription: "Owner of the files (a user id); default 0 (root).",
					Optional:            true,
					PlanModifiers:       replaceInt,
				},
				"gid": schema.Int64Attribute{
					MarkdownDescription: "Group of the files (a group id); default 0.",
					Optional:            true,
					PlanModifiers:       replaceInt,
				},
				"keys": schema.ListAttribute{
					MarkdownDescription: "Only these keys (each must exist in the secret, and not start with `..`); " +
						"unset: every key.",
					ElementType:   types.StringType,
					Optional:      true,
					PlanModifiers: replaceList,
				},
				"mode": schema.StringAttribute{
					MarkdownDescription: "The files' mode as an octal string, e.g. `\"0440\"`; at most `\"0777\"`. " +
						"Default `\"0400\"` (read-only for the owner).",
					Optional:      true,
					PlanModifiers: replaceString,
				},
			},
		},
	}
	blocks["secret_env"] = schema.ListNestedBlock{
		MarkdownDescription: "Sets an environment variable to a secret's value. Weaker than `secret_mount`: the " +
			"value is visible in `/proc/<pid>/environ` to processes of the same user, kept in containerd's metadata, " +
			"inherited by child processes and easily logged; it only changes when the container restarts. Prefer " +
			"files. The node must hold the secret. Adding, removing or changing one replaces the pod.",
		PlanModifiers: replaceList,
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"name": schema.StringAttribute{
					MarkdownDescription: "The variable's name (`[A-Za-z_][A-Za-z0-9_]*`), not also set in `env`.",
					Required:            true,
					PlanModifiers:       replaceString,
				},
				"secret": schema.StringAttribute{
					MarkdownDescription: secretRefDescription,
					Required:            true,
					PlanModifiers:       replaceString,
				},
				"key": schema.StringAttribute{
					MarkdownDescription: "The key whose value the variable gets.",
					Required:            true,
					PlanModifiers:       replaceString,
				},
			},
		},
	}
	return blocks
}

// secretsFromModel sets the secret mounts and env of container c (at
// spec path p) from its blocks.
func (out *specConversion) secretsFromModel(ctx context.Context, cm containerModel, c *herdv1.ContainerSpec, p spec.Path) diag.Diagnostics {
	var diags diag.Diagnostics
	unknown := func(u spec.Path) { out.unknown = append(out.unknown, u) }
	mp := p.Field("secret_mounts")
	switch l := cm.SecretMounts; {
	case l.IsUnknown():
		unknown(mp)
	case l.IsNull():
	default:
		for j, v := range l.Elements() {
			ip := mp.Index(j)
			obj, ok := v.(types.Object)
			if !ok || obj.IsUnknown() || obj.IsNull() {
				unknown(ip)
				c.SecretMounts = append(c.SecretMounts, &herdv1.SecretMount{Secret: placeholderName(j), Path: fmt.Sprintf("/x-unknown/%d", j)})
				continue
			}
			var m secretMountModel
			diags.Append(obj.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			if diags.HasError() {
				return diags
			}
			sm := &herdv1.SecretMount{}
			if m.Secret.IsUnknown() {
				unknown(ip.Field("secret"))
				sm.Secret = placeholderName(j)
			} else {
				sm.Secret = m.Secret.ValueString()
			}
			if m.Path.IsUnknown() {
				unknown(ip.Field("path"))
				// A path of its own, so that it overlaps nothing.
				sm.Path = fmt.Sprintf("/x-unknown/%d", j)
			} else {
				sm.Path = m.Path.ValueString()
			}
			sm.Uid = out.optionalUint32(m.UID, ip.Field("uid"), "user id")
			sm.Gid = out.optionalUint32(m.GID, ip.Field("gid"), "group id")
			sm.Keys = listWithUnknowns(m.Keys, ip.Field("keys"), unknown)
			sm.Mode = out.fileMode(m.Mode, ip.Field("mode"))
			c.SecretMounts = append(c.SecretMounts, sm)
		}
	}
	ep := p.Field("secret_env")
	switch l := cm.SecretEnv; {
	case l.IsUnknown():
		unknown(ep)
	case l.IsNull():
	default:
		for j, v := range l.Elements() {
			ip := ep.Index(j)
			obj, ok := v.(types.Object)
			if !ok || obj.IsUnknown() || obj.IsNull() {
				unknown(ip)
				c.SecretEnv = append(c.SecretEnv, &herdv1.SecretEnv{Name: fmt.Sprintf("X_UNKNOWN_%d", j), Secret: "x", Key: "x"})
				continue
			}
			var m secretEnvModel
			diags.Append(obj.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			if diags.HasError() {
				return diags
			}
			se := &herdv1.SecretEnv{}
			if m.Name.IsUnknown() {
				unknown(ip.Field("name"))
				se.Name = fmt.Sprintf("X_UNKNOWN_%d", j) // unique, so not a duplicate
			} else {
				se.Name = m.Name.ValueString()
			}
			se.Secret = stringWithUnknown(m.Secret, ip.Field("secret"), unknown)
			se.Key = stringWithUnknown(m.Key, ip.Field("key"), unknown)
			c.SecretEnv = append(c.SecretEnv, se)
		}
	}
	return diags
}

// optionalUint32 converts an optional id; values beyond uint32 are
// reported here (the spec cannot hold them).
func (out *specConversion) optionalUint32(v types.Int64, p spec.Path, what string) *uint32 {
	if v.IsNull() {
		return nil
	}
	if v.IsUnknown() {
		out.unknown = append(out.unknown, p)
		return nil
	}
	n := v.ValueInt64()
	if n < 0 || n > math.MaxUint32 {
		out.unknown = append(out.unknown, p)
		out.errs = append(out.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf("must be a %s from 0 to %d, got %d", what, uint32(math.MaxUint32), n)})
		return nil
	}
	u := uint32(n)
	return &u
}

// fileMode parses an octal mode string such as "0440".
func (out *specConversion) fileMode(v types.String, p spec.Path) *uint32 {
	if v.IsNull() {
		return nil
	}
	if v.IsUnknown() {
		out.unknown = append(out.unknown, p)
		return nil
	}
	m, err := parseFileMode(v.ValueString())
	if err != nil {
		out.unknown = append(out.unknown, p)
		out.errs = append(out.errs, spec.FieldError{Path: p, Msg: err.Error()})
		return nil
	}
	return &m
}

// parseFileMode reads an octal file mode ("0440", "440" or "0o440").
func parseFileMode(s string) (uint32, error) {
	digits := s
	if len(digits) > 2 && (digits[:2] == "0o" || digits[:2] == "0O") {
		digits = digits[2:]
	}
	n, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || digits == "" {
		return 0, fmt.Errorf("must be an octal file mode such as \"0440\", got %q", s)
	}
	return uint32(n), nil
}

// formatFileMode renders a mode the way the configuration wrote it when
// it means the same, else as "0440".
func formatFileMode(m uint32, prior types.String) types.String {
	if !prior.IsNull() && !prior.IsUnknown() {
		if p, err := parseFileMode(prior.ValueString()); err == nil && p == m {
			return prior
		}
	}
	return types.StringValue(fmt.Sprintf("%04o", m))
}

// secretMountsFromRemote renders a container's secret mounts as blocks,
// with null optional attributes where agentd reports nothing set.
func secretMountsFromRemote(ctx context.Context, remote []*herdv1.SecretMount, prior types.List) (types.List, diag.Diagnostics) {
	var (
		diags       diag.Diagnostics
		priorMounts []secretMountModel
	)
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.ElementsAs(ctx, &priorMounts, false)...)
		if diags.HasError() {
			return types.ListNull(secretMountObjectType), diags
		}
	}
	elems := make([]attr.Value, 0, len(remote))
	for j, m := range remote {
		pm := secretMountModel{Path: types.StringNull(), Keys: types.ListNull(types.StringType), Mode: types.StringNull()}
		if j < len(priorMounts) {
			pm = priorMounts[j]
		}
		mode := types.StringNull()
		if m.Mode != nil {
			mode = formatFileMode(m.GetMode(), pm.Mode)
		}
		elems = append(elems, types.ObjectValueMust(secretMountAttrTypes, map[string]attr.Value{
			"secret": types.StringValue(m.GetSecret()),
			"path":   stringFromRemote(m.GetPath(), pm.Path),
			"uid":    optionalUint32Value(m.Uid),
			"gid":    optionalUint32Value(m.Gid),
			"keys":   listFromRemote(m.GetKeys(), pm.Keys),
			"mode":   mode,
		}))
	}
	return types.ListValueMust(secretMountObjectType, elems), diags
}

func optionalUint32Value(v *uint32) types.Int64 {
	if v == nil {
		return types.Int64Null()
	}
	return types.Int64Value(int64(*v))
}

// secretEnvFromRemote renders a container's secret env as blocks.
func secretEnvFromRemote(remote []*herdv1.SecretEnv) types.List {
	elems := make([]attr.Value, 0, len(remote))
	for _, e := range remote {
		elems = append(elems, types.ObjectValueMust(secretEnvAttrTypes, map[string]attr.Value{
			"name":   types.StringValue(e.GetName()),
			"secret": types.StringValue(e.GetSecret()),
			"key":    types.StringValue(e.GetKey()),
		}))
	}
	return types.ListValueMust(secretEnvObjectType, elems)
}
