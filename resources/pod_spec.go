package resources

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// podModel is the state of herd_pod.
type podModel struct {
	ID                            types.String   `tfsdk:"id"`
	Node                          types.String   `tfsdk:"node"`
	Name                          types.String   `tfsdk:"name"`
	Namespace                     types.String   `tfsdk:"namespace"`
	Labels                        types.Map      `tfsdk:"labels"`
	RestartPolicy                 types.String   `tfsdk:"restart_policy"`
	TerminationGracePeriodSeconds types.Int64    `tfsdk:"termination_grace_period_seconds"`
	Containers                    types.List     `tfsdk:"container"`
	Timeouts                      timeouts.Value `tfsdk:"timeouts"`
	UID                           types.String   `tfsdk:"uid"`
	Phase                         types.String   `tfsdk:"phase"`
	StartTime                     types.String   `tfsdk:"start_time"`
	RestartCount                  types.Int64    `tfsdk:"restart_count"`
	PodIP                         types.String   `tfsdk:"pod_ip"`
	Ready                         types.Bool     `tfsdk:"ready"`
	QoSClass                      types.String   `tfsdk:"qos_class"`
	ContainerStatus               types.List     `tfsdk:"container_status"`
	ImagePullSecret               types.String   `tfsdk:"image_pull_secret"`
	RestartOnSecretChange         types.Bool     `tfsdk:"restart_on_secret_change"`
	RestartOnConfigChange         types.Bool     `tfsdk:"restart_on_config_change"`
	EmptyDirs                     types.List     `tfsdk:"empty_dir"`
}

// containerModel is one container block.
type containerModel struct {
	Name       types.String `tfsdk:"name"`
	Image      types.String `tfsdk:"image"`
	Command    types.List   `tfsdk:"command"`
	Args       types.List   `tfsdk:"args"`
	Env        types.Map    `tfsdk:"env"`
	WorkingDir types.String `tfsdk:"working_dir"`
	CPU        types.String `tfsdk:"cpu"`
	Memory     types.String `tfsdk:"memory"`
	Ports      types.List   `tfsdk:"port"`

	CPURequest    types.String `tfsdk:"cpu_request"`
	MemoryRequest types.String `tfsdk:"memory_request"`

	ReadinessProbe types.Object `tfsdk:"readiness_probe"`
	LivenessProbe  types.Object `tfsdk:"liveness_probe"`
	StartupProbe   types.Object `tfsdk:"startup_probe"`

	SecretMounts types.List `tfsdk:"secret_mount"`
	SecretEnv    types.List `tfsdk:"secret_env"`

	VolumeMounts types.List `tfsdk:"volume_mount"`
	ConfigFiles  types.List `tfsdk:"config_file"`
}

// portModel is one port block of a container.
type portModel struct {
	Name          types.String `tfsdk:"name"`
	ContainerPort types.Int64  `tfsdk:"container_port"`
	Protocol      types.String `tfsdk:"protocol"`
}

var portAttrTypes = map[string]attr.Type{
	"name":           types.StringType,
	"container_port": types.Int64Type,
	"protocol":       types.StringType,
}

var portObjectType = types.ObjectType{AttrTypes: portAttrTypes}

var containerAttrTypes = map[string]attr.Type{
	"name":        types.StringType,
	"image":       types.StringType,
	"command":     types.ListType{ElemType: types.StringType},
	"args":        types.ListType{ElemType: types.StringType},
	"env":         types.MapType{ElemType: types.StringType},
	"working_dir": types.StringType,
	"cpu":         types.StringType,
	"memory":      types.StringType,
	"port":        types.ListType{ElemType: portObjectType},

	"cpu_request":    types.StringType,
	"memory_request": types.StringType,

	"readiness_probe": probeObjectType,
	"liveness_probe":  probeObjectType,
	"startup_probe":   probeObjectType,

	"secret_mount": types.ListType{ElemType: secretMountObjectType},
	"secret_env":   types.ListType{ElemType: secretEnvObjectType},

	"volume_mount": types.ListType{ElemType: volumeMountObjectType},
	"config_file":  types.ListType{ElemType: configFileObjectType},
}

var containerStatusAttrTypes = map[string]attr.Type{
	"name":           types.StringType,
	"state":          types.StringType,
	"reason":         types.StringType,
	"restart_count":  types.Int64Type,
	"last_exit_code": types.Int64Type,
	"pid":            types.Int64Type,
	"started_at":     types.StringType,
	"ready":          types.BoolType,
}

// specConversion is the result of converting a (possibly partly unknown)
// configuration into a PodSpec.
type specConversion struct {
	spec *herdv1.PodSpec
	// unknown lists the spec paths whose values are not known yet; errors
	// at or below them are not reported.
	unknown []spec.Path
	// errs are problems found by the conversion itself (values that do
	// not fit the spec's types); their paths are in unknown too.
	errs spec.FieldErrors
}

// placeholders stand in for unknown required strings so that validation of
// the known parts can run; errors at their paths are dropped.
const placeholderImage = "herd.invalid/unknown:placeholder"

func placeholderName(i int) string { return fmt.Sprintf("x-unknown-value-%d-placeholder", i) }

// podSpecFromModel converts the configuration or plan into a PodSpec.
// restart_policy and termination_grace_period_seconds are copied only when
// withPolicy is set: at validation time their framework validators check
// them, and checking them twice would repeat every error.
func podSpecFromModel(ctx context.Context, m podModel, withPolicy bool) (specConversion, diag.Diagnostics) {
	var (
		diags diag.Diagnostics
		out   specConversion
		s     = &herdv1.PodSpec{}
	)
	out.spec = s
	unknown := func(p spec.Path) { out.unknown = append(out.unknown, p) }

	if m.Name.IsUnknown() {
		s.Name = placeholderName(0)
		unknown(spec.Path{}.Field("name"))
	} else {
		s.Name = m.Name.ValueString()
	}
	if m.Namespace.IsUnknown() {
		unknown(spec.Path{}.Field("namespace"))
	} else if !m.Namespace.IsNull() {
		s.Namespace = m.Namespace.ValueString()
	}
	s.Labels = mapWithUnknowns(m.Labels, spec.Path{}.Field("labels"), unknown)
	s.ImagePullSecret = stringWithUnknown(m.ImagePullSecret, spec.Path{}.Field("image_pull_secret"), unknown)
	s.RestartOnSecretChange = m.RestartOnSecretChange.ValueBool()
	s.RestartOnConfigChange = m.RestartOnConfigChange.ValueBool()
	diags.Append(out.emptyDirsFromModel(ctx, m.EmptyDirs, s)...)
	if withPolicy {
		if !m.RestartPolicy.IsNull() && !m.RestartPolicy.IsUnknown() {
			s.RestartPolicy = m.RestartPolicy.ValueString()
		}
		if !m.TerminationGracePeriodSeconds.IsNull() && !m.TerminationGracePeriodSeconds.IsUnknown() {
			g := m.TerminationGracePeriodSeconds.ValueInt64()
			s.TerminationGracePeriodSeconds = &g
		}
	}

	cp := spec.Path{}.Field("containers")
	if m.Containers.IsUnknown() {
		unknown(cp)
		return out, diags
	}
	for i, v := range m.Containers.Elements() {
		p := cp.Index(i)
		obj, ok := v.(types.Object)
		if !ok || obj.IsUnknown() || obj.IsNull() {
			unknown(p)
			s.Containers = append(s.Containers, &herdv1.ContainerSpec{Name: placeholderName(i + 1), Image: placeholderImage})
			continue
		}
		var cm containerModel
		diags.Append(obj.As(ctx, &cm, basetypes.ObjectAsOptions{})...)
		if diags.HasError() {
			return out, diags
		}
		c := &herdv1.ContainerSpec{}
		if cm.Name.IsUnknown() {
			c.Name = placeholderName(i + 1)
			unknown(p.Field("name"))
		} else {
			c.Name = cm.Name.ValueString()
		}
		if cm.Image.IsUnknown() {
			c.Image = placeholderImage
			unknown(p.Field("image"))
		} else {
			c.Image = cm.Image.ValueString()
		}
		c.Command = listWithUnknowns(cm.Command, p.Field("command"), unknown)
		c.Args = listWithUnknowns(cm.Args, p.Field("args"), unknown)
		c.Env = mapWithUnknowns(cm.Env, p.Field("env"), unknown)
		c.WorkingDir = stringWithUnknown(cm.WorkingDir, p.Field("working_dir"), unknown)
		c.Cpu = stringWithUnknown(cm.CPU, p.Field("cpu"), unknown)
		c.Memory = stringWithUnknown(cm.Memory, p.Field("memory"), unknown)
		c.CpuRequest = stringWithUnknown(cm.CPURequest, p.Field("cpu_request"), unknown)
		c.MemoryRequest = stringWithUnknown(cm.MemoryRequest, p.Field("memory_request"), unknown)
		ports, d := out.portsFromModel(ctx, cm.Ports, p.Field("ports"), i)
		diags.Append(d...)
		if diags.HasError() {
			return out, diags
		}
		c.Ports = ports
		diags.Append(out.probesFromModel(ctx, cm, c, p)...)
		diags.Append(out.secretsFromModel(ctx, cm, c, p)...)
		diags.Append(out.storageFromModel(ctx, cm, c, p, m.Node, m.Namespace)...)
		if diags.HasError() {
			return out, diags
		}
		s.Containers = append(s.Containers, c)
	}
	return out, diags
}

// portsFromModel converts the port blocks of container ci. An unknown port
// is a nil entry (its errors are dropped) so that the indexes of the others
// stay right; an unknown protocol gets a placeholder unique to its port, so
// that it does not look like a duplicate.
func (out *specConversion) portsFromModel(ctx context.Context, l types.List, p spec.Path, ci int) ([]*herdv1.ContainerPort, diag.Diagnostics) {
	var diags diag.Diagnostics
	if l.IsUnknown() {
		out.unknown = append(out.unknown, p)
		return nil, diags
	}
	if l.IsNull() {
		return nil, diags
	}
	ports := make([]*herdv1.ContainerPort, 0, len(l.Elements()))
	for j, v := range l.Elements() {
		pp := p.Index(j)
		obj, ok := v.(types.Object)
		if !ok || obj.IsUnknown() || obj.IsNull() {
			out.unknown = append(out.unknown, pp)
			ports = append(ports, nil)
			continue
		}
		var pm portModel
		diags.Append(obj.As(ctx, &pm, basetypes.ObjectAsOptions{})...)
		if diags.HasError() {
			return nil, diags
		}
		cp := &herdv1.ContainerPort{}
		cp.Name = stringWithUnknown(pm.Name, pp.Field("name"), func(u spec.Path) { out.unknown = append(out.unknown, u) })
		switch n := pm.ContainerPort.ValueInt64(); {
		case pm.ContainerPort.IsUnknown():
			out.unknown = append(out.unknown, pp.Field("container_port"))
		case n < math.MinInt32 || n > math.MaxInt32:
			// Out of the range of the spec's int32: report it here.
			out.unknown = append(out.unknown, pp.Field("container_port"))
			out.errs = append(out.errs, spec.FieldError{Path: pp.Field("container_port"),
				Msg: fmt.Sprintf("must be between 1 and 65535, got %d", n)})
		default:
			cp.ContainerPort = int32(n)
		}
		if pm.Protocol.IsUnknown() {
			out.unknown = append(out.unknown, pp.Field("protocol"))
			cp.Protocol = fmt.Sprintf("unknown-%d-%d", ci, j)
		} else {
			cp.Protocol = pm.Protocol.ValueString()
		}
		ports = append(ports, cp)
	}
	return ports, diags
}

func stringWithUnknown(v types.String, p spec.Path, unknown func(spec.Path)) string {
	if v.IsUnknown() {
		unknown(p)
		return ""
	}
	return v.ValueString()
}

func listWithUnknowns(l types.List, p spec.Path, unknown func(spec.Path)) []string {
	if l.IsUnknown() {
		unknown(p)
		return nil
	}
	if l.IsNull() {
		return nil
	}
	out := make([]string, 0, len(l.Elements()))
	for i, v := range l.Elements() {
		s, _ := v.(types.String)
		if s.IsUnknown() {
			unknown(p.Index(i))
		}
		out = append(out, s.ValueString())
	}
	return out
}

func mapWithUnknowns(m types.Map, p spec.Path, unknown func(spec.Path)) map[string]string {
	if m.IsUnknown() {
		unknown(p)
		return nil
	}
	if m.IsNull() {
		return nil
	}
	out := make(map[string]string, len(m.Elements()))
	for k, v := range m.Elements() {
		s, _ := v.(types.String)
		if s.IsUnknown() {
			unknown(p.Key(k))
		}
		out[k] = s.ValueString()
	}
	return out
}

// hasPrefix reports whether p starts with prefix.
func hasPrefix(p, prefix spec.Path) bool {
	if len(prefix) > len(p) {
		return false
	}
	for i := range prefix {
		if p[i] != prefix[i] {
			return false
		}
	}
	return true
}

// validatePodSpec runs agentd's validation on a converted configuration and
// returns the errors that concern known values.
func validatePodSpec(c specConversion) spec.FieldErrors {
	out := append(spec.FieldErrors(nil), c.errs...)
next:
	for _, fe := range spec.ValidatePod(c.spec) {
		for _, u := range c.unknown {
			if hasPrefix(fe.Path, u) {
				continue next
			}
		}
		out = append(out, fe)
	}
	return out
}

// podAttributePath maps a spec path (relative to a PodSpec) to the herd_pod
// attribute path: the spec's "containers" list is the "container" block,
// a container's "ports" list its "port" block,
// list indexes and map keys carry over, every other field has the same
// name in both.
func podAttributePath(p spec.Path) path.Path {
	return attributePath(p, func(i int, name string) string {
		if i == 0 && name == "containers" {
			return "container"
		}
		if i == 0 && name == "empty_dirs" {
			return "empty_dir"
		}
		if i == 2 && p[0].Field == "containers" {
			switch name {
			case "ports":
				return "port"
			case "secret_mounts":
				return "secret_mount"
			case "volume_mounts":
				return "volume_mount"
			case "config_files":
				return "config_file"
			}
		}
		return name
	})
}

// addFieldErrors reports spec field errors at their attribute paths.
func addFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors) {
	summary := func(p spec.Path) string {
		if len(p) > 0 && p[0].Field == "containers" {
			return "Invalid container specification"
		}
		return "Invalid pod specification"
	}
	// Messages may name other containers the way agentd spells them.
	addSpecFieldErrors(diags, errs, summary, podAttributePath,
		strings.NewReplacer("containers[", "container[", "secret_mounts[", "secret_mount[",
			"volume_mounts[", "volume_mount[", "config_files[", "config_file[", "empty_dirs[", "empty_dir["))
}

// podStatus fills the computed status attributes from a pod.
func (m *podModel) setStatus(pod *herdv1.Pod) {
	st := pod.GetStatus()
	m.UID = types.StringValue(pod.GetUid())
	m.Phase = types.StringValue(st.GetPhase())
	m.StartTime = timeString(st.GetStartTime())
	var total int64
	elems := make([]attr.Value, 0, len(st.GetContainers()))
	for _, cs := range st.GetContainers() {
		total += int64(cs.GetRestartCount())
		exit := types.Int64Null()
		if cs.LastExitCode != nil {
			exit = types.Int64Value(int64(cs.GetLastExitCode()))
		}
		elems = append(elems, types.ObjectValueMust(containerStatusAttrTypes, map[string]attr.Value{
			"name":           types.StringValue(cs.GetName()),
			"state":          types.StringValue(cs.GetState()),
			"reason":         types.StringValue(cs.GetReason()),
			"restart_count":  types.Int64Value(int64(cs.GetRestartCount())),
			"last_exit_code": exit,
			"pid":            types.Int64Value(int64(cs.GetPid())),
			"started_at":     timeString(cs.GetStartedAt()),
			"ready":          types.BoolValue(cs.GetReady()),
		}))
	}
	m.RestartCount = types.Int64Value(total)
	m.PodIP = types.StringValue(st.GetPodIp())
	m.Ready = types.BoolValue(st.GetReady())
	m.QoSClass = types.StringValue(st.GetQosClass())
	m.ContainerStatus = types.ListValueMust(types.ObjectType{AttrTypes: containerStatusAttrTypes}, elems)
}

// setSpec fills the spec attributes from what the node reports, using prior
// (state or plan) only to choose between null and empty values.
func (m *podModel) setSpec(ctx context.Context, s *herdv1.PodSpec, prior podModel) diag.Diagnostics {
	var diags diag.Diagnostics
	d := spec.Defaulted(s)
	m.Name = types.StringValue(d.GetName())
	m.Namespace = types.StringValue(spec.PodNamespace(s))
	m.Labels = mapFromRemote(d.GetLabels(), prior.Labels)
	m.RestartPolicy = types.StringValue(d.GetRestartPolicy())
	m.TerminationGracePeriodSeconds = types.Int64Value(d.GetTerminationGracePeriodSeconds())
	m.ImagePullSecret = stringFromRemote(d.GetImagePullSecret(), prior.ImagePullSecret)
	m.RestartOnSecretChange = types.BoolValue(d.GetRestartOnSecretChange())
	m.RestartOnConfigChange = types.BoolValue(d.GetRestartOnConfigChange())
	m.EmptyDirs = emptyDirsFromRemote(d.GetEmptyDirs())

	var priorContainers []containerModel
	if !prior.Containers.IsNull() && !prior.Containers.IsUnknown() {
		diags.Append(prior.Containers.ElementsAs(ctx, &priorContainers, false)...)
		if diags.HasError() {
			return diags
		}
	}
	objType := types.ObjectType{AttrTypes: containerAttrTypes}
	elems := make([]attr.Value, 0, len(d.GetContainers()))
	for i, c := range d.GetContainers() {
		var pc containerModel
		if i < len(priorContainers) {
			pc = priorContainers[i]
		} else {
			pc = containerModel{
				WorkingDir: types.StringNull(), CPU: types.StringNull(), Memory: types.StringNull(),
				CPURequest: types.StringNull(), MemoryRequest: types.StringNull(),
				Command: types.ListNull(types.StringType), Args: types.ListNull(types.StringType),
				Env: types.MapNull(types.StringType), Ports: types.ListNull(portObjectType),
				SecretMounts: types.ListNull(secretMountObjectType),
				VolumeMounts: types.ListNull(volumeMountObjectType),
				ConfigFiles:  types.ListNull(configFileObjectType),
			}
			pc.ReadinessProbe, pc.LivenessProbe, pc.StartupProbe = nullProbes()
		}
		ports, dd := portsFromRemote(ctx, c.GetPorts(), pc.Ports)
		diags.Append(dd...)
		readiness, dd := probeFromRemote(ctx, c.GetReadinessProbe(), pc.ReadinessProbe)
		diags.Append(dd...)
		liveness, dd := probeFromRemote(ctx, c.GetLivenessProbe(), pc.LivenessProbe)
		diags.Append(dd...)
		startup, dd := probeFromRemote(ctx, c.GetStartupProbe(), pc.StartupProbe)
		diags.Append(dd...)
		mounts, dd := secretMountsFromRemote(ctx, c.GetSecretMounts(), pc.SecretMounts)
		diags.Append(dd...)
		volumeMounts, dd := volumeMountsFromRemote(ctx, c.GetVolumeMounts(), pc.VolumeMounts)
		diags.Append(dd...)
		configFiles, dd := configFilesFromRemote(ctx, c.GetConfigFiles(), pc.ConfigFiles)
		diags.Append(dd...)
		cm := containerModel{
			Name:       types.StringValue(c.GetName()),
			Image:      types.StringValue(c.GetImage()),
			Command:    listFromRemote(c.GetCommand(), pc.Command),
			Args:       listFromRemote(c.GetArgs(), pc.Args),
			Env:        mapFromRemote(c.GetEnv(), pc.Env),
			WorkingDir: stringFromRemote(c.GetWorkingDir(), pc.WorkingDir),
			CPU:        stringFromRemote(c.GetCpu(), pc.CPU),
			Memory:     stringFromRemote(c.GetMemory(), pc.Memory),
			Ports:      ports,

			CPURequest:    stringFromRemote(c.GetCpuRequest(), pc.CPURequest),
			MemoryRequest: stringFromRemote(c.GetMemoryRequest(), pc.MemoryRequest),

			ReadinessProbe: readiness,
			LivenessProbe:  liveness,
			StartupProbe:   startup,

			SecretMounts: mounts,
			SecretEnv:    secretEnvFromRemote(c.GetSecretEnv()),

			VolumeMounts: volumeMounts,
			ConfigFiles:  configFiles,
		}
		obj, dd := types.ObjectValueFrom(ctx, containerAttrTypes, cm)
		diags.Append(dd...)
		elems = append(elems, obj)
	}
	if diags.HasError() {
		return diags
	}
	m.Containers = types.ListValueMust(objType, elems)
	return diags
}

// portsFromRemote renders a container's (defaulted) ports as port blocks:
// always a known list, as Terraform has it for blocks, with a null name for
// a port without one unless prior held "".
func portsFromRemote(ctx context.Context, remote []*herdv1.ContainerPort, prior types.List) (types.List, diag.Diagnostics) {
	var (
		diags      diag.Diagnostics
		priorPorts []portModel
	)
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.ElementsAs(ctx, &priorPorts, false)...)
		if diags.HasError() {
			return types.ListNull(portObjectType), diags
		}
	}
	elems := make([]attr.Value, 0, len(remote))
	for j, p := range remote {
		priorName := types.StringNull()
		if j < len(priorPorts) {
			priorName = priorPorts[j].Name
		}
		elems = append(elems, types.ObjectValueMust(portAttrTypes, map[string]attr.Value{
			"name":           stringFromRemote(p.GetName(), priorName),
			"container_port": types.Int64Value(int64(p.GetContainerPort())),
			"protocol":       types.StringValue(p.GetProtocol()),
		}))
	}
	return types.ListValueMust(portObjectType, elems), diags
}
