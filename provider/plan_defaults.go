package provider

import (
	"context"
	"fmt"
	"reflect"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/defaults"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/herd-project/terraform-provider-herd/resources"
)

// A step into a value: an object attribute, then (list) every element of
// the list it holds.
type step struct {
	name string
	list bool
}

// defaultPath is where an attribute with a default sits, and the default.
type defaultPath struct {
	steps []step
	value tftypes.Value
}

// podDefaults returns herd_pod's Terraform type and its attributes with
// defaults. An attribute kind whose default it cannot read (or a default
// under a set or map) is an error: the plan shortcut is then off.
func podDefaults(ctx context.Context) (tftypes.Type, []defaultPath, error) {
	var resp resource.SchemaResponse
	resources.NewPodResource().Schema(ctx, resource.SchemaRequest{}, &resp)
	if resp.Diagnostics.HasError() {
		return nil, nil, fmt.Errorf("herd_pod schema: %v", resp.Diagnostics)
	}
	var out []defaultPath
	if err := walkDefaults(ctx, nil, resp.Schema.Attributes, resp.Schema.Blocks, &out); err != nil {
		return nil, nil, err
	}
	return resp.Schema.Type().TerraformType(ctx), out, nil
}

func walkDefaults(ctx context.Context, at []step, attrs map[string]schema.Attribute, blocks map[string]schema.Block, out *[]defaultPath) error {
	here := func(name string, list bool) []step {
		return append(append([]step(nil), at...), step{name, list})
	}
	for name, a := range attrs {
		var (
			v   tftypes.Value
			err error
			has bool
		)
		switch a := a.(type) {
		case schema.StringAttribute:
			if has = a.Default != nil; has {
				v, err = defaultValue(ctx, name, a.Default.DefaultString,
					func(r *defaults.StringResponse) attr.Value { return r.PlanValue })
			}
		case schema.Int64Attribute:
			if has = a.Default != nil; has {
				v, err = defaultValue(ctx, name, a.Default.DefaultInt64,
					func(r *defaults.Int64Response) attr.Value { return r.PlanValue })
			}
		case schema.BoolAttribute:
			if has = a.Default != nil; has {
				v, err = defaultValue(ctx, name, a.Default.DefaultBool,
					func(r *defaults.BoolResponse) attr.Value { return r.PlanValue })
			}
		case schema.SingleNestedAttribute:
			if hasDefault(a) {
				return fmt.Errorf("attribute %s: a default on a nested object", name)
			}
			if err := walkDefaults(ctx, here(name, false), a.Attributes, nil, out); err != nil {
				return err
			}
			continue
		case schema.ListNestedAttribute:
			if hasDefault(a) {
				return fmt.Errorf("attribute %s: a default on a nested list", name)
			}
			if err := walkDefaults(ctx, here(name, true), a.NestedObject.Attributes, nil, out); err != nil {
				return err
			}
			continue
		default:
			if hasDefault(a) || nestedDefaults(a) {
				return fmt.Errorf("attribute %s: a default of kind %T", name, a)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("attribute %s: default: %w", name, err)
		}
		if has {
			*out = append(*out, defaultPath{steps: here(name, false), value: v})
		}
	}
	for name, b := range blocks {
		switch b := b.(type) {
		case schema.ListNestedBlock:
			if err := walkDefaults(ctx, here(name, true), b.NestedObject.Attributes, b.NestedObject.Blocks, out); err != nil {
				return err
			}
		case schema.SingleNestedBlock:
			if err := walkDefaults(ctx, here(name, false), b.Attributes, b.Blocks, out); err != nil {
				return err
			}
		default:
			var found []defaultPath
			if err := walkBlockDefaults(ctx, b, &found); err != nil || len(found) > 0 {
				return fmt.Errorf("block %s (%T) holds defaults", name, b)
			}
		}
	}
	return nil
}

// defaultValue asks a default of any kind for its value. The request
// types differ by kind but all take the path alone.
func defaultValue[Req interface {
	defaults.StringRequest | defaults.Int64Request | defaults.BoolRequest
}, Resp any](ctx context.Context, name string, get func(context.Context, Req, *Resp), plan func(*Resp) attr.Value) (tftypes.Value, error) {
	var r Resp
	get(ctx, Req{Path: path.Root(name)}, &r)
	return plan(&r).ToTerraformValue(ctx)
}

// walkBlockDefaults looks for defaults in a block of another kind (a set).
func walkBlockDefaults(ctx context.Context, b schema.Block, out *[]defaultPath) error {
	if sb, ok := b.(schema.SetNestedBlock); ok {
		return walkDefaults(ctx, nil, sb.NestedObject.Attributes, sb.NestedObject.Blocks, out)
	}
	return nil
}

// hasDefault reports whether an attribute value has a non-nil Default
// field, whatever its kind.
func hasDefault(a any) bool {
	v := reflect.ValueOf(a)
	if v.Kind() != reflect.Struct {
		return false
	}
	f := v.FieldByName("Default")
	return f.IsValid() && (f.Kind() == reflect.Interface || f.Kind() == reflect.Pointer) && !f.IsNil()
}

// nestedDefaults reports whether a set or map of nested objects holds an
// attribute with a default.
func nestedDefaults(a schema.Attribute) bool {
	var attrs map[string]schema.Attribute
	switch a := a.(type) {
	case schema.SetNestedAttribute:
		attrs = a.NestedObject.Attributes
	case schema.MapNestedAttribute:
		attrs = a.NestedObject.Attributes
	default:
		return false
	}
	for _, n := range attrs {
		if hasDefault(n) || nestedDefaults(n) {
			return true
		}
	}
	return false
}

// defaultHolds reports whether the framework's defaults leave plan as it
// is at the attributes steps reach: wherever the configuration leaves the
// attribute unset, the plan already holds the default.
func defaultHolds(cfg, plan tftypes.Value, steps []step, def tftypes.Value) bool {
	if cfg.IsNull() && plan.IsNull() {
		return true
	}
	if !cfg.IsKnown() || cfg.IsNull() || plan.IsNull() {
		return false
	}
	var c, p map[string]tftypes.Value
	if cfg.As(&c) != nil || plan.As(&p) != nil {
		return false
	}
	s := steps[0]
	cv, pv := c[s.name], p[s.name]
	if len(steps) == 1 {
		if !cv.IsKnown() {
			return false
		}
		return !cv.IsNull() || pv.Equal(def)
	}
	if !s.list {
		return defaultHolds(cv, pv, steps[1:], def)
	}
	if cv.IsNull() && pv.IsNull() {
		return true
	}
	if !cv.IsKnown() || cv.IsNull() || pv.IsNull() {
		return false
	}
	var cl, pl []tftypes.Value
	if cv.As(&cl) != nil || pv.As(&pl) != nil || len(cl) != len(pl) {
		return false
	}
	for i := range cl {
		if !defaultHolds(cl[i], pl[i], steps[1:], def) {
			return false
		}
	}
	return true
}
