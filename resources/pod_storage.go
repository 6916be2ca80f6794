package resources

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Storage in herd_pod: a container's volume_mount and config_file blocks,
// the pod's empty_dir blocks and restart_on_config_change. The rules are
// agentd's (spec.ValidatePodVolumes); that a volume exists on the pod's
// node and has no other writer is checked by agentd when the pod is
// applied. Config file content and modes change in place; every other
// change replaces the pod.

type volumeMountModel struct {
	Volume   types.String `tfsdk:"volume"`
	EmptyDir types.String `tfsdk:"empty_dir"`
	Path     types.String `tfsdk:"path"`
	ReadOnly types.Bool   `tfsdk:"read_only"`
	SubPath  types.String `tfsdk:"sub_path"`
}

type configFileModel struct {
	Path    types.String `tfsdk:"path"`
	Content types.String `tfsdk:"content"`
	Mode    types.String `tfsdk:"mode"`
}

type emptyDirModel struct {
	Name      types.String `tfsdk:"name"`
	Medium    types.String `tfsdk:"medium"`
	SizeLimit types.String `tfsdk:"size_limit"`
}

var volumeMountAttrTypes = map[string]attr.Type{
	"volume":    types.StringType,
	"empty_dir": types.StringType,
	"path":      types.StringType,
	"read_only": types.BoolType,
	"sub_path":  types.StringType,
}

var volumeMountObjectType = types.ObjectType{AttrTypes: volumeMountAttrTypes}

var configFileAttrTypes = map[string]attr.Type{
	"path":    types.StringType,
	"content": types.StringType,
	"mode":    types.StringType,
}

var configFileObjectType = types.ObjectType{AttrTypes: configFileAttrTypes}

var emptyDirAttrTypes = map[string]attr.Type{
	"name":       types.StringType,
	"medium":     types.StringType,
	"size_limit": types.StringType,
}

var emptyDirObjectType = types.ObjectType{AttrTypes: emptyDirAttrTypes}

// withStorageBlocks adds the volume_mount and config_file blocks to a
// container's blocks.
func withStorageBlocks(blocks map[string]schema.Block) map[string]schema.Block {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	replaceBool := []planmodifier.Bool{boolplanmodifier.RequiresReplace()}
	blocks["volume_mount"] = schema.ListNestedBlock{
		MarkdownDescription: fmt.Sprintf("Mounts a persistent volume (`volume`) or one of the pod's `empty_dir`s "+
			"(`empty_dir`) into the container; exactly one of the two. A volume is mounted read-write by at most one pod "+
			"at a time (agentd refuses another, naming the one that holds it); read-only mounts may be shared by pods on "+
			"the volume's node. At most %d per container. Adding, removing or changing one replaces the pod.", spec.MaxVolumeMounts),
		PlanModifiers: []planmodifier.List{replaceUnlessSameMounts()},
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"volume": schema.StringAttribute{
					MarkdownDescription: "A `herd_volume` of the pod's namespace on the pod's node: its `id` " +
						"(`herd_volume.data.id`, which lets the plan check node and namespace, and orders the apply) or its name. " +
						"Switching between the two spellings of the same volume changes nothing on the node.",
					Optional:      true,
					PlanModifiers: []planmodifier.String{replaceUnlessSameVolume()},
				},
				"empty_dir": schema.StringAttribute{
					MarkdownDescription: "The `name` of one of the pod's `empty_dir` blocks.",
					Optional:            true,
					PlanModifiers:       replaceString,
				},
				"path": schema.StringAttribute{
					MarkdownDescription: "Where it appears in the container: an absolute, clean path, not `/`, not in " +
						"`/proc`, `/sys` or `/dev`, and neither equal to nor inside nor above another mount of the container.",
					Required:      true,
					PlanModifiers: replaceString,
				},
				"read_only": schema.BoolAttribute{
					MarkdownDescription: "Mount it read-only (volumes only). Default false.",
					Optional:            true,
					PlanModifiers:       replaceBool,
				},
				"sub_path": schema.StringAttribute{
					MarkdownDescription: "A relative directory inside the volume to mount instead of its root; made when " +
						"missing. No `..`; a symlink on the way is refused when the container starts.",
					Optional:      true,
					PlanModifiers: replaceString,
				},
			},
		},
	}
	blocks["config_file"] = schema.ListNestedBlock{
		MarkdownDescription: fmt.Sprintf("A non-secret file delivered read-only to the container. Every directory "+
			"holding config files becomes one read-only mount that holds only those files (it hides what the image has "+
			"there, so give config files a directory of their own, e.g. `/etc/app`). Changing `content` or `mode` "+
			"updates the file in the running container in place, atomically (a reader sees the old file or the new one, "+
			"never a mix), without a restart unless the pod sets `restart_on_config_change`; adding, removing or moving "+
			"one replaces the pod. The content is kept in the state and in agentd's records in plain text: use "+
			"`herd_secret` and `secret_mount` for anything sensitive. At most %d per container and 1 MiB per pod.", spec.MaxConfigFiles),
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"path": schema.StringAttribute{
					MarkdownDescription: "Absolute path of the file in the container; its directory is not `/` and not in " +
						"`/proc`, `/sys` or `/dev`.",
					Required:      true,
					PlanModifiers: replaceString,
				},
				"content": schema.StringAttribute{
					MarkdownDescription: "The file's content. Changes in place.",
					Required:            true,
				},
				"mode": schema.StringAttribute{
					MarkdownDescription: "The file's mode as an octal string, e.g. `\"0640\"`; at most `\"0777\"`. " +
						"Default `\"0644\"`. Changes in place.",
					Optional: true,
				},
			},
		},
	}
	return blocks
}

// emptyDirBlock is herd_pod's empty_dir block.
func emptyDirBlock() schema.Block {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	return schema.ListNestedBlock{
		MarkdownDescription: fmt.Sprintf("Scratch space of the pod, shared by the containers that mount it "+
			"(`volume_mount { empty_dir = NAME }`), made empty when the pod is created and deleted with it: it survives "+
			"container restarts, not a replacement of the pod. At most %d. Changing them replaces the pod.", spec.MaxEmptyDirs),
		PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()},
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"name": schema.StringAttribute{
					MarkdownDescription: "Its name, unique in the pod: a lowercase RFC 1123 label.",
					Required:            true,
					PlanModifiers:       replaceString,
				},
				"medium": schema.StringAttribute{
					MarkdownDescription: "`disk` (the default: a directory in agentd's state dir) or `memory` (a tmpfs: " +
						"fast, gone with the pod, and its pages count against the memory limit of the container that writes them).",
					Optional:      true,
					Computed:      true,
					Default:       stringdefault.StaticString(spec.EmptyDirDisk),
					PlanModifiers: replaceString,
				},
				"size_limit": schema.StringAttribute{
					MarkdownDescription: "Its size, a quantity such as `\"64Mi\"` (at least `1Mi`): required for `memory` " +
						"(the tmpfs size). For `disk` it is enforced by an ext4 image of that size like a volume's (writes past " +
						"it get ENOSPC); unset: no limit but the disk's.",
					Optional:      true,
					PlanModifiers: replaceString,
				},
			},
		},
	}
}

// parseVolumeRef splits a volume_mount's volume: a name, or a herd_volume
// id NODEID/NAMESPACE/NAME.
func parseVolumeRef(ref string) (node, namespace, name string, isID bool) {
	parts := strings.Split(ref, "/")
	if len(parts) == 3 {
		return parts[0], parts[1], parts[2], true
	}
	return "", "", ref, false
}

// storageFromModel sets the volume mounts and config files of container c
// (at spec path p) from its blocks. pod is the pod's model: a volume named
// by id must be on its node and in its namespace.
func (out *specConversion) storageFromModel(ctx context.Context, cm containerModel, c *herdv1.ContainerSpec, p spec.Path, node, namespace types.String) diag.Diagnostics {
	var diags diag.Diagnostics
	unknown := func(u spec.Path) { out.unknown = append(out.unknown, u) }
	vp := p.Field("volume_mounts")
	switch l := cm.VolumeMounts; {
	case l.IsUnknown():
		unknown(vp)
	case l.IsNull():
	default:
		for j, v := range l.Elements() {
			ip := vp.Index(j)
			obj, ok := v.(types.Object)
			if !ok || obj.IsUnknown() || obj.IsNull() {
				unknown(ip)
				c.VolumeMounts = append(c.VolumeMounts, &herdv1.VolumeMount{Volume: placeholderName(j), Path: fmt.Sprintf("/x-unknown-volume/%d", j)})
				continue
			}
			var m volumeMountModel
			diags.Append(obj.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			if diags.HasError() {
				return diags
			}
			vm := &herdv1.VolumeMount{ReadOnly: m.ReadOnly.ValueBool()}
			if m.Volume.IsUnknown() {
				unknown(ip.Field("volume"))
				vm.Volume = placeholderName(j)
			} else if ref := m.Volume.ValueString(); ref != "" {
				vnode, vns, vname, isID := parseVolumeRef(ref)
				vm.Volume = vname
				if isID {
					out.checkVolumeID(ip.Field("volume"), ref, vnode, vns, node, namespace)
				}
			}
			vm.EmptyDir = stringWithUnknown(m.EmptyDir, ip.Field("empty_dir"), unknown)
			if m.Path.IsUnknown() {
				unknown(ip.Field("path"))
				vm.Path = fmt.Sprintf("/x-unknown-volume/%d", j)
			} else {
				vm.Path = m.Path.ValueString()
			}
			if m.ReadOnly.IsUnknown() {
				unknown(ip.Field("read_only"))
			}
			vm.SubPath = stringWithUnknown(m.SubPath, ip.Field("sub_path"), unknown)
			c.VolumeMounts = append(c.VolumeMounts, vm)
		}
	}
	fp := p.Field("config_files")
	switch l := cm.ConfigFiles; {
	case l.IsUnknown():
		unknown(fp)
	case l.IsNull():
	default:
		for j, v := range l.Elements() {
			ip := fp.Index(j)
			obj, ok := v.(types.Object)
			if !ok || obj.IsUnknown() || obj.IsNull() {
				unknown(ip)
				c.ConfigFiles = append(c.ConfigFiles, &herdv1.ConfigFile{Path: fmt.Sprintf("/x-unknown-config/%d/f", j)})
				continue
			}
			var m configFileModel
			diags.Append(obj.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			if diags.HasError() {
				return diags
			}
			f := &herdv1.ConfigFile{}
			if m.Path.IsUnknown() {
				unknown(ip.Field("path"))
				f.Path = fmt.Sprintf("/x-unknown-config/%d/f", j)
			} else {
				f.Path = m.Path.ValueString()
			}
			f.Content = stringWithUnknown(m.Content, ip.Field("content"), unknown)
			f.Mode = out.fileMode(m.Mode, ip.Field("mode"))
			c.ConfigFiles = append(c.ConfigFiles, f)
		}
	}
	return diags
}

// checkVolumeID refuses, at plan time, a volume id of another node or
// namespace than the pod's (when those are known).
func (out *specConversion) checkVolumeID(p spec.Path, ref, vnode, vns string, node, namespace types.String) {
	if !node.IsUnknown() && !node.IsNull() && vnode != node.ValueString() {
		out.errs = append(out.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf(
			"volume %s is on node %s, and this pod runs on %s: volumes are node-local, so a pod runs on its volume's node", ref, vnode, node.ValueString())})
	}
	ns := spec.DefaultPodNamespace
	if !namespace.IsNull() && !namespace.IsUnknown() && namespace.ValueString() != "" {
		ns = namespace.ValueString()
	}
	if !namespace.IsUnknown() && vns != ns {
		out.errs = append(out.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf(
			"volume %s is in namespace %s: a pod in namespace %s mounts only volumes of its own namespace", ref, vns, ns)})
	}
}

// emptyDirsFromModel sets the pod's empty_dirs from its blocks.
func (out *specConversion) emptyDirsFromModel(ctx context.Context, l types.List, s *herdv1.PodSpec) diag.Diagnostics {
	var diags diag.Diagnostics
	unknown := func(u spec.Path) { out.unknown = append(out.unknown, u) }
	dp := spec.Path{}.Field("empty_dirs")
	switch {
	case l.IsUnknown():
		unknown(dp)
		return diags
	case l.IsNull():
		return diags
	}
	for j, v := range l.Elements() {
		ip := dp.Index(j)
		obj, ok := v.(types.Object)
		if !ok || obj.IsUnknown() || obj.IsNull() {
			unknown(ip)
			s.EmptyDirs = append(s.EmptyDirs, &herdv1.EmptyDir{Name: placeholderName(j)})
			continue
		}
		var m emptyDirModel
		diags.Append(obj.As(ctx, &m, basetypes.ObjectAsOptions{})...)
		if diags.HasError() {
			return diags
		}
		d := &herdv1.EmptyDir{}
		if m.Name.IsUnknown() {
			unknown(ip.Field("name"))
			d.Name = placeholderName(j)
		} else {
			d.Name = m.Name.ValueString()
		}
		d.Medium = stringWithUnknown(m.Medium, ip.Field("medium"), unknown)
		d.SizeLimit = stringWithUnknown(m.SizeLimit, ip.Field("size_limit"), unknown)
		s.EmptyDirs = append(s.EmptyDirs, d)
	}
	return diags
}

// volumeMountsFromRemote renders a container's volume mounts as blocks; a
// volume named by id in prior keeps its id.
func volumeMountsFromRemote(ctx context.Context, remote []*herdv1.VolumeMount, prior types.List) (types.List, diag.Diagnostics) {
	var diags diag.Diagnostics
	var pms []volumeMountModel
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.ElementsAs(ctx, &pms, false)...)
		if diags.HasError() {
			return types.ListNull(volumeMountObjectType), diags
		}
	}
	elems := make([]attr.Value, 0, len(remote))
	for j, m := range remote {
		pm := volumeMountModel{Volume: types.StringNull(), EmptyDir: types.StringNull(), ReadOnly: types.BoolNull(), SubPath: types.StringNull()}
		if j < len(pms) {
			pm = pms[j]
		}
		volume := stringFromRemote(m.GetVolume(), pm.Volume)
		if _, _, name, isID := parseVolumeRef(pm.Volume.ValueString()); isID && name == m.GetVolume() {
			volume = pm.Volume
		}
		readOnly := types.BoolValue(m.GetReadOnly())
		if !m.GetReadOnly() && pm.ReadOnly.IsNull() {
			readOnly = types.BoolNull()
		}
		elems = append(elems, types.ObjectValueMust(volumeMountAttrTypes, map[string]attr.Value{
			"volume":    volume,
			"empty_dir": stringFromRemote(m.GetEmptyDir(), pm.EmptyDir),
			"path":      types.StringValue(m.GetPath()),
			"read_only": readOnly,
			"sub_path":  stringFromRemote(m.GetSubPath(), pm.SubPath),
		}))
	}
	return types.ListValueMust(volumeMountObjectType, elems), diags
}

// configFilesFromRemote renders a container's config files as blocks.
func configFilesFromRemote(ctx context.Context, remote []*herdv1.ConfigFile, prior types.List) (types.List, diag.Diagnostics) {
	var diags diag.Diagnostics
	var pms []configFileModel
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.ElementsAs(ctx, &pms, false)...)
		if diags.HasError() {
			return types.ListNull(configFileObjectType), diags
		}
	}
	elems := make([]attr.Value, 0, len(remote))
	for j, f := range remote {
		pmode := types.StringNull()
		if j < len(pms) {
			pmode = pms[j].Mode
		}
		mode := types.StringNull()
		if m := spec.ConfigFileMode(f); !pmode.IsNull() || m != spec.DefaultConfigMode {
			mode = formatFileMode(m, pmode)
		}
		elems = append(elems, types.ObjectValueMust(configFileAttrTypes, map[string]attr.Value{
			"path":    types.StringValue(f.GetPath()),
			"content": types.StringValue(f.GetContent()),
			"mode":    mode,
		}))
	}
	return types.ListValueMust(configFileObjectType, elems), diags
}

// emptyDirsFromRemote renders the pod's empty_dirs as blocks: always a
// known list, as Terraform has it for blocks.
func emptyDirsFromRemote(remote []*herdv1.EmptyDir) types.List {
	elems := make([]attr.Value, 0, len(remote))
	for _, d := range remote {
		size := types.StringNull()
		if d.GetSizeLimit() != "" {
			size = types.StringValue(d.GetSizeLimit())
		}
		elems = append(elems, types.ObjectValueMust(emptyDirAttrTypes, map[string]attr.Value{
			"name":       types.StringValue(d.GetName()),
			"medium":     types.StringValue(spec.EmptyDirMedium(d)),
			"size_limit": size,
		}))
	}
	return types.ListValueMust(emptyDirObjectType, elems)
}

// replaceUnlessConfigOnly is the container list's plan modifier: a change
// replaces the pod unless it is only in config file content or modes,
// which agentd updates in place (or in a volume's spelling, which changes
// nothing). Its description is RequiresReplace's, so
// that herd_deployment's template (which never replaces) drops it like the
// others.
func replaceUnlessConfigOnly() planmodifier.List {
	return listplanmodifier.RequiresReplaceIf(func(ctx context.Context, req planmodifier.ListRequest, resp *listplanmodifier.RequiresReplaceIfFuncResponse) {
		a, d := withoutConfigContent(ctx, req.StateValue)
		resp.Diagnostics.Append(d...)
		b, d := withoutConfigContent(ctx, req.PlanValue)
		resp.Diagnostics.Append(d...)
		resp.RequiresReplace = !a.Equal(b)
	}, listplanmodifier.RequiresReplace().Description(context.Background()),
		listplanmodifier.RequiresReplace().MarkdownDescription(context.Background()))
}

// replaceUnlessSameVolume is a volume_mount's volume plan modifier: the
// id and the name of one volume are the same mount (the plan checks an
// id's node and namespace against the pod's), so that a pod imported or
// read back with the volume's name is not replaced for a configuration
// naming it by id, or the other way round.
func replaceUnlessSameVolume() planmodifier.String {
	return stringplanmodifier.RequiresReplaceIf(func(_ context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace = req.PlanValue.IsUnknown() || req.StateValue.IsUnknown() ||
			req.PlanValue.IsNull() != req.StateValue.IsNull() ||
			volumeName(req.PlanValue.ValueString()) != volumeName(req.StateValue.ValueString())
	}, stringplanmodifier.RequiresReplace().Description(context.Background()),
		stringplanmodifier.RequiresReplace().MarkdownDescription(context.Background()))
}

// replaceUnlessSameMounts is the volume_mount list's plan modifier: any
// change replaces the pod but a volume's other spelling.
func replaceUnlessSameMounts() planmodifier.List {
	return listplanmodifier.RequiresReplaceIf(func(ctx context.Context, req planmodifier.ListRequest, resp *listplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace = !volumeNames(req.StateValue).Equal(volumeNames(req.PlanValue))
	}, listplanmodifier.RequiresReplace().Description(context.Background()),
		listplanmodifier.RequiresReplace().MarkdownDescription(context.Background()))
}

// volumeName is the name part of a volume_mount's volume.
func volumeName(ref string) string {
	_, _, name, _ := parseVolumeRef(ref)
	return name
}

// volumeNames is a volume_mount list with each volume spelled by name.
func volumeNames(l types.List) types.List {
	if l.IsNull() || l.IsUnknown() {
		return l
	}
	elems := make([]attr.Value, 0, len(l.Elements()))
	for _, v := range l.Elements() {
		obj, ok := v.(types.Object)
		vol, isStr := obj.Attributes()["volume"].(types.String)
		if !ok || obj.IsNull() || obj.IsUnknown() || !isStr || vol.IsNull() || vol.IsUnknown() {
			elems = append(elems, v)
			continue
		}
		attrs := make(map[string]attr.Value, len(obj.Attributes()))
		for k, a := range obj.Attributes() {
			attrs[k] = a
		}
		attrs["volume"] = types.StringValue(volumeName(vol.ValueString()))
		elems = append(elems, types.ObjectValueMust(volumeMountAttrTypes, attrs))
	}
	return types.ListValueMust(volumeMountObjectType, elems)
}

// withoutConfigContent is a container list with every config file's
// content and mode nulled, and volumes spelled by name.
func withoutConfigContent(ctx context.Context, l types.List) (types.List, diag.Diagnostics) {
	var diags diag.Diagnostics
	if l.IsNull() || l.IsUnknown() {
		return l, diags
	}
	elems := make([]attr.Value, 0, len(l.Elements()))
	for _, v := range l.Elements() {
		obj, ok := v.(types.Object)
		if !ok || obj.IsNull() || obj.IsUnknown() {
			elems = append(elems, v)
			continue
		}
		attrs := obj.Attributes()
		out := make(map[string]attr.Value, len(attrs))
		for k, a := range attrs {
			out[k] = a
		}
		if mounts, ok := attrs["volume_mount"].(types.List); ok {
			out["volume_mount"] = volumeNames(mounts)
		}
		if files, ok := attrs["config_file"].(types.List); ok && !files.IsNull() && !files.IsUnknown() {
			fe := make([]attr.Value, 0, len(files.Elements()))
			for _, f := range files.Elements() {
				fo, ok := f.(types.Object)
				if !ok || fo.IsNull() || fo.IsUnknown() {
					fe = append(fe, f)
					continue
				}
				fa := fo.Attributes()
				fe = append(fe, types.ObjectValueMust(configFileAttrTypes, map[string]attr.Value{
					"path": fa["path"], "content": types.StringNull(), "mode": types.StringNull(),
				}))
			}
			out["config_file"] = types.ListValueMust(configFileObjectType, fe)
		}
		o, d := types.ObjectValue(obj.AttributeTypes(ctx), out)
		diags.Append(d...)
		elems = append(elems, o)
	}
	return types.ListValueMust(l.ElementType(ctx), elems), diags
}
