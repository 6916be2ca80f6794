package provider_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	fwprovider "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	tfprovider "github.com/herd-project/terraform-provider-herd/provider"
	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
)

type schemaJSON struct {
	Config    json.RawMessage            `json:"config"`
	Resources map[string]json.RawMessage `json:"resources"`
	Functions map[string]json.RawMessage `json:"functions"`
}

// committedSchema is the schema embedded in the plugin (make pulumi-sdk).
func committedSchema(t *testing.T) schemaJSON {
	t.Helper()
	var s schemaJSON
	if err := json.Unmarshal(provider.Metadata().PackageSchema, &s); err != nil {
		t.Fatalf("committed schema.json: %v", err)
	}
	return s
}

// Every resource and data source the Terraform provider lists has a Pulumi
// token, in the bridge's mapping and in the committed schema: a resource
// added to provider.Resources appears in Pulumi without a hand edit (and a
// forgotten `make pulumi-sdk` fails here and in check-generated).
func TestEveryProviderResourceAndDataSourceHasAToken(t *testing.T) {
	ctx := context.Background()
	info := provider.Provider()
	schema := committedSchema(t)
	p := tfprovider.New("test")()

	rs := p.Resources(ctx)
	if len(rs) == 0 {
		t.Fatal("the provider lists no resources")
	}
	for _, f := range rs {
		var md resource.MetadataResponse
		f().Metadata(ctx, resource.MetadataRequest{ProviderTypeName: tfprovider.TypeName}, &md)
		ri, ok := info.Resources[md.TypeName]
		if !ok || ri.Tok == "" {
			t.Errorf("resource %s has no Pulumi token", md.TypeName)
			continue
		}
		if _, ok := schema.Resources[string(ri.Tok)]; !ok {
			t.Errorf("resource %s (%s) is missing from the committed schema: run make pulumi-sdk", md.TypeName, ri.Tok)
		}
		if !ri.DeleteBeforeReplace {
			t.Errorf("resource %s: replacement must delete first, as Terraform does", md.TypeName)
		}
		t.Logf("%s → %s", md.TypeName, ri.Tok)
	}
	if len(info.Resources) != len(rs) || len(schema.Resources) != len(rs) {
		t.Errorf("%d provider resources, %d mapped, %d in the schema", len(rs), len(info.Resources), len(schema.Resources))
	}

	ds := p.DataSources(ctx)
	for _, f := range ds {
		var md datasource.MetadataResponse
		f().Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: tfprovider.TypeName}, &md)
		di, ok := info.DataSources[md.TypeName]
		if !ok || di.Tok == "" {
			t.Errorf("data source %s has no Pulumi token", md.TypeName)
			continue
		}
		if _, ok := schema.Functions[string(di.Tok)]; !ok {
			t.Errorf("data source %s (%s) is missing from the committed schema: run make pulumi-sdk", md.TypeName, di.Tok)
		}
		t.Logf("%s → %s", md.TypeName, di.Tok)
	}
	if len(info.DataSources) != len(ds) {
		t.Errorf("%d provider data sources, %d mapped", len(ds), len(info.DataSources))
	}
}

// Ephemeral resources cannot be represented by the bridge: they are not in
// the mapping, and the bridged provider still starts (no crash on them).
func TestEphemeralResourcesAreLeftOutWithoutACrash(t *testing.T) {
	ctx := context.Background()
	p, ok := tfprovider.New("test")().(fwprovider.ProviderWithEphemeralResources)
	if !ok || len(p.EphemeralResources(ctx)) == 0 {
		t.Skip("the provider has no ephemeral resources")
	}
	if _, err := pftfbridge.NewProvider(ctx, provider.Provider(), provider.Metadata()); err != nil {
		t.Fatalf("bridged provider with ephemeral resources in the Terraform provider: %v", err)
	}
	schema := committedSchema(t)
	if len(schema.Resources) != len(p.(fwprovider.Provider).Resources(ctx)) {
		t.Errorf("schema has %d resources: ephemeral resources must not appear", len(schema.Resources))
	}
}

// Sensitive attributes are Pulumi secrets: herd_secret's data and data_wo,
// and the provider's client_key.
func TestSensitiveAttributesAreSecrets(t *testing.T) {
	schema := committedSchema(t)
	var secret struct {
		InputProperties map[string]struct {
			Secret bool `json:"secret"`
		} `json:"inputProperties"`
	}
	if err := json.Unmarshal(schema.Resources["herd:index/secret:Secret"], &secret); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"data", "dataWo"} {
		if !secret.InputProperties[name].Secret {
			t.Errorf("herd:index/secret:Secret.%s is not a secret", name)
		}
	}
	var cfg struct {
		Variables map[string]struct {
			Secret bool `json:"secret"`
		} `json:"variables"`
	}
	if err := json.Unmarshal(schema.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Variables["clientKey"].Secret {
		t.Error("config herd:clientKey is not a secret")
	}
}
