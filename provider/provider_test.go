package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
)

// Every attribute and block is documented: docs are generated from the
// schema.
func TestSchemaIsDocumented(t *testing.T) {
	srv := providerserver.NewProtocol6(New("test")())()
	resp, err := srv.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		t.Errorf("schema diagnostic: %s: %s", d.Summary, d.Detail)
	}
	check := func(kind, name string, s *tfprotov6.Schema) {
		if s.Block.Description == "" {
			t.Errorf("%s %s has no description", kind, name)
		}
		var walkAttrs func(prefix string, attrs []*tfprotov6.SchemaAttribute)
		walkAttrs = func(prefix string, attrs []*tfprotov6.SchemaAttribute) {
			for _, a := range attrs {
				if a.Description == "" {
					t.Errorf("%s %s: attribute %s%s has no description", kind, name, prefix, a.Name)
				}
				if a.NestedType != nil {
					walkAttrs(prefix+a.Name+".", a.NestedType.Attributes)
				}
			}
		}
		var walk func(prefix string, b *tfprotov6.SchemaBlock)
		walk = func(prefix string, b *tfprotov6.SchemaBlock) {
			walkAttrs(prefix, b.Attributes)
			for _, nb := range b.BlockTypes {
				if nb.Block.Description == "" {
					t.Errorf("%s %s: block %s%s has no description", kind, name, prefix, nb.TypeName)
				}
				walk(prefix+nb.TypeName+".", nb.Block)
			}
		}
		walk("", s.Block)
	}
	check("provider", "herd", resp.Provider)
	for _, want := range []string{"herd_node", "herd_pod", "herd_service", "herd_secret", "herd_cluster"} {
		if _, ok := resp.ResourceSchemas[want]; !ok {
			t.Errorf("resource %s is not registered", want)
		}
	}
	for _, want := range []string{"herd_node", "herd_pods"} {
		if _, ok := resp.DataSourceSchemas[want]; !ok {
			t.Errorf("data source %s is not registered", want)
		}
	}
	for _, want := range []string{"herd_secret", "herd_cluster_kubeconfig"} {
		if _, ok := resp.EphemeralResourceSchemas[want]; !ok {
			t.Errorf("ephemeral resource %s is not registered", want)
		}
	}
	for n, s := range resp.EphemeralResourceSchemas {
		check("ephemeral resource", n, s)
	}
	for n, s := range resp.ResourceSchemas {
		check("resource", n, s)
	}
	for n, s := range resp.DataSourceSchemas {
		check("data source", n, s)
	}
}
