package resources

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// The template is herd_pod's schema without replacements: every
// attribute and block of herd_pod's container is there, none forces a
// replacement, and no description says it replaces the pod.
func TestDeploymentTemplateSchemaRollsOut(t *testing.T) {
	ctx := context.Background()
	var dep, pod resource.SchemaResponse
	(&deploymentResource{}).Schema(ctx, resource.SchemaRequest{}, &dep)
	(&podResource{}).Schema(ctx, resource.SchemaRequest{}, &pod)
	if dep.Diagnostics.HasError() {
		t.Fatalf("schema: %v", dep.Diagnostics)
	}
	tmpl, ok := dep.Schema.Blocks["template"].(schema.SingleNestedBlock)
	if !ok {
		t.Fatalf("template is a %T", dep.Schema.Blocks["template"])
	}
	depC := tmpl.Blocks["container"].(schema.ListNestedBlock).NestedObject
	podC := pod.Schema.Blocks["container"].(schema.ListNestedBlock).NestedObject
	for name := range podC.Attributes {
		if _, ok := depC.Attributes[name]; !ok {
			t.Errorf("template container lacks herd_pod's attribute %q", name)
		}
	}
	for name := range podC.Blocks {
		if _, ok := depC.Blocks[name]; !ok {
			t.Errorf("template container lacks herd_pod's block %q", name)
		}
	}
	for _, name := range templatePodAttributes {
		if _, ok := tmpl.Attributes[name]; !ok {
			t.Errorf("template lacks herd_pod's attribute %q", name)
		}
	}
	for _, name := range templatePodBlocks {
		if _, ok := tmpl.Blocks[name]; !ok {
			t.Errorf("template lacks herd_pod's block %q", name)
		}
	}
	// The template's types are what the schema says (the state is read
	// through templateAttrTypes).
	if got, want := tmpl.Type(), (types.ObjectType{AttrTypes: templateAttrTypes()}); !got.Equal(want) {
		t.Errorf("template schema type %v, templateAttrTypes %v", got, want)
	}
	walkBlock(t, "template", tmpl)
}

func walkBlock(t *testing.T, at string, b schema.Block) {
	t.Helper()
	checkDescription(t, at, b.GetMarkdownDescription())
	var (
		attrs  map[string]schema.Attribute
		blocks map[string]schema.Block
	)
	switch b := b.(type) {
	case schema.ListNestedBlock:
		checkModifiers(t, at, b.PlanModifiers)
		attrs, blocks = b.NestedObject.Attributes, b.NestedObject.Blocks
	case schema.SingleNestedBlock:
		checkModifiers(t, at, b.PlanModifiers)
		attrs, blocks = b.Attributes, b.Blocks
	}
	for name, a := range attrs {
		checkDescription(t, at+"."+name, a.GetMarkdownDescription())
		switch a := a.(type) {
		case schema.StringAttribute:
			checkModifiers(t, at+"."+name, a.PlanModifiers)
		case schema.Int64Attribute:
			checkModifiers(t, at+"."+name, a.PlanModifiers)
		case schema.BoolAttribute:
			checkModifiers(t, at+"."+name, a.PlanModifiers)
		case schema.ListAttribute:
			checkModifiers(t, at+"."+name, a.PlanModifiers)
		case schema.MapAttribute:
			checkModifiers(t, at+"."+name, a.PlanModifiers)
		}
	}
	for name, sub := range blocks {
		walkBlock(t, at+"."+name, sub)
	}
}

func checkDescription(t *testing.T, at, d string) {
	t.Helper()
	if strings.Contains(d, "replaces the pod") {
		t.Errorf("%s: description says it replaces the pod: %q", at, d)
	}
}

func checkModifiers[M interface{ Description(context.Context) string }](t *testing.T, at string, mods []M) {
	t.Helper()
	for _, m := range mods {
		if requiresReplace(m.Description(context.Background())) {
			t.Errorf("%s: forces a replacement", at)
		}
	}
}

func TestDeploymentAttributePath(t *testing.T) {
	tp := spec.Path{}.Field("template")
	tests := []struct {
		in   spec.Path
		want string
	}{
		{spec.Path{}.Field("replicas"), "replicas"},
		{spec.Path{}.Field("strategy").Field("max_surge"), "strategy.max_surge"},
		{spec.Path{}.Field("selector").Key("app"), `selector["app"]`},
		{tp, "template"},
		{tp.Field("labels").Key("herd.io/x"), `template.labels["herd.io/x"]`},
		{tp.Field("containers").Index(0).Field("image"), "template.container[0].image"},
		{tp.Field("containers").Index(1).Field("ports").Index(2).Field("name"), "template.container[1].port[2].name"},
		{tp.Field("containers").Index(0).Field("secret_mounts").Index(0).Field("path"), "template.container[0].secret_mount[0].path"},
		{tp.Field("containers").Index(0).Field("readiness_probe").Field("http_get").Field("port"), "template.container[0].readiness_probe.http_get.port"},
		{tp.Field("containers").Index(0).Field("volume_mounts").Index(1).Field("volume"), "template.container[0].volume_mount[1].volume"},
		{tp.Field("containers").Index(2).Field("config_files").Index(0).Field("mode"), "template.container[2].config_file[0].mode"},
		{tp.Field("empty_dirs").Index(0).Field("size_limit"), "template.empty_dir[0].size_limit"},
	}
	for _, tc := range tests {
		if got := deploymentAttributePath(tc.in).String(); got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestPlannedNodes(t *testing.T) {
	p := &herdv1.RolloutPlan{Replicas: []*herdv1.PlannedReplica{
		{Node: "n1", Action: "create"}, {Pod: "web-1-aaaaa", Node: "n2", Action: "delete"},
		{Pod: "web-1-bbbbb", Node: "n3", Action: "keep"}, {Node: "n1", Action: "create"},
	}}
	got := stringList(plannedNodes(p))
	if strings.Join(got, ",") != "n1,n1" {
		t.Errorf("planned nodes %v, want [n1 n1]", got)
	}
	if got := plannedNodes(nil); got.IsNull() || len(got.Elements()) != 0 {
		t.Errorf("no plan: %v, want an empty list", got)
	}
}
