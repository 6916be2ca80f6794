package resources

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// stringCheck adapts a func(string) error into a framework string validator.
// Null and unknown values are not checked.
type stringCheck struct {
	desc    string
	summary string
	check   func(string) error
}

func (v stringCheck) Description(context.Context) string         { return v.desc }
func (v stringCheck) MarkdownDescription(context.Context) string { return v.desc }

func (v stringCheck) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := v.check(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, v.summary, err.Error())
	}
}

// nameValidator checks an RFC 1123 label (node, pod and container names).
func nameValidator(what string) validator.String {
	return stringCheck{
		desc:    "must be a lowercase RFC 1123 label",
		summary: "Invalid " + what,
		check:   spec.ValidateName,
	}
}

// nodeIDValidator checks a herd_node id NAME@ADDRESS.
func nodeIDValidator() validator.String {
	return stringCheck{
		desc:    "must be a herd_node id: NAME@ADDRESS",
		summary: "Invalid node id",
		check: func(s string) error {
			_, _, err := nodeid.Parse(s)
			return err
		},
	}
}

// addressValidator checks a node address: host:port or unix:///path.
func addressValidator() validator.String {
	return stringCheck{
		desc:    `must be "host:port" or "unix:///path/to/agentd.sock"`,
		summary: "Invalid node address",
		check:   nodeid.ValidateAddress,
	}
}

// labelsValidator checks a label map with agentd's rules, reporting each bad
// entry at its key. Unknown values are not checked.
type labelsValidator struct{}

func (labelsValidator) Description(context.Context) string {
	return "label keys and values must follow the Kubernetes label syntax"
}

func (v labelsValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (labelsValidator) ValidateMap(_ context.Context, req validator.MapRequest, resp *validator.MapResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	labels := map[string]string{}
	for k, v := range req.ConfigValue.Elements() {
		s, ok := v.(types.String)
		if !ok || s.IsUnknown() || s.IsNull() {
			labels[k] = "" // a valid value: only the key is checked
			continue
		}
		labels[k] = s.ValueString()
	}
	for _, fe := range spec.ValidateLabels(nil, labels) {
		p := req.Path
		if len(fe.Path) > 0 && fe.Path[0].Kind == spec.KeyStep {
			p = p.AtMapKey(fe.Path[0].Key)
		}
		resp.Diagnostics.AddAttributeError(p, "Invalid label", fe.Msg)
	}
}
