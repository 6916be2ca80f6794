package resources

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Values of herd_cluster; the rules and defaults are internal/spec's.
const (
	nestedExposureLoadBalancer = spec.NestedExposureLoadBalancer
	nestedBindingBridge        = spec.NestedBindingBridge

	nestedDefaultCPU          = spec.DefaultNestedCPU
	nestedDefaultMemory       = spec.DefaultNestedMemory
	nestedDefaultStepTimeout  = spec.DefaultNestedStepTimeout * time.Second
	nestedMinStepTimeout      = spec.MinNestedStepTimeout * time.Second
	nestedMaxStepTimeout      = spec.MaxNestedStepTimeout * time.Second
	nestedMaxWorkers          = spec.MaxNestedWorkers
	nestedRoleControlPlane    = "control-plane"
	nestedRoleWorker          = "worker"
	nestedPhaseReady          = "Ready"
	nestedPhaseFailed         = "Failed"
	nestedDefaultControlPlane = 1
)

// nestedMachinesModel is a control_plane or workers block.
type nestedMachinesModel struct {
	Replicas       types.Int64  `tfsdk:"replicas"`
	CPU            types.String `tfsdk:"cpu"`
	Memory         types.String `tfsdk:"memory"`
	Image          types.String `tfsdk:"image"`
	DataVolumeSize types.String `tfsdk:"data_volume_size"`
}

var nestedMachinesAttrTypes = map[string]attr.Type{
	"replicas":         types.Int64Type,
	"cpu":              types.StringType,
	"memory":           types.StringType,
	"image":            types.StringType,
	"data_volume_size": types.StringType,
}

var nestedVMAttrTypes = map[string]attr.Type{
	"name":       types.StringType,
	"role":       types.StringType,
	"phase":      types.StringType,
	"ready":      types.BoolType,
	"ip":         types.StringType,
	"node_ready": types.BoolType,
}

var nestedVMObjectType = types.ObjectType{AttrTypes: nestedVMAttrTypes}

// nestedConversion is a (possibly partly unknown) configuration or plan
// converted into a NestedClusterSpec, as serviceConversion is for services.
type nestedConversion struct {
	spec    *herdv1.NestedClusterSpec
	unknown []spec.Path
	errs    spec.FieldErrors
}

func (c *nestedConversion) markUnknown(p spec.Path) { c.unknown = append(c.unknown, p) }

// validate runs the validation and keeps the errors about known values.
func (c nestedConversion) validate() spec.FieldErrors {
	out := append(spec.FieldErrors(nil), c.errs...)
next:
	for _, fe := range validateNestedClusterSpec(c.spec) {
		for _, u := range c.unknown {
			if hasPrefix(fe.Path, u) {
				continue next
			}
		}
		out = append(out, fe)
	}
	return out
}

// nestedSpecFromModel converts a configuration (fromConfig: unset values
// are null and take the schema's defaults) or a plan into a spec.
func nestedSpecFromModel(ctx context.Context, m nestedClusterModel) (nestedConversion, diag.Diagnostics) {
	var diags diag.Diagnostics
	c := nestedConversion{spec: &herdv1.NestedClusterSpec{}}
	s := c.spec
	root := spec.Path{}
	s.Name = stringWithUnknown(m.Name, root.Field("name"), c.markUnknown)
	s.KubernetesVersion = stringWithUnknown(m.KubernetesVersion, root.Field("kubernetes_version"), c.markUnknown)
	s.PodCidr = stringWithUnknown(m.PodCIDR, root.Field("pod_cidr"), c.markUnknown)
	s.ServiceCidr = stringWithUnknown(m.ServiceCIDR, root.Field("service_cidr"), c.markUnknown)
	s.EndpointExposure = defaultString(stringWithUnknown(m.EndpointExposure, root.Field("endpoint_exposure"), c.markUnknown),
		m.EndpointExposure, nestedExposureLoadBalancer)
	s.NetworkBinding = defaultString(stringWithUnknown(m.NetworkBinding, root.Field("network_binding"), c.markUnknown),
		m.NetworkBinding, nestedBindingBridge)
	s.DeletionProtection = boolWithDefault(m.DeletionProtection, true)
	s.KeepOnFailure = boolWithDefault(m.KeepOnFailure, false)
	if m.StepTimeout.IsUnknown() {
		c.markUnknown(root.Field("step_timeout"))
	} else if !m.StepTimeout.IsNull() {
		secs, err := parseStepTimeout(m.StepTimeout.ValueString())
		if err != nil {
			c.markUnknown(root.Field("step_timeout"))
			c.errs = append(c.errs, spec.FieldError{Path: root.Field("step_timeout"), Msg: err.Error()})
		}
		s.StepTimeoutSeconds = secs
	} else {
		s.StepTimeoutSeconds = int32(nestedDefaultStepTimeout / time.Second)
	}
	var d diag.Diagnostics
	s.ControlPlane, d = c.machinesFromObject(ctx, m.ControlPlane, root.Field("control_plane"), nestedDefaultControlPlane)
	diags.Append(d...)
	s.Workers, d = c.machinesFromObject(ctx, m.Workers, root.Field("workers"), -1)
	diags.Append(d...)
	return c, diags
}

func defaultString(s string, v types.String, def string) string {
	if v.IsNull() {
		return def
	}
	return s
}

func boolWithDefault(v types.Bool, def bool) bool {
	if v.IsNull() || v.IsUnknown() {
		return def
	}
	return v.ValueBool()
}

// machinesFromObject converts a control_plane or workers block. A missing
// block is reported by the schema (it is required); here it stays nil and
// unknown, so that it is not reported twice.
func (c *nestedConversion) machinesFromObject(ctx context.Context, o types.Object, p spec.Path, defReplicas int64) (*herdv1.NestedMachines, diag.Diagnostics) {
	if o.IsNull() || o.IsUnknown() {
		c.markUnknown(p)
		return nil, nil
	}
	var mm nestedMachinesModel
	diags := o.As(ctx, &mm, basetypes.ObjectAsOptions{})
	if diags.HasError() {
		c.markUnknown(p)
		return nil, diags
	}
	out := &herdv1.NestedMachines{
		Cpu:            defaultString(stringWithUnknown(mm.CPU, p.Field("cpu"), c.markUnknown), mm.CPU, nestedDefaultCPU),
		Memory:         defaultString(stringWithUnknown(mm.Memory, p.Field("memory"), c.markUnknown), mm.Memory, nestedDefaultMemory),
		Image:          stringWithUnknown(mm.Image, p.Field("image"), c.markUnknown),
		DataVolumeSize: stringWithUnknown(mm.DataVolumeSize, p.Field("data_volume_size"), c.markUnknown),
	}
	switch r := mm.Replicas; {
	case r.IsUnknown():
		c.markUnknown(p.Field("replicas"))
	case r.IsNull() && defReplicas >= 0:
		out.Replicas = int32(defReplicas)
	case r.IsNull():
		c.markUnknown(p.Field("replicas")) // required: the schema says so
	case r.ValueInt64() < math.MinInt32 || r.ValueInt64() > math.MaxInt32:
		c.markUnknown(p.Field("replicas"))
		c.errs = append(c.errs, spec.FieldError{Path: p.Field("replicas"),
			Msg: fmt.Sprintf("%s, got %d", replicasRule(p), r.ValueInt64())})
	case r.ValueInt64() == 0 && defReplicas > 0:
		// agentd reads 0 as "the default", 1: refuse it rather than apply
		// something else than the configuration says.
		c.markUnknown(p.Field("replicas"))
		c.errs = append(c.errs, spec.FieldError{Path: p.Field("replicas"), Msg: fmt.Sprintf("%s, got 0", replicasRule(p))})
	default:
		out.Replicas = int32(r.ValueInt64())
	}
	return out, diags
}

func replicasRule(p spec.Path) string {
	if len(p) > 0 && p[0].Field == "control_plane" {
		return "must be 1 or 3"
	}
	return fmt.Sprintf("must be between 0 and %d", nestedMaxWorkers)
}

// parseStepTimeout reads step_timeout: a Go duration of whole seconds,
// within agentd's bounds.
func parseStepTimeout(s string) (int32, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("must be a Go duration such as \"10m\" or \"90s\", got %q", s)
	case d < nestedMinStepTimeout || d > nestedMaxStepTimeout:
		return 0, fmt.Errorf("must be between %s and %s, got %q", durationText(nestedMinStepTimeout),
			durationText(nestedMaxStepTimeout), s)
	case d%time.Second != 0:
		return 0, fmt.Errorf("must be a whole number of seconds, got %q", s)
	}
	return int32(d / time.Second), nil
}

// durationText renders a duration without zero minutes and seconds: "2h",
// "10m", "90s".
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// validateNestedClusterSpec checks a NestedClusterSpec with agentd's own
// rules (internal/spec). The ranges pod_cidr and service_cidr may not
// overlap (herd's, the host cluster's) are known only to agentd, which
// checks them when the apply starts: none are passed here.
func validateNestedClusterSpec(s *herdv1.NestedClusterSpec) spec.FieldErrors {
	return spec.ValidateNestedCluster(s, nil)
}

// nestedAttributePath maps a spec path to herd_cluster's attribute path:
// the control_plane and workers blocks are objects, step_timeout_seconds
// is step_timeout; every other field has the same name.
func nestedAttributePath(p spec.Path) path.Path {
	return attributePath(p, func(_ int, name string) string {
		if name == "step_timeout_seconds" {
			return "step_timeout"
		}
		return name
	})
}

// addNestedFieldErrors reports spec errors at their attribute paths.
func addNestedFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors) {
	addSpecFieldErrors(diags, errs, fixedSummary("Invalid cluster specification"), nestedAttributePath, nil)
}

// machinesValue renders NestedMachines as a block value, using prior (the
// state's or plan's block) to keep equivalent spellings: "4096Mi" stays
// "4096Mi" when agentd reports "4Gi", and data_volume_size stays null.
func machinesValue(m *herdv1.NestedMachines, prior types.Object) types.Object {
	var pm nestedMachinesModel
	if !prior.IsNull() && !prior.IsUnknown() {
		_ = prior.As(context.Background(), &pm, basetypes.ObjectAsOptions{})
	}
	replicas := m.GetReplicas()
	cpu := quantityFromRemote(m.GetCpu(), pm.CPU, nestedDefaultCPU, spec.ParseCPU)
	memory := quantityFromRemote(m.GetMemory(), pm.Memory, nestedDefaultMemory, spec.ParseMemory)
	dv := types.StringNull()
	if v := m.GetDataVolumeSize(); v != "" {
		dv = quantityFromRemote(v, pm.DataVolumeSize, v, spec.ParseMemory)
	} else if !pm.DataVolumeSize.IsNull() && !pm.DataVolumeSize.IsUnknown() && pm.DataVolumeSize.ValueString() == "" {
		dv = types.StringValue("")
	}
	return types.ObjectValueMust(nestedMachinesAttrTypes, map[string]attr.Value{
		"replicas":         types.Int64Value(int64(replicas)),
		"cpu":              cpu,
		"memory":           memory,
		"image":            types.StringValue(m.GetImage()),
		"data_volume_size": dv,
	})
}

// quantityFromRemote keeps prior's spelling of an equal quantity; an empty
// remote value is def (agentd's default).
func quantityFromRemote(remote string, prior types.String, def string, parse func(string) (int64, error)) types.String {
	if remote == "" {
		remote = def
	}
	if !prior.IsNull() && !prior.IsUnknown() {
		a, errA := parse(remote)
		b, errB := parse(prior.ValueString())
		if errA == nil && errB == nil && a == b {
			return prior
		}
	}
	return types.StringValue(remote)
}

// cidrFromRemote keeps prior's spelling of an equal prefix.
func cidrFromRemote(remote string, prior types.String) types.String {
	if !prior.IsNull() && !prior.IsUnknown() {
		a, errA := netip.ParsePrefix(remote)
		b, errB := netip.ParsePrefix(prior.ValueString())
		if errA == nil && errB == nil && a == b {
			return prior
		}
	}
	return types.StringValue(remote)
}

// stepTimeoutFromRemote renders step_timeout_seconds, keeping prior's
// spelling of an equal duration ("600s" and "10m"); 0 means the default.
func stepTimeoutFromRemote(secs int32, prior types.String) types.String {
	d := time.Duration(secs) * time.Second
	if secs == 0 {
		d = nestedDefaultStepTimeout
	}
	if !prior.IsNull() && !prior.IsUnknown() {
		if p, err := time.ParseDuration(prior.ValueString()); err == nil && p == d {
			return prior
		}
	}
	return types.StringValue(shortDuration(d))
}

// vmsValue renders the VMs sorted by role (control plane first) and name.
func vmsValue(vms []*herdv1.NestedVM) types.List {
	sorted := append([]*herdv1.NestedVM(nil), vms...)
	rank := func(v *herdv1.NestedVM) int {
		if v.GetRole() == nestedRoleControlPlane {
			return 0
		}
		return 1
	}
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0; j-- {
			a, b := sorted[j-1], sorted[j]
			if rank(a) < rank(b) || (rank(a) == rank(b) && a.GetName() <= b.GetName()) {
				break
			}
			sorted[j-1], sorted[j] = b, a
		}
	}
	elems := make([]attr.Value, 0, len(sorted))
	for _, v := range sorted {
		elems = append(elems, types.ObjectValueMust(nestedVMAttrTypes, map[string]attr.Value{
			"name":       types.StringValue(v.GetName()),
			"role":       types.StringValue(v.GetRole()),
			"phase":      types.StringValue(v.GetPhase()),
			"ready":      types.BoolValue(v.GetReady()),
			"ip":         types.StringValue(v.GetIp()),
			"node_ready": types.BoolValue(v.GetNodeReady()),
		}))
	}
	return types.ListValueMust(nestedVMObjectType, elems)
}

// countVMs counts the VMs of a role.
func countVMs(vms []*herdv1.NestedVM, role string) int {
	n := 0
	for _, v := range vms {
		if v.GetRole() == role {
			n++
		}
	}
	return n
}

// nestedClusterID is NAME@NODEID, also the import id.
func nestedClusterID(name, nodeID string) string { return name + "@" + nodeID }

// parseNestedClusterID splits NAME@NODEID at the first '@' (cluster names
// are RFC 1123 labels, which hold none).
func parseNestedClusterID(id string) (name, nodeID string, err error) {
	name, nodeID, ok := strings.Cut(id, "@")
	if !ok || name == "" {
		return "", "", fmt.Errorf("import id %q: want NAME@NODEID", id)
	}
	if err := spec.ValidateName(name); err != nil {
		return "", "", fmt.Errorf("import id %q: name: %w", id, err)
	}
	if _, _, err := nodeid.Parse(nodeID); err != nil {
		return "", "", fmt.Errorf("import id %q: node id: %w", id, err)
	}
	return name, nodeID, nil
}
