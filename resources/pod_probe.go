package resources

import (
	"context"
	"fmt"
	"math"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// probeModel is a readiness_probe, liveness_probe or startup_probe block.
type probeModel struct {
	HTTPGet             types.Object `tfsdk:"http_get"`
	TCPSocket           types.Object `tfsdk:"tcp_socket"`
	Exec                types.Object `tfsdk:"exec"`
	InitialDelaySeconds types.Int64  `tfsdk:"initial_delay_seconds"`
	PeriodSeconds       types.Int64  `tfsdk:"period_seconds"`
	TimeoutSeconds      types.Int64  `tfsdk:"timeout_seconds"`
	SuccessThreshold    types.Int64  `tfsdk:"success_threshold"`
	FailureThreshold    types.Int64  `tfsdk:"failure_threshold"`
}

type httpGetModel struct {
	Path     types.String `tfsdk:"path"`
	Port     types.Int64  `tfsdk:"port"`
	PortName types.String `tfsdk:"port_name"`
}

type tcpSocketModel struct {
	Port     types.Int64  `tfsdk:"port"`
	PortName types.String `tfsdk:"port_name"`
}

type execModel struct {
	Command types.List `tfsdk:"command"`
}

var (
	httpGetAttrTypes   = map[string]attr.Type{"path": types.StringType, "port": types.Int64Type, "port_name": types.StringType}
	tcpSocketAttrTypes = map[string]attr.Type{"port": types.Int64Type, "port_name": types.StringType}
	execAttrTypes      = map[string]attr.Type{"command": types.ListType{ElemType: types.StringType}}
	probeAttrTypes     = map[string]attr.Type{
		"http_get":              types.ObjectType{AttrTypes: httpGetAttrTypes},
		"tcp_socket":            types.ObjectType{AttrTypes: tcpSocketAttrTypes},
		"exec":                  types.ObjectType{AttrTypes: execAttrTypes},
		"initial_delay_seconds": types.Int64Type,
		"period_seconds":        types.Int64Type,
		"timeout_seconds":       types.Int64Type,
		"success_threshold":     types.Int64Type,
		"failure_threshold":     types.Int64Type,
	}
	probeObjectType = types.ObjectType{AttrTypes: probeAttrTypes}
)

// probeKinds are the probe blocks of a container, named as in the spec.
var probeKinds = []string{spec.ReadinessProbe, spec.LivenessProbe, spec.StartupProbe}

var probeBlockDescriptions = map[string]string{
	spec.ReadinessProbe: "Checks whether the container is ready (`container_status.ready`; the pod's `ready` once every " +
		"container is). A container without one is ready as soon as it runs (and its startup probe, if any, passed). " +
		"When any container has a readiness probe, `apply` waits until the pod is ready.",
	spec.LivenessProbe: "Checks whether the container is alive: after `failure_threshold` consecutive failures agentd kills " +
		"it (SIGTERM, SIGKILL after `termination_grace_period_seconds`) and it restarts as after a crash, with back-off.",
	spec.StartupProbe: "Holds the readiness and liveness probes back until it succeeds once; after `failure_threshold` " +
		"consecutive failures agentd kills the container and it restarts as after a crash.",
}

// containerBlocks are the nested blocks of a container: port and the
// three probes. Their values are checked by agentd's validation
// (ValidateConfig), not by framework validators.
func containerBlocks(port schema.Block) map[string]schema.Block {
	out := map[string]schema.Block{"port": port}
	for _, kind := range probeKinds {
		out[kind] = probeBlock(probeBlockDescriptions[kind], kind != spec.ReadinessProbe)
	}
	return out
}

func probeBlock(desc string, successMustBeOne bool) schema.Block {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	replaceInt := []planmodifier.Int64{int64planmodifier.RequiresReplace()}
	replaceObject := []planmodifier.Object{objectplanmodifier.RequiresReplace()}
	port := schema.Int64Attribute{
		MarkdownDescription: "The port number, 1 to 65535; or set `port_name`.",
		Optional:            true, PlanModifiers: replaceInt,
	}
	portName := schema.StringAttribute{
		MarkdownDescription: "The `name` of one of the container's `port` blocks (a TCP port), instead of `port`.",
		Optional:            true, PlanModifiers: replaceString,
	}
	timing := func(what string) schema.Int64Attribute {
		return schema.Int64Attribute{MarkdownDescription: what, Optional: true, PlanModifiers: replaceInt}
	}
	success := "Consecutive successes after a failure for the probe to count as passing; at least 1, default 1."
	if successMustBeOne {
		success = "Must be 1 (the default) for this probe."
	}
	return schema.SingleNestedBlock{
		MarkdownDescription: desc + " Exactly one of `http_get`, `tcp_socket` and `exec`. Without a pod network, " +
			"`http_get` and `tcp_socket` connect to 127.0.0.1 inside the container's network namespace; with one, to " +
			"the pod's IP. Changing the probe replaces the pod.",
		PlanModifiers: replaceObject,
		Attributes: map[string]schema.Attribute{
			"initial_delay_seconds": timing("Seconds after the container started before the first probe; default 0."),
			"period_seconds":        timing("Seconds between probes; at least 1, default 10."),
			"timeout_seconds":       timing("Seconds after which a probe counts as failed; at least 1, default 1."),
			"success_threshold":     timing(success),
			"failure_threshold":     timing("Consecutive failures for the probe to count as failed; at least 1, default 3."),
		},
		Blocks: map[string]schema.Block{
			"http_get": schema.SingleNestedBlock{
				MarkdownDescription: "An HTTP GET that succeeds with a status from 200 to 399.",
				PlanModifiers:       replaceObject,
				Attributes: map[string]schema.Attribute{
					"path": schema.StringAttribute{
						MarkdownDescription: "The path to request, starting with `/`; default `/`.",
						Optional:            true, PlanModifiers: replaceString,
					},
					"port": port, "port_name": portName,
				},
			},
			"tcp_socket": schema.SingleNestedBlock{
				MarkdownDescription: "Succeeds when a TCP connection is accepted.",
				PlanModifiers:       replaceObject,
				Attributes:          map[string]schema.Attribute{"port": port, "port_name": portName},
			},
			"exec": schema.SingleNestedBlock{
				MarkdownDescription: "Runs a command in the container (with its environment and user); exit code 0 is success.",
				PlanModifiers:       replaceObject,
				Attributes: map[string]schema.Attribute{
					"command": schema.ListAttribute{
						MarkdownDescription: "The command and its arguments (not run through a shell); not empty.",
						ElementType:         types.StringType,
						Optional:            true,
						PlanModifiers:       []planmodifier.List{listplanmodifier.RequiresReplace()},
					},
				},
			},
		},
	}
}

// nullProbes are the probe attributes of a container without probes.
func nullProbes() (r, l, s types.Object) {
	return types.ObjectNull(probeAttrTypes), types.ObjectNull(probeAttrTypes), types.ObjectNull(probeAttrTypes)
}

// probesFromModel sets the probes of c from container model cm.
func (out *specConversion) probesFromModel(ctx context.Context, cm containerModel, c *herdv1.ContainerSpec, p spec.Path) diag.Diagnostics {
	var diags diag.Diagnostics
	for kind, obj := range map[string]types.Object{
		spec.ReadinessProbe: cm.ReadinessProbe, spec.LivenessProbe: cm.LivenessProbe, spec.StartupProbe: cm.StartupProbe,
	} {
		pr, d := out.probeFromModel(ctx, obj, p.Field(kind))
		diags.Append(d...)
		switch kind {
		case spec.ReadinessProbe:
			c.ReadinessProbe = pr
		case spec.LivenessProbe:
			c.LivenessProbe = pr
		case spec.StartupProbe:
			c.StartupProbe = pr
		}
	}
	return diags
}

func (out *specConversion) probeFromModel(ctx context.Context, obj types.Object, p spec.Path) (*herdv1.Probe, diag.Diagnostics) {
	var diags diag.Diagnostics
	if obj.IsUnknown() {
		out.unknown = append(out.unknown, p)
		return nil, diags
	}
	if obj.IsNull() {
		return nil, diags
	}
	var pm probeModel
	diags.Append(obj.As(ctx, &pm, basetypes.ObjectAsOptions{})...)
	if diags.HasError() {
		return nil, diags
	}
	pr := &herdv1.Probe{
		InitialDelaySeconds: out.optionalInt32(pm.InitialDelaySeconds, p.Field("initial_delay_seconds")),
		PeriodSeconds:       out.optionalInt32(pm.PeriodSeconds, p.Field("period_seconds")),
		TimeoutSeconds:      out.optionalInt32(pm.TimeoutSeconds, p.Field("timeout_seconds")),
		SuccessThreshold:    out.optionalInt32(pm.SuccessThreshold, p.Field("success_threshold")),
		FailureThreshold:    out.optionalInt32(pm.FailureThreshold, p.Field("failure_threshold")),
	}
	diags.Append(out.handlersFromModel(ctx, pm, pr, p)...)
	return pr, diags
}

// handlersFromModel sets the probe's handlers. An unknown handler block
// still counts as set (with its errors dropped), so that "exactly one"
// is judged right.
func (out *specConversion) handlersFromModel(ctx context.Context, pm probeModel, pr *herdv1.Probe, p spec.Path) diag.Diagnostics {
	var diags diag.Diagnostics
	unknown := func(u spec.Path) { out.unknown = append(out.unknown, u) }
	if set, known := objectState(pm.HTTPGet, p.Field("http_get"), unknown); set {
		pr.HttpGet = &herdv1.HTTPGetAction{}
		if known {
			var m httpGetModel
			diags.Append(pm.HTTPGet.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			hp := p.Field("http_get")
			pr.HttpGet.Path = stringWithUnknown(m.Path, hp.Field("path"), unknown)
			pr.HttpGet.Port = out.int32Value(m.Port, hp.Field("port"))
			pr.HttpGet.PortName = stringWithUnknown(m.PortName, hp.Field("port_name"), unknown)
		}
	}
	if set, known := objectState(pm.TCPSocket, p.Field("tcp_socket"), unknown); set {
		pr.TcpSocket = &herdv1.TCPSocketAction{}
		if known {
			var m tcpSocketModel
			diags.Append(pm.TCPSocket.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			tp := p.Field("tcp_socket")
			pr.TcpSocket.Port = out.int32Value(m.Port, tp.Field("port"))
			pr.TcpSocket.PortName = stringWithUnknown(m.PortName, tp.Field("port_name"), unknown)
		}
	}
	if set, known := objectState(pm.Exec, p.Field("exec"), unknown); set {
		pr.Exec = &herdv1.ExecAction{}
		if known {
			var m execModel
			diags.Append(pm.Exec.As(ctx, &m, basetypes.ObjectAsOptions{})...)
			pr.Exec.Command = listWithUnknowns(m.Command, p.Field("exec").Field("command"), unknown)
		}
	}
	return diags
}

// objectState reports whether a nested block is present and whether its
// content is known (an unknown one is recorded at p).
func objectState(o types.Object, p spec.Path, unknown func(spec.Path)) (set, known bool) {
	switch {
	case o.IsNull():
		return false, false
	case o.IsUnknown():
		unknown(p)
		return true, false
	}
	return true, true
}

// int32Value converts a port: unknown or out of int32's range is recorded
// (the latter as an error), null is 0.
func (out *specConversion) int32Value(v types.Int64, p spec.Path) int32 {
	n := v.ValueInt64()
	switch {
	case v.IsUnknown():
		out.unknown = append(out.unknown, p)
		return 0
	case n < math.MinInt32 || n > math.MaxInt32:
		out.unknown = append(out.unknown, p)
		out.errs = append(out.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf("must be between 1 and 65535, got %d", n)})
		return 0
	}
	return int32(n)
}

// optionalInt32 converts a probe timing: null is unset (the default).
func (out *specConversion) optionalInt32(v types.Int64, p spec.Path) *int32 {
	if v.IsNull() {
		return nil
	}
	n := v.ValueInt64()
	switch {
	case v.IsUnknown():
		out.unknown = append(out.unknown, p)
		return nil
	case n < math.MinInt32 || n > math.MaxInt32:
		out.unknown = append(out.unknown, p)
		out.errs = append(out.errs, spec.FieldError{Path: p, Msg: fmt.Sprintf("%d is out of range", n)})
		return nil
	}
	n32 := int32(n)
	return &n32
}

// probeFromRemote renders a probe as its block, using prior only to keep
// "" and [] where the configuration had them.
func probeFromRemote(ctx context.Context, pr *herdv1.Probe, prior types.Object) (types.Object, diag.Diagnostics) {
	var diags diag.Diagnostics
	if pr == nil {
		return types.ObjectNull(probeAttrTypes), diags
	}
	var pm probeModel
	if !prior.IsNull() && !prior.IsUnknown() {
		diags.Append(prior.As(ctx, &pm, basetypes.ObjectAsOptions{})...)
	}
	out := probeModel{
		HTTPGet:             types.ObjectNull(httpGetAttrTypes),
		TCPSocket:           types.ObjectNull(tcpSocketAttrTypes),
		Exec:                types.ObjectNull(execAttrTypes),
		InitialDelaySeconds: optionalInt64(pr.InitialDelaySeconds),
		PeriodSeconds:       optionalInt64(pr.PeriodSeconds),
		TimeoutSeconds:      optionalInt64(pr.TimeoutSeconds),
		SuccessThreshold:    optionalInt64(pr.SuccessThreshold),
		FailureThreshold:    optionalInt64(pr.FailureThreshold),
	}
	if h := pr.GetHttpGet(); h != nil {
		var ph httpGetModel
		diags.Append(objectAs(ctx, pm.HTTPGet, &ph)...)
		out.HTTPGet = types.ObjectValueMust(httpGetAttrTypes, map[string]attr.Value{
			"path":      stringFromRemote(h.GetPath(), ph.Path),
			"port":      portFromRemote(h.GetPort()),
			"port_name": stringFromRemote(h.GetPortName(), ph.PortName),
		})
	}
	if t := pr.GetTcpSocket(); t != nil {
		var pt tcpSocketModel
		diags.Append(objectAs(ctx, pm.TCPSocket, &pt)...)
		out.TCPSocket = types.ObjectValueMust(tcpSocketAttrTypes, map[string]attr.Value{
			"port":      portFromRemote(t.GetPort()),
			"port_name": stringFromRemote(t.GetPortName(), pt.PortName),
		})
	}
	if e := pr.GetExec(); e != nil {
		pe := execModel{Command: types.ListNull(types.StringType)}
		diags.Append(objectAs(ctx, pm.Exec, &pe)...)
		out.Exec = types.ObjectValueMust(execAttrTypes, map[string]attr.Value{
			"command": listFromRemote(e.GetCommand(), pe.Command),
		})
	}
	obj, d := types.ObjectValueFrom(ctx, probeAttrTypes, out)
	diags.Append(d...)
	return obj, diags
}

// objectAs decodes a known object into target; null or unknown leaves
// target as it is.
func objectAs(ctx context.Context, o types.Object, target any) diag.Diagnostics {
	if o.IsNull() || o.IsUnknown() {
		return nil
	}
	return o.As(ctx, target, basetypes.ObjectAsOptions{})
}

func optionalInt64(v *int32) types.Int64 {
	if v == nil {
		return types.Int64Null()
	}
	return types.Int64Value(int64(*v))
}

func portFromRemote(port int32) types.Int64 {
	if port == 0 {
		return types.Int64Null()
	}
	return types.Int64Value(int64(port))
}

// hasReadinessProbe reports whether any container of s has a readiness
// probe (apply then waits for the pod to be ready).
func hasReadinessProbe(s *herdv1.PodSpec) bool {
	for _, c := range s.GetContainers() {
		if c.GetReadinessProbe() != nil {
			return true
		}
	}
	return false
}
