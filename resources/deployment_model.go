package resources

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// deploymentModel is the state of herd_deployment.
type deploymentModel struct {
	ID                types.String   `tfsdk:"id"`
	Node              types.String   `tfsdk:"node"`
	Namespace         types.String   `tfsdk:"namespace"`
	Name              types.String   `tfsdk:"name"`
	Replicas          types.Int64    `tfsdk:"replicas"`
	Selector          types.Map      `tfsdk:"selector"`
	NodeSelector      types.Map      `tfsdk:"node_selector"`
	Template          types.Object   `tfsdk:"template"`
	Placement         types.Object   `tfsdk:"placement"`
	Strategy          types.Object   `tfsdk:"strategy"`
	Timeouts          timeouts.Value `tfsdk:"timeouts"`
	UID               types.String   `tfsdk:"uid"`
	Revision          types.Int64    `tfsdk:"revision"`
	ReadyReplicas     types.Int64    `tfsdk:"ready_replicas"`
	UpdatedReplicas   types.Int64    `tfsdk:"updated_replicas"`
	AvailableReplicas types.Int64    `tfsdk:"available_replicas"`
	Phase             types.String   `tfsdk:"phase"`
	Message           types.String   `tfsdk:"message"`
	ReplicaStatus     types.List     `tfsdk:"replica_status"`
	PlannedNodes      types.List     `tfsdk:"planned_nodes"`
}

// templateModel is the template block: herd_pod's attributes but node and
// name, which the driver chooses for each replica.
type templateModel struct {
	Labels                        types.Map    `tfsdk:"labels"`
	RestartPolicy                 types.String `tfsdk:"restart_policy"`
	TerminationGracePeriodSeconds types.Int64  `tfsdk:"termination_grace_period_seconds"`
	ImagePullSecret               types.String `tfsdk:"image_pull_secret"`
	RestartOnSecretChange         types.Bool   `tfsdk:"restart_on_secret_change"`
	RestartOnConfigChange         types.Bool   `tfsdk:"restart_on_config_change"`
	EmptyDirs                     types.List   `tfsdk:"empty_dir"`
	Containers                    types.List   `tfsdk:"container"`
}

// podModel is the template as herd_pod's model, so that herd_pod's
// conversions serve both. Its node is null: replicas go where the
// scheduler puts them (with their volumes), so a volume id's node is no
// error; its namespace is null too (templateFromModel sets the
// deployment's for the conversion).
func (t templateModel) podModel() podModel {
	return podModel{
		Node:                          types.StringNull(),
		Name:                          types.StringNull(),
		Namespace:                     types.StringNull(),
		Labels:                        t.Labels,
		RestartPolicy:                 t.RestartPolicy,
		TerminationGracePeriodSeconds: t.TerminationGracePeriodSeconds,
		ImagePullSecret:               t.ImagePullSecret,
		RestartOnSecretChange:         t.RestartOnSecretChange,
		RestartOnConfigChange:         t.RestartOnConfigChange,
		EmptyDirs:                     t.EmptyDirs,
		Containers:                    t.Containers,
	}
}

func templateFromPodModel(m podModel) templateModel {
	return templateModel{
		Labels:                        m.Labels,
		RestartPolicy:                 m.RestartPolicy,
		TerminationGracePeriodSeconds: m.TerminationGracePeriodSeconds,
		ImagePullSecret:               m.ImagePullSecret,
		RestartOnSecretChange:         m.RestartOnSecretChange,
		RestartOnConfigChange:         m.RestartOnConfigChange,
		EmptyDirs:                     m.EmptyDirs,
		Containers:                    m.Containers,
	}
}

type placementModel struct {
	Strategy   types.String `tfsdk:"strategy"`
	MaxPerNode types.Int64  `tfsdk:"max_per_node"`
}

type strategyModel struct {
	Type                    types.String `tfsdk:"type"`
	MaxSurge                types.Int64  `tfsdk:"max_surge"`
	MaxUnavailable          types.Int64  `tfsdk:"max_unavailable"`
	MinReadySeconds         types.Int64  `tfsdk:"min_ready_seconds"`
	ProgressDeadlineSeconds types.Int64  `tfsdk:"progress_deadline_seconds"`
	AutoRollback            types.Bool   `tfsdk:"auto_rollback"`
}

var (
	placementAttrTypes = map[string]attr.Type{"strategy": types.StringType, "max_per_node": types.Int64Type}
	strategyAttrTypes  = map[string]attr.Type{
		"type":                      types.StringType,
		"max_surge":                 types.Int64Type,
		"max_unavailable":           types.Int64Type,
		"min_ready_seconds":         types.Int64Type,
		"progress_deadline_seconds": types.Int64Type,
		"auto_rollback":             types.BoolType,
	}
	replicaStatusAttrTypes = map[string]attr.Type{
		"pod":      types.StringType,
		"uid":      types.StringType,
		"node":     types.StringType,
		"revision": types.Int64Type,
		"phase":    types.StringType,
		"ready":    types.BoolType,
		"pod_ip":   types.StringType,
	}
	replicaStatusObjectType = types.ObjectType{AttrTypes: replicaStatusAttrTypes}
)

// templateAttrTypes are the template block's; a function because the
// container's types are herd_pod's.
func templateAttrTypes() map[string]attr.Type {
	return map[string]attr.Type{
		"labels":                           types.MapType{ElemType: types.StringType},
		"restart_policy":                   types.StringType,
		"termination_grace_period_seconds": types.Int64Type,
		"image_pull_secret":                types.StringType,
		"restart_on_secret_change":         types.BoolType,
		"restart_on_config_change":         types.BoolType,
		"empty_dir":                        types.ListType{ElemType: emptyDirObjectType},
		"container":                        types.ListType{ElemType: types.ObjectType{AttrTypes: containerAttrTypes}},
	}
}

// identity of a herd_deployment.
func (m deploymentModel) identity() namespacedIdentityModel {
	return namespacedIdentityModel{Namespace: m.Namespace, Name: m.Name, Node: m.Node}
}

// deploymentConversion is a (possibly partly unknown) configuration or
// plan converted into a DeploymentSpec.
type deploymentConversion struct {
	spec *herdv1.DeploymentSpec
	// unknown lists the spec paths whose values are not known yet; errors
	// at or below them are not reported.
	unknown []spec.Path
	// errs are problems the conversion itself found (numbers that do not
	// fit the spec's int32); their paths are in unknown.
	errs spec.FieldErrors
	// selectorUnknown: some selector value is unknown, so the check that
	// the template's labels hold the selector cannot be made yet.
	selectorUnknown bool
}

func (c *deploymentConversion) markUnknown(p spec.Path) { c.unknown = append(c.unknown, p) }

// known reports whether every value was known.
func (c deploymentConversion) known() bool { return len(c.unknown) == 0 }

// int32Of converts an int64 attribute into the spec's int32; a value out
// of range is an error at p.
func (c *deploymentConversion) int32Of(v types.Int64, p spec.Path) int32 {
	if v.IsUnknown() {
		c.markUnknown(p)
		return 0
	}
	n := v.ValueInt64()
	if n < math.MinInt32 || n > math.MaxInt32 {
		c.markUnknown(p)
		c.errs = append(c.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf("out of range, got %d", n)})
		return 0
	}
	return int32(n)
}

// optionalInt32Of is int32Of for a field where null means "default".
func (c *deploymentConversion) optionalInt32Of(v types.Int64, p spec.Path) *int32 {
	if v.IsNull() {
		return nil
	}
	n := c.int32Of(v, p)
	return &n
}

// validate runs agentd's validation and keeps the errors about known values.
func (c deploymentConversion) validate() spec.FieldErrors {
	out := append(spec.FieldErrors(nil), c.errs...)
	labels := spec.Path{}.Field("template").Field("labels")
next:
	for _, fe := range spec.ValidateDeployment(c.spec) {
		for _, u := range c.unknown {
			if hasPrefix(fe.Path, u) {
				continue next
			}
		}
		if c.selectorUnknown && slices.Equal(fe.Path, labels) {
			continue
		}
		out = append(out, fe)
	}
	return out
}

// deploymentSpecFromModel converts the configuration or plan into a
// DeploymentSpec. withPolicy is podSpecFromModel's.
func deploymentSpecFromModel(ctx context.Context, m deploymentModel, withPolicy bool) (deploymentConversion, diag.Diagnostics) {
	var diags diag.Diagnostics
	c := deploymentConversion{spec: &herdv1.DeploymentSpec{}}
	s := c.spec
	root := spec.Path{}
	s.Namespace = stringWithUnknown(m.Namespace, root.Field("namespace"), c.markUnknown)
	s.Name = stringWithUnknown(m.Name, root.Field("name"), c.markUnknown)
	s.Replicas = c.int32Of(m.Replicas, root.Field("replicas"))
	s.Selector = mapWithUnknowns(m.Selector, root.Field("selector"), func(p spec.Path) {
		c.markUnknown(p)
		c.selectorUnknown = true
	})
	s.NodeSelector = mapWithUnknowns(m.NodeSelector, root.Field("node_selector"), c.markUnknown)
	diags.Append(c.templateFromModel(ctx, m.Template, m.Namespace, withPolicy)...)
	diags.Append(c.placementFromModel(ctx, m.Placement)...)
	diags.Append(c.strategyFromModel(ctx, m.Strategy)...)
	return c, diags
}

// templateFromModel converts the template with herd_pod's conversion, in
// the deployment's namespace (a volume id of another namespace is refused
// at its volume_mount); the spec keeps no namespace of its own.
func (c *deploymentConversion) templateFromModel(ctx context.Context, o types.Object, namespace types.String, withPolicy bool) diag.Diagnostics {
	tp := spec.Path{}.Field("template")
	if o.IsUnknown() {
		c.markUnknown(tp)
		c.spec.Template = &herdv1.PodSpec{}
		return nil
	}
	if o.IsNull() {
		return nil
	}
	var tm templateModel
	diags := o.As(ctx, &tm, basetypes.ObjectAsOptions{})
	if diags.HasError() {
		return diags
	}
	pm := tm.podModel()
	pm.Namespace = namespace
	pc, d := podSpecFromModel(ctx, pm, withPolicy)
	diags.Append(d...)
	pc.spec.Name = "" // the placeholder of an unknown name; herd names replicas
	pc.spec.Namespace = ""
	c.spec.Template = pc.spec
	for _, u := range pc.unknown {
		if len(u) == 1 && (u[0].Field == "name" || u[0].Field == "namespace") {
			continue // the deployment's own, marked at its root
		}
		c.markUnknown(append(slices.Clone(tp), u...))
	}
	for _, fe := range pc.errs {
		c.errs = append(c.errs, spec.FieldError{Path: append(slices.Clone(tp), fe.Path...), Msg: fe.Msg})
	}
	return diags
}

func (c *deploymentConversion) placementFromModel(ctx context.Context, o types.Object) diag.Diagnostics {
	pp := spec.Path{}.Field("placement")
	if o.IsUnknown() {
		c.markUnknown(pp)
		return nil
	}
	if o.IsNull() {
		return nil
	}
	var pm placementModel
	diags := o.As(ctx, &pm, basetypes.ObjectAsOptions{})
	if diags.HasError() {
		return diags
	}
	c.spec.Placement = &herdv1.Placement{
		Strategy:   stringWithUnknown(pm.Strategy, pp.Field("strategy"), c.markUnknown),
		MaxPerNode: c.int32Of(pm.MaxPerNode, pp.Field("max_per_node")),
	}
	return diags
}

func (c *deploymentConversion) strategyFromModel(ctx context.Context, o types.Object) diag.Diagnostics {
	sp := spec.Path{}.Field("strategy")
	if o.IsUnknown() {
		c.markUnknown(sp)
		return nil
	}
	if o.IsNull() {
		return nil
	}
	var sm strategyModel
	diags := o.As(ctx, &sm, basetypes.ObjectAsOptions{})
	if diags.HasError() {
		return diags
	}
	st := &herdv1.DeploymentStrategy{
		Type:                    stringWithUnknown(sm.Type, sp.Field("type"), c.markUnknown),
		MaxSurge:                c.optionalInt32Of(sm.MaxSurge, sp.Field("max_surge")),
		MaxUnavailable:          c.optionalInt32Of(sm.MaxUnavailable, sp.Field("max_unavailable")),
		MinReadySeconds:         c.int32Of(sm.MinReadySeconds, sp.Field("min_ready_seconds")),
		ProgressDeadlineSeconds: c.int32Of(sm.ProgressDeadlineSeconds, sp.Field("progress_deadline_seconds")),
	}
	switch {
	case sm.AutoRollback.IsUnknown():
		c.markUnknown(sp.Field("auto_rollback"))
	case !sm.AutoRollback.IsNull():
		st.AutoRollback = proto.Bool(sm.AutoRollback.ValueBool())
	}
	// Unknown surge or unavailability: either could make the pair valid.
	if sm.MaxSurge.IsUnknown() || sm.MaxUnavailable.IsUnknown() {
		c.markUnknown(sp.Field("max_surge"))
		c.markUnknown(sp.Field("max_unavailable"))
	}
	c.spec.Strategy = st
	return diags
}

// deploymentAttributePath maps a DeploymentSpec path to the attribute
// path: the template's spec paths are herd_pod's below "template" (the
// spec's "containers" list is the "container" block, and so on).
func deploymentAttributePath(p spec.Path) path.Path {
	if len(p) > 1 && p[0].Kind == spec.FieldStep && p[0].Field == "template" {
		return attributePath(p, func(i int, name string) string {
			if i == 0 {
				return name
			}
			return podFieldName(p[1:], i-1, name)
		})
	}
	return attributePath(p, func(_ int, name string) string { return name })
}

// podFieldName is podAttributePath's renaming of step i of pod spec path p.
func podFieldName(p spec.Path, i int, name string) string {
	if i == 0 {
		switch name {
		case "containers":
			return "container"
		case "empty_dirs":
			return "empty_dir"
		}
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
}

// addDeploymentFieldErrors reports spec field errors at their attribute paths.
func addDeploymentFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors) {
	summary := func(p spec.Path) string {
		if len(p) > 2 && p[0].Field == "template" && p[1].Field == "containers" {
			return "Invalid container specification"
		}
		return "Invalid deployment specification"
	}
	addSpecFieldErrors(diags, errs, summary, deploymentAttributePath,
		strings.NewReplacer("containers[", "container[", "secret_mounts[", "secret_mount[",
			"volume_mounts[", "volume_mount[", "config_files[", "config_file[", "empty_dirs[", "empty_dir["))
}

// setFromDeployment fills the state from what agentd reports: the spec
// (defaulted), using prior only to choose between null and empty values,
// and the status.
func (m *deploymentModel) setFromDeployment(ctx context.Context, d *herdv1.Deployment, prior deploymentModel) diag.Diagnostics {
	var diags diag.Diagnostics
	s := spec.DefaultDeployment(d.GetSpec())
	m.ID = types.StringValue(serviceID(s.GetNamespace(), s.GetName()))
	m.Namespace = types.StringValue(s.GetNamespace())
	m.Name = types.StringValue(s.GetName())
	m.Replicas = types.Int64Value(int64(s.GetReplicas()))
	m.Selector = stringMapValue(s.GetSelector())
	m.NodeSelector = mapFromRemote(s.GetNodeSelector(), prior.NodeSelector)

	var priorTemplate templateModel
	if !prior.Template.IsNull() && !prior.Template.IsUnknown() {
		diags.Append(prior.Template.As(ctx, &priorTemplate, basetypes.ObjectAsOptions{})...)
	} else {
		priorTemplate = templateModel{Labels: types.MapNull(types.StringType), ImagePullSecret: types.StringNull(),
			EmptyDirs: types.ListNull(emptyDirObjectType), Containers: types.ListNull(types.ObjectType{AttrTypes: containerAttrTypes})}
	}
	if diags.HasError() {
		return diags
	}
	pm := priorTemplate.podModel()
	next := pm
	diags.Append(next.setSpec(ctx, s.GetTemplate(), pm)...)
	if diags.HasError() {
		return diags
	}
	tmpl, d2 := types.ObjectValueFrom(ctx, templateAttrTypes(), templateFromPodModel(next))
	diags.Append(d2...)
	m.Template = tmpl

	pl := s.GetPlacement()
	m.Placement = types.ObjectValueMust(placementAttrTypes, map[string]attr.Value{
		"strategy":     types.StringValue(pl.GetStrategy()),
		"max_per_node": types.Int64Value(int64(pl.GetMaxPerNode())),
	})
	st := s.GetStrategy()
	m.Strategy = types.ObjectValueMust(strategyAttrTypes, map[string]attr.Value{
		"type":                      types.StringValue(st.GetType()),
		"max_surge":                 types.Int64Value(int64(st.GetMaxSurge())),
		"max_unavailable":           types.Int64Value(int64(st.GetMaxUnavailable())),
		"min_ready_seconds":         types.Int64Value(int64(st.GetMinReadySeconds())),
		"progress_deadline_seconds": types.Int64Value(int64(st.GetProgressDeadlineSeconds())),
		"auto_rollback":             types.BoolValue(st.GetAutoRollback()),
	})
	m.UID = types.StringValue(d.GetUid())
	m.setStatus(d)
	if m.PlannedNodes.IsNull() || m.PlannedNodes.IsUnknown() {
		m.PlannedNodes = emptyStringList()
	}
	return diags
}

// setStatus fills the computed status attributes.
func (m *deploymentModel) setStatus(d *herdv1.Deployment) {
	st := d.GetStatus()
	rev := st.GetCurrentRevision()
	if rev == 0 {
		rev = d.GetRevision() // not driven yet
	}
	m.Revision = types.Int64Value(rev)
	m.ReadyReplicas = types.Int64Value(int64(st.GetReadyReplicas()))
	m.UpdatedReplicas = types.Int64Value(int64(st.GetUpdatedReplicas()))
	m.AvailableReplicas = types.Int64Value(int64(st.GetAvailableReplicas()))
	m.Phase = types.StringValue(st.GetPhase())
	m.Message = types.StringValue(st.GetMessage())
	rs := slices.Clone(st.GetReplicaStatus())
	sort.Slice(rs, func(i, j int) bool { return rs[i].GetPod() < rs[j].GetPod() })
	elems := make([]attr.Value, 0, len(rs))
	for _, r := range rs {
		elems = append(elems, types.ObjectValueMust(replicaStatusAttrTypes, map[string]attr.Value{
			"pod":      types.StringValue(r.GetPod()),
			"uid":      types.StringValue(r.GetUid()),
			"node":     types.StringValue(r.GetNode()),
			"revision": types.Int64Value(r.GetRevision()),
			"phase":    types.StringValue(r.GetPhase()),
			"ready":    types.BoolValue(r.GetReady()),
			"pod_ip":   types.StringValue(r.GetPodIp()),
		}))
	}
	m.ReplicaStatus = types.ListValueMust(replicaStatusObjectType, elems)
}

// markStatusUnknown is the plan of a change: every status attribute is
// known only after apply.
func (m *deploymentModel) markStatusUnknown() {
	m.Revision = types.Int64Unknown()
	m.ReadyReplicas = types.Int64Unknown()
	m.UpdatedReplicas = types.Int64Unknown()
	m.AvailableReplicas = types.Int64Unknown()
	m.Phase = types.StringUnknown()
	m.Message = types.StringUnknown()
	m.ReplicaStatus = types.ListUnknown(replicaStatusObjectType)
}

// plannedNodes are the nodes of the replicas a rollout plan creates.
func plannedNodes(p *herdv1.RolloutPlan) types.List {
	elems := []attr.Value{}
	for _, r := range p.GetReplicas() {
		if r.GetAction() == "create" {
			elems = append(elems, types.StringValue(r.GetNode()))
		}
	}
	return types.ListValueMust(types.StringType, elems)
}
