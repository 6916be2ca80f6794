package resources

import (
	"context"
	"fmt"
	"math"
	"sort"
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

// serviceModel is the state of herd_service.
type serviceModel struct {
	ID              types.String   `tfsdk:"id"`
	Node            types.String   `tfsdk:"node"`
	Namespace       types.String   `tfsdk:"namespace"`
	Name            types.String   `tfsdk:"name"`
	Type            types.String   `tfsdk:"type"`
	Selector        types.Map      `tfsdk:"selector"`
	SessionAffinity types.String   `tfsdk:"session_affinity"`
	Ports           types.List     `tfsdk:"port"`
	Timeouts        timeouts.Value `tfsdk:"timeouts"`
	ClusterIP       types.String   `tfsdk:"cluster_ip"`
	DNSName         types.String   `tfsdk:"dns_name"`
	UID             types.String   `tfsdk:"uid"`
	Version         types.Int64    `tfsdk:"version"`
	Endpoints       types.List     `tfsdk:"endpoints"`
	Synced          types.Bool     `tfsdk:"synced"`
}

// servicePortModel is one port block.
type servicePortModel struct {
	Name           types.String `tfsdk:"name"`
	Protocol       types.String `tfsdk:"protocol"`
	Port           types.Int64  `tfsdk:"port"`
	TargetPort     types.Int64  `tfsdk:"target_port"`
	TargetPortName types.String `tfsdk:"target_port_name"`
	NodePort       types.Int64  `tfsdk:"node_port"`
}

var servicePortAttrTypes = map[string]attr.Type{
	"name":             types.StringType,
	"protocol":         types.StringType,
	"port":             types.Int64Type,
	"target_port":      types.Int64Type,
	"target_port_name": types.StringType,
	"node_port":        types.Int64Type,
}

var servicePortObjectType = types.ObjectType{AttrTypes: servicePortAttrTypes}

var endpointAttrTypes = map[string]attr.Type{
	"node":  types.StringType,
	"pod":   types.StringType,
	"ip":    types.StringType,
	"ready": types.BoolType,
}

var endpointObjectType = types.ObjectType{AttrTypes: endpointAttrTypes}

// serviceConversion is a (possibly partly unknown) configuration converted
// into a ServiceSpec.
type serviceConversion struct {
	spec *herdv1.ServiceSpec
	// unknown lists the spec paths whose values are not known yet; errors
	// at or below them are not reported.
	unknown []spec.Path
	// errs are problems the conversion itself found (numbers that do not
	// fit, zeros that mean "unset" to agentd); their paths are in unknown.
	errs spec.FieldErrors
	// fromConfig: the model is the configuration, where an explicit 0 is
	// refused; in a plan, 0 is a computed value (no node port).
	fromConfig bool
}

func (c *serviceConversion) markUnknown(p spec.Path) { c.unknown = append(c.unknown, p) }

// validate runs agentd's validation and keeps the errors about known values.
func (c serviceConversion) validate() spec.FieldErrors {
	out := append(spec.FieldErrors(nil), c.errs...)
next:
	for _, fe := range spec.ValidateService(c.spec) {
		for _, u := range c.unknown {
			if hasPrefix(fe.Path, u) {
				continue next
			}
		}
		out = append(out, fe)
	}
	return out
}

// serviceSpecFromModel converts the configuration or plan into a
// ServiceSpec. Unknown values get stand-ins that cannot cause errors
// elsewhere: an unknown type is NodePort (which allows node ports and
// affinity), an unknown protocol or port name a placeholder of its own.
func serviceSpecFromModel(ctx context.Context, m serviceModel, fromConfig bool) (serviceConversion, diag.Diagnostics) {
	var diags diag.Diagnostics
	c := serviceConversion{spec: &herdv1.ServiceSpec{}, fromConfig: fromConfig}
	s := c.spec
	s.Namespace = stringWithUnknown(m.Namespace, spec.Path{}.Field("namespace"), c.markUnknown)
	s.Name = stringWithUnknown(m.Name, spec.Path{}.Field("name"), c.markUnknown)
	s.Selector = mapWithUnknowns(m.Selector, spec.Path{}.Field("selector"), c.markUnknown)
	s.SessionAffinity = stringWithUnknown(m.SessionAffinity, spec.Path{}.Field("session_affinity"), c.markUnknown)
	if m.Type.IsUnknown() {
		c.markUnknown(spec.Path{}.Field("type"))
		s.Type = spec.ServiceTypeNodePort
	} else {
		s.Type = m.Type.ValueString()
	}
	pp := spec.Path{}.Field("ports")
	if m.Ports.IsUnknown() {
		c.markUnknown(pp)
		return c, diags
	}
	for i, v := range m.Ports.Elements() {
		obj, ok := v.(types.Object)
		if !ok || obj.IsUnknown() || obj.IsNull() {
			c.markUnknown(pp.Index(i))
			s.Ports = append(s.Ports, nil)
			continue
		}
		var pm servicePortModel
		diags.Append(obj.As(ctx, &pm, basetypes.ObjectAsOptions{})...)
		if diags.HasError() {
			return c, diags
		}
		s.Ports = append(s.Ports, c.portFromModel(pm, pp.Index(i), i))
	}
	return c, diags
}

func (c *serviceConversion) portFromModel(pm servicePortModel, p spec.Path, i int) *herdv1.ServicePort {
	sp := &herdv1.ServicePort{}
	if pm.Name.IsUnknown() {
		c.markUnknown(p.Field("name"))
		sp.Name = fmt.Sprintf("x-unknown-name-%d", i) // too long to be a real port name
	} else {
		sp.Name = pm.Name.ValueString()
	}
	if pm.Protocol.IsUnknown() {
		c.markUnknown(p.Field("protocol"))
		sp.Protocol = fmt.Sprintf("unknown-%d", i)
	} else {
		sp.Protocol = pm.Protocol.ValueString()
	}
	sp.TargetPortName = stringWithUnknown(pm.TargetPortName, p.Field("target_port_name"), c.markUnknown)
	sp.Port = c.int32Field(pm.Port, p.Field("port"), "must be between 1 and 65535, got %d", "")
	sp.TargetPort = c.int32Field(pm.TargetPort, p.Field("target_port"), "must be between 1 and 65535, got %d",
		"0 is not a port: omit target_port to send traffic to the same port number on the pods (or set target_port_name)")
	sp.NodePort = c.int32Field(pm.NodePort, p.Field("node_port"),
		fmt.Sprintf("must be between %d and %d, got %%d", spec.NodePortMin, spec.NodePortMax),
		"0 is not a node port: omit node_port to have agentd allocate one")
	return sp
}

// int32Field converts a number for the spec. Unknown values are skipped;
// numbers beyond int32 are reported with rangeMsg; an explicit 0, which
// agentd reads as "unset", is refused with zeroMsg when one is given (the
// state could never keep a 0 that agentd replaces).
func (c *serviceConversion) int32Field(v types.Int64, p spec.Path, rangeMsg, zeroMsg string) int32 {
	if v.IsNull() {
		return 0
	}
	if v.IsUnknown() {
		c.markUnknown(p)
		return 0
	}
	n := v.ValueInt64()
	switch {
	case n < math.MinInt32 || n > math.MaxInt32:
		c.markUnknown(p)
		c.errs = append(c.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf(rangeMsg, n)})
		return 0
	case n == 0 && c.fromConfig && zeroMsg != "":
		c.markUnknown(p)
		c.errs = append(c.errs, spec.FieldError{Path: p, Msg: zeroMsg})
		return 0
	}
	return int32(n)
}

// serviceAttributePath maps a spec path (relative to a ServiceSpec) to the
// herd_service attribute path: the spec's "ports" list is the "port"
// block; every other field has the same name in both.
func serviceAttributePath(p spec.Path) path.Path {
	return attributePath(p, func(i int, name string) string {
		if i == 0 && name == "ports" {
			return "port"
		}
		return name
	})
}

// addServiceFieldErrors reports spec field errors at their attribute paths.
func addServiceFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors) {
	// Messages may name other ports the way agentd spells them.
	addSpecFieldErrors(diags, errs, fixedSummary("Invalid service specification"), serviceAttributePath,
		strings.NewReplacer("ports[", "port["))
}

// setFromService fills the state from what agentd reports, its spec
// defaulted, using prior (state or plan) only to choose between null and
// empty values.
func (m *serviceModel) setFromService(ctx context.Context, svc *herdv1.Service, prior serviceModel) diag.Diagnostics {
	var diags diag.Diagnostics
	if svc.GetSpec() != nil {
		d := spec.DefaultService(svc.GetSpec())
		m.Namespace = types.StringValue(d.GetNamespace())
		m.Name = types.StringValue(d.GetName())
		m.Type = types.StringValue(d.GetType())
		m.Selector = stringMapValue(d.GetSelector())
		m.SessionAffinity = types.StringValue(d.GetSessionAffinity())
		m.Ports, diags = servicePortsFromRemote(ctx, d.GetPorts(), prior.Ports)
	}
	st := svc.GetStatus()
	m.UID = types.StringValue(svc.GetUid())
	m.ClusterIP = types.StringValue(st.GetClusterIp())
	m.DNSName = types.StringValue(st.GetDnsName())
	m.Version = types.Int64Value(int64(st.GetVersion()))
	m.Synced = types.BoolValue(st.GetSynced())
	m.Endpoints = endpointsValue(st.GetEndpoints())
	return diags
}

// servicePortsFromRemote renders defaulted ports as port blocks, with a
// null (not empty) name or target_port_name unless prior held "".
func servicePortsFromRemote(ctx context.Context, remote []*herdv1.ServicePort, prior types.List) (types.List, diag.Diagnostics) {
	var diags diag.Diagnostics
	var priorPorts []servicePortModel
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.ElementsAs(ctx, &priorPorts, false)...)
		if diags.HasError() {
			return types.ListNull(servicePortObjectType), diags
		}
	}
	elems := make([]attr.Value, 0, len(remote))
	for i, p := range remote {
		pm := servicePortModel{Name: types.StringNull(), TargetPortName: types.StringNull()}
		if i < len(priorPorts) {
			pm = priorPorts[i]
		}
		target := types.Int64Value(int64(p.GetTargetPort()))
		if p.GetTargetPortName() != "" {
			target = types.Int64Null()
		}
		elems = append(elems, types.ObjectValueMust(servicePortAttrTypes, map[string]attr.Value{
			"name":             stringFromRemote(p.GetName(), pm.Name),
			"protocol":         types.StringValue(p.GetProtocol()),
			"port":             types.Int64Value(int64(p.GetPort())),
			"target_port":      target,
			"target_port_name": stringFromRemote(p.GetTargetPortName(), pm.TargetPortName),
			"node_port":        types.Int64Value(int64(p.GetNodePort())),
		}))
	}
	return types.ListValueMust(servicePortObjectType, elems), diags
}

// endpointsValue renders endpoints in a stable order, whatever order the
// node lists them in, so that a refresh does not reorder them.
func endpointsValue(eps []*herdv1.ServiceEndpoint) types.List {
	sorted := append([]*herdv1.ServiceEndpoint(nil), eps...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.GetNode() != b.GetNode() {
			return a.GetNode() < b.GetNode()
		}
		if a.GetPod() != b.GetPod() {
			return a.GetPod() < b.GetPod()
		}
		return a.GetIp() < b.GetIp()
	})
	elems := make([]attr.Value, 0, len(sorted))
	for _, e := range sorted {
		elems = append(elems, types.ObjectValueMust(endpointAttrTypes, map[string]attr.Value{
			"node":  types.StringValue(e.GetNode()),
			"pod":   types.StringValue(e.GetPod()),
			"ip":    types.StringValue(e.GetIp()),
			"ready": types.BoolValue(e.GetReady()),
		}))
	}
	return types.ListValueMust(endpointObjectType, elems)
}
