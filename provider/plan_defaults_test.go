package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

func TestPodDefaultsFound(t *testing.T) {
	_, defs, err := podDefaults(context.Background())
	if err != nil {
		t.Fatalf("podDefaults: %v", err)
	}
	want := map[string]tftypes.Value{
		"restart_policy":              tftypes.NewValue(tftypes.String, "Always"),
		"container.*.port.*.protocol": tftypes.NewValue(tftypes.String, "TCP"),
	}
	got := map[string]tftypes.Value{}
	for _, d := range defs {
		key := ""
		for i, s := range d.steps {
			if i > 0 {
				key += "."
			}
			key += s.name
			if s.list {
				key += ".*"
			}
		}
		got[key] = d.value
	}
	for k, v := range want {
		if !got[k].Equal(v) {
			t.Errorf("default at %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestDefaultHolds(t *testing.T) {
	port := tftypes.Object{AttributeTypes: map[string]tftypes.Type{"protocol": tftypes.String}}
	typ := tftypes.Object{AttributeTypes: map[string]tftypes.Type{"port": tftypes.List{ElementType: port}}}
	str := func(s *string) tftypes.Value {
		if s == nil {
			return tftypes.NewValue(tftypes.String, nil)
		}
		return tftypes.NewValue(tftypes.String, *s)
	}
	obj := func(protocols ...*string) tftypes.Value {
		var ps []tftypes.Value
		for _, p := range protocols {
			ps = append(ps, tftypes.NewValue(port, map[string]tftypes.Value{"protocol": str(p)}))
		}
		return tftypes.NewValue(typ, map[string]tftypes.Value{"port": tftypes.NewValue(tftypes.List{ElementType: port}, ps)})
	}
	s := func(v string) *string { return &v }
	steps := []step{{"port", true}, {"protocol", false}}
	def := tftypes.NewValue(tftypes.String, "TCP")
	unknownCfg := tftypes.NewValue(typ, map[string]tftypes.Value{
		"port": tftypes.NewValue(tftypes.List{ElementType: port}, tftypes.UnknownValue),
	})
	for _, tc := range []struct {
		name      string
		cfg, plan tftypes.Value
		want      bool
	}{
		{"set in config", obj(s("UDP")), obj(s("UDP")), true},
		{"unset, state holds the default", obj(nil), obj(s("TCP")), true},
		{"unset, state holds another value", obj(nil), obj(s("UDP")), false},
		{"one of two unset with another value", obj(s("TCP"), nil), obj(s("TCP"), s("UDP")), false},
		{"list lengths differ", obj(nil), obj(s("TCP"), s("TCP")), false},
		{"unknown in config", unknownCfg, obj(s("TCP")), false},
		{"no ports", obj(), obj(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultHolds(tc.cfg, tc.plan, steps, def); got != tc.want {
				t.Errorf("defaultHolds = %v, want %v", got, tc.want)
			}
		})
	}
}
