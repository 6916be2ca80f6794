// Package provider implements the herd Terraform provider: its
// configuration (mTLS material, dial timeout) and the client pool through
// which resources reach node daemons (agentd).
package provider

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
	"github.com/herd-project/terraform-provider-herd/resources"
)

// TypeName is the provider's type name: resources are herd_*.
const TypeName = "herd"

// Environment variables read when the matching attribute is not set.
const (
	EnvCACert     = "HERD_CA_CERT"
	EnvClientCert = "HERD_CLIENT_CERT"
	EnvClientKey  = "HERD_CLIENT_KEY"
)

var (
	_ provider.Provider                       = (*herdProvider)(nil)
	_ provider.ProviderWithEphemeralResources = (*herdProvider)(nil)
	// Pool is what resources and data sources receive as provider data.
	_ resources.Clients = (*Pool)(nil)
)

type herdProvider struct {
	version string
	// pool is the last configured client pool (the server's herd_pod
	// refresh shortcut reads pods through it).
	pool atomic.Pointer[Pool]
}

type providerModel struct {
	CACert      types.String `tfsdk:"ca_cert"`
	ClientCert  types.String `tfsdk:"client_cert"`
	ClientKey   types.String `tfsdk:"client_key"`
	DialTimeout types.String `tfsdk:"dial_timeout"`
}

// New returns a constructor of the provider, as providerserver wants it.
func New(version string) func() provider.Provider {
	quietUnreadLogsOnce()
	relaxGCOnce()
	return func() provider.Provider { return &herdProvider{version: version} }
}

func (p *herdProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = TypeName
	resp.Version = p.version
}

func (p *herdProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The herd provider runs containers on machines that run herd's node daemon, `agentd`. " +
			"Terraform is the control plane: `plan` compares what is declared with what each node reports and `apply` converges.\n\n" +
			"Nodes are reached with gRPC. A node at a TCP address (`host:port`) is reached over mutual TLS: the provider presents " +
			"`client_cert`/`client_key` and accepts only a node certificate issued by `ca_cert` **for the node's name**, so it always " +
			"knows which node it talks to. A node at a local socket address (`unix:///path/to/agentd.sock`) is reached without TLS.\n\n" +
			"Configuring the provider makes no network call: nodes are contacted only by the resources that use them, so nodes " +
			"created in the same apply work.",
		Attributes: map[string]schema.Attribute{
			"ca_cert": schema.StringAttribute{
				MarkdownDescription: "The herd CA certificate(s) that node certificates must chain to: PEM content, or the path of a PEM file. " +
					"Falls back to the `" + EnvCACert + "` environment variable. Required to reach nodes at TCP addresses.",
				Optional: true,
			},
			"client_cert": schema.StringAttribute{
				MarkdownDescription: "The client certificate presented to nodes (issued by the herd CA, e.g. with `herdctl certs`): " +
					"PEM content, or the path of a PEM file. Falls back to the `" + EnvClientCert + "` environment variable. " +
					"Required to reach nodes at TCP addresses.",
				Optional: true,
			},
			"client_key": schema.StringAttribute{
				MarkdownDescription: "The private key of `client_cert`: PEM content, or the path of a PEM file. " +
					"Falls back to the `" + EnvClientKey + "` environment variable. Required to reach nodes at TCP addresses. " +
					"Prefer a file path or the environment variable over inline content, which would end up in your configuration.",
				Optional:  true,
				Sensitive: true,
			},
			"dial_timeout": schema.StringAttribute{
				MarkdownDescription: "How long one attempt to connect to a node may take, as a Go duration (`\"10s\"`, `\"1m\"`). " +
					"Defaults to `\"10s\"`.",
				Optional:   true,
				Validators: []validator.String{durationValidator{}},
			},
		},
	}
}

func (p *herdProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}

	var files TLSFiles
	load := func(attr string, v types.String, env string) []byte {
		s := ""
		switch {
		case v.IsUnknown():
			// Known only during apply (e.g. written by another resource);
			// Terraform configures the provider again then.
			return nil
		case !v.IsNull():
			s = v.ValueString()
		default:
			s = os.Getenv(env)
		}
		if s == "" {
			return nil
		}
		b, err := pki.LoadPEMOrFile(s)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root(attr), "Cannot load "+attr,
				fmt.Sprintf("%s (from the %q attribute or the %s environment variable) must be PEM content or the path of a PEM file: %v", attr, attr, env, err))
			return nil
		}
		return b
	}
	files.CACert = load("ca_cert", cfg.CACert, EnvCACert)
	files.ClientCert = load("client_cert", cfg.ClientCert, EnvClientCert)
	files.ClientKey = load("client_key", cfg.ClientKey, EnvClientKey)
	if resp.Diagnostics.HasError() {
		return
	}
	if files.CACert != nil && files.ClientCert != nil && files.ClientKey != nil {
		// Parse once now (no network) so that bad material is reported at
		// configuration time rather than on the first node.
		if _, err := pki.ClientTLSConfig(files.CACert, files.ClientCert, files.ClientKey, "configuration-check"); err != nil {
			resp.Diagnostics.AddError("Invalid TLS configuration",
				fmt.Sprintf("ca_cert, client_cert and client_key (or %s, %s, %s) do not form a usable mTLS client configuration: %v",
					EnvCACert, EnvClientCert, EnvClientKey, err))
			return
		}
	}

	dial := DefaultDialTimeout
	if !cfg.DialTimeout.IsNull() && !cfg.DialTimeout.IsUnknown() {
		d, err := time.ParseDuration(cfg.DialTimeout.ValueString())
		if err != nil || d <= 0 {
			resp.Diagnostics.AddAttributeError(path.Root("dial_timeout"), "Invalid dial_timeout",
				fmt.Sprintf("dial_timeout must be a positive Go duration such as \"10s\", got %q", cfg.DialTimeout.ValueString()))
			return
		}
		dial = d
	}

	pool := NewPool(PoolConfig{
		TLS:         files,
		DialTimeout: dial,
		UserAgent:   "terraform-provider-herd/" + p.version,
	})
	p.pool.Store(pool)
	resp.ResourceData = pool
	resp.DataSourceData = pool
	resp.EphemeralResourceData = pool
}

func (p *herdProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		resources.NewNodeResource,
		resources.NewPodResource,
		resources.NewServiceResource,
		resources.NewDeploymentResource,
		resources.NewSecretResource,
		resources.NewNestedClusterResource,
		resources.NewVolumeResource,
	}
}

func (p *herdProvider) EphemeralResources(context.Context) []func() ephemeral.EphemeralResource {
	return []func() ephemeral.EphemeralResource{
		resources.NewSecretEphemeralResource,
		resources.NewNestedClusterKubeconfigEphemeralResource,
	}
}

func (p *herdProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		resources.NewNodeDataSource,
		resources.NewPodsDataSource,
	}
}

// durationValidator accepts a positive Go duration.
type durationValidator struct{}

func (durationValidator) Description(context.Context) string {
	return "a positive Go duration such as \"10s\""
}

func (v durationValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err != nil || d <= 0 {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration",
			fmt.Sprintf("must be a positive Go duration such as \"10s\" or \"1m30s\", got %q", req.ConfigValue.ValueString()))
	}
}
