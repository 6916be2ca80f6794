package resources

import (
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
)

// precomputeTypes stores in every nested block and nested attribute of s
// the type the framework would build for it, as its CustomType (where none
// is set), so that the type is built once instead of on every look-up:
// the framework asks for the type of a path for each value it walks in
// every request, and without a CustomType it rebuilds the object type of
// each nested block on the way, nested blocks included. On a plan of
// hundreds of pods that was about a fifth of the provider's CPU time. The
// types are the framework's own, so values, state and schema are the
// same.
func precomputeTypes(s *schema.Schema) {
	s.Attributes = mapValues(s.Attributes, precomputeAttribute)
	s.Blocks = mapValues(s.Blocks, precomputeBlock)
}

func precomputeAttribute(a schema.Attribute) schema.Attribute {
	switch a := a.(type) {
	case schema.ListNestedAttribute:
		a.NestedObject = precomputeNestedAttributeObject(a.NestedObject)
		if a.CustomType == nil {
			a.CustomType = types.ListType{ElemType: a.NestedObject.Type()}
		}
		return a
	case schema.SetNestedAttribute:
		a.NestedObject = precomputeNestedAttributeObject(a.NestedObject)
		if a.CustomType == nil {
			a.CustomType = types.SetType{ElemType: a.NestedObject.Type()}
		}
		return a
	case schema.MapNestedAttribute:
		a.NestedObject = precomputeNestedAttributeObject(a.NestedObject)
		if a.CustomType == nil {
			a.CustomType = types.MapType{ElemType: a.NestedObject.Type()}
		}
		return a
	case schema.SingleNestedAttribute:
		a.Attributes = mapValues(a.Attributes, precomputeAttribute)
		if a.CustomType == nil {
			if t, ok := a.GetType().(basetypes.ObjectTypable); ok {
				a.CustomType = t
			}
		}
		return a
	}
	return a
}

func precomputeNestedAttributeObject(o schema.NestedAttributeObject) schema.NestedAttributeObject {
	o.Attributes = mapValues(o.Attributes, precomputeAttribute)
	if o.CustomType == nil {
		o.CustomType = o.Type()
	}
	return o
}

func precomputeBlock(b schema.Block) schema.Block {
	switch b := b.(type) {
	case schema.ListNestedBlock:
		b.NestedObject = precomputeNestedBlockObject(b.NestedObject)
		if b.CustomType == nil {
			b.CustomType = types.ListType{ElemType: b.NestedObject.Type()}
		}
		return b
	case schema.SetNestedBlock:
		b.NestedObject = precomputeNestedBlockObject(b.NestedObject)
		if b.CustomType == nil {
			b.CustomType = types.SetType{ElemType: b.NestedObject.Type()}
		}
		return b
	case schema.SingleNestedBlock:
		b.Attributes = mapValues(b.Attributes, precomputeAttribute)
		b.Blocks = mapValues(b.Blocks, precomputeBlock)
		if b.CustomType == nil {
			if t, ok := b.Type().(basetypes.ObjectTypable); ok {
				b.CustomType = t
			}
		}
		return b
	}
	return b
}

func precomputeNestedBlockObject(o schema.NestedBlockObject) schema.NestedBlockObject {
	o.Attributes = mapValues(o.Attributes, precomputeAttribute)
	o.Blocks = mapValues(o.Blocks, precomputeBlock)
	if o.CustomType == nil {
		o.CustomType = o.Type()
	}
	return o
}

// mapValues returns a copy of m with f applied to each value (schemas may
// share their maps, so they are not changed in place).
func mapValues[V any](m map[string]V, f func(V) V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = f(v)
	}
	return out
}
