package resources

import (
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Attribute names of herd_secret's data, used in messages and paths.
const (
	secretAttrData          = "data"
	secretAttrDataWO        = "data_wo"
	secretAttrDataWOVersion = "data_wo_version"
)

// secretConversion is a (possibly partly unknown) herd_secret
// configuration or plan converted into a SecretSpec.
type secretConversion struct {
	spec *herdv1.SecretSpec
	// dataAttr is the attribute the data came from: "data" or "data_wo".
	dataAttr string
	// unknown lists the spec paths whose values are not known yet; errors
	// at or below them are not reported.
	unknown []spec.Path
	// partialData: some data values are unknown, so the total size is not
	// known either.
	partialData bool
}

func (c *secretConversion) markUnknown(p spec.Path) { c.unknown = append(c.unknown, p) }

// secretDataSource picks the attribute that carries the data: data_wo when
// it is set (or not known yet), else data. ok is false when neither is set.
func secretDataSource(data, dataWO types.Map) (attr string, m types.Map, ok bool) {
	switch {
	case !dataWO.IsNull():
		return secretAttrDataWO, dataWO, true
	case !data.IsNull():
		return secretAttrData, data, true
	}
	return "", types.MapNull(types.StringType), false
}

// secretSpecFromValues converts the attributes of a herd_secret into a
// SecretSpec; data is the map picked by secretDataSource (dataAttr names
// it). Unknown values are recorded and skipped by validate.
func secretSpecFromValues(namespace, name, typ types.String, selector types.Map, immutable types.Bool,
	dataAttr string, data types.Map) secretConversion {
	c := secretConversion{spec: &herdv1.SecretSpec{}, dataAttr: dataAttr}
	s := c.spec
	s.Namespace = stringWithUnknown(namespace, spec.Path{}.Field("namespace"), c.markUnknown)
	if !namespace.IsUnknown() && s.Namespace == "" && namespace.IsNull() {
		s.Namespace = spec.DefaultNamespace
	}
	s.Name = stringWithUnknown(name, spec.Path{}.Field("name"), c.markUnknown)
	s.Type = stringWithUnknown(typ, spec.Path{}.Field("type"), c.markUnknown)
	if typ.IsNull() {
		s.Type = spec.SecretTypeOpaque
	}
	s.NodeSelector = mapWithUnknowns(selector, spec.Path{}.Field("node_selector"), c.markUnknown)
	if !immutable.IsUnknown() {
		s.Immutable = immutable.ValueBool()
	}
	dp := spec.Path{}.Field("data")
	switch {
	case data.IsUnknown():
		c.markUnknown(dp)
	case data.IsNull():
	default:
		s.Data = make(map[string][]byte, len(data.Elements()))
		for k, v := range data.Elements() {
			sv, _ := v.(types.String)
			if sv.IsUnknown() {
				// Key names are known and checked; a placeholder value
				// satisfies "not empty", and the total is not checked.
				c.partialData = true
				s.Data[k] = []byte("unknown")
				continue
			}
			s.Data[k] = []byte(sv.ValueString())
		}
	}
	return c
}

// validate runs agentd's secret validation and keeps the errors about
// known values. Messages never hold a value: spec's do not.
func (c secretConversion) validate() spec.FieldErrors {
	var all spec.FieldErrors
	s := c.spec
	if err := spec.ValidateName(s.GetNamespace()); err != nil {
		all = append(all, spec.FieldError{Path: spec.Path{}.Field("namespace"), Msg: err.Error()})
	}
	if err := spec.ValidateName(s.GetName()); err != nil {
		all = append(all, spec.FieldError{Path: spec.Path{}.Field("name"), Msg: err.Error()})
	}
	all = append(all, spec.ValidateLabels(spec.Path{}.Field("node_selector"), s.GetNodeSelector())...)
	dp := spec.Path{}.Field("data")
	var out spec.FieldErrors
next:
	for _, fe := range append(all, spec.ValidateSecret(s.GetType(), s.GetData())...) {
		for _, u := range c.unknown {
			if hasPrefix(fe.Path, u) {
				continue next
			}
		}
		// With values not known yet, the total size is not known.
		if c.partialData && len(fe.Path) == len(dp) && hasPrefix(fe.Path, dp) && strings.Contains(fe.Msg, "bytes, more than the limit") {
			continue
		}
		out = append(out, fe)
	}
	return out
}

// secretAttributePath maps a spec path (relative to a SecretSpec) to the
// herd_secret attribute path: "data" is dataAttr (data or data_wo).
func secretAttributePath(p spec.Path, dataAttr string) path.Path {
	return attributePath(p, func(i int, name string) string {
		if i == 0 && name == "data" && dataAttr != "" {
			return dataAttr
		}
		return name
	})
}

// addSecretFieldErrors reports spec field errors at their attribute paths.
func addSecretFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors, dataAttr string) {
	addSpecFieldErrors(diags, errs, fixedSummary("Invalid secret specification"),
		func(p spec.Path) path.Path { return secretAttributePath(p, dataAttr) }, nil)
}

// checkSecretDataChoice checks how the configuration provides the data:
// exactly one of data_wo (with data_wo_version) and data. A secret has at
// least one key, so neither is refused too.
func checkSecretDataChoice(data, dataWO types.Map, version types.Int64, diags *diag.Diagnostics) {
	switch {
	case !data.IsNull() && !dataWO.IsNull():
		diags.AddAttributeError(path.Root(secretAttrDataWO), "Conflicting secret data",
			"data_wo and data are both set: set one of them. data_wo (with data_wo_version) is write-only and never "+
				"stored in a plan or the state (Terraform or OpenTofu 1.11 and later); data is kept, marked sensitive, "+
				"in the state.")
	case data.IsNull() && dataWO.IsNull():
		diags.AddError("Missing secret data",
			"A herd_secret needs its data: set data_wo together with data_wo_version (write-only, never stored in a "+
				"plan or the state; Terraform or OpenTofu 1.11 and later) or data (kept, marked sensitive, in the "+
				"state). A secret has at least one key.")
	}
	switch {
	case !dataWO.IsNull() && version.IsNull():
		diags.AddAttributeError(path.Root(secretAttrDataWO), "Missing data_wo_version",
			"data_wo requires data_wo_version: Terraform never stores write-only values, so it cannot see when they "+
				"change. Set data_wo_version (any number, e.g. 1) and change it whenever data_wo changes: that is "+
				"what pushes the new values to the nodes.")
	case dataWO.IsNull() && !version.IsNull():
		diags.AddAttributeError(path.Root(secretAttrDataWOVersion), "data_wo_version without data_wo",
			"data_wo_version versions the write-only data_wo, which is not set: remove it, or move the values to "+
				"data_wo.")
	}
}

// secretDataKnown reports whether a data map and all its values are known.
func secretDataKnown(m types.Map) bool {
	if m.IsUnknown() {
		return false
	}
	for _, v := range m.Elements() {
		if v.IsUnknown() {
			return false
		}
	}
	return true
}

// sortedDataKeys lists a data map's keys in order.
func sortedDataKeys(m types.Map) []string {
	keys := make([]string, 0, len(m.Elements()))
	for k := range m.Elements() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// podRefs renders pods as "node/pod", in the order given (agentd's restart
// order).
func podRefs(refs []*herdv1.PodRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.GetNode()+"/"+r.GetPod())
	}
	return out
}

// secretID is a secret's id in the state: NAMESPACE/NAME.
func secretID(ns, name string) string { return ns + "/" + name }

// secretImportID is what `terraform import` takes: NAMESPACE/NAME@NODEID.
func secretImportID(ns, name, nodeID string) string { return secretID(ns, name) + "@" + nodeID }

// secretTypeFromRemote names opaque secrets "opaque", as the schema's
// default does, whatever agentd reports for them.
func secretTypeFromRemote(t string) string {
	if t == "" {
		return spec.SecretTypeOpaque
	}
	return t
}
