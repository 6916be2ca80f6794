package resources

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

var (
	_ ephemeral.EphemeralResource              = (*nestedKubeconfigEphemeral)(nil)
	_ ephemeral.EphemeralResourceWithConfigure = (*nestedKubeconfigEphemeral)(nil)
)

// NewNestedClusterKubeconfigEphemeralResource returns the
// herd_cluster_kubeconfig ephemeral resource.
func NewNestedClusterKubeconfigEphemeralResource() ephemeral.EphemeralResource {
	return &nestedKubeconfigEphemeral{}
}

type nestedKubeconfigEphemeral struct {
	ephemeralClients
}

type nestedKubeconfigModel struct {
	Node          types.String `tfsdk:"node"`
	Name          types.String `tfsdk:"name"`
	Kubeconfig    types.String `tfsdk:"kubeconfig"`
	Endpoint      types.String `tfsdk:"endpoint"`
	CACertificate types.String `tfsdk:"ca_certificate"`
}

func (e *nestedKubeconfigEphemeral) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster_kubeconfig"
}

func (e *nestedKubeconfigEphemeral) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a nested cluster's admin kubeconfig (Terraform or OpenTofu 1.10 and later) " +
			"without storing it: ephemeral resources are never written to a plan or to the state. Use it to " +
			"configure the `kubernetes` or `helm` provider for a `herd_cluster`, instead of the cluster's " +
			"`kubeconfig` attribute (which is stored in the state). The call requires an admin client certificate.",
		Attributes: map[string]schema.Attribute{
			"node": schema.StringAttribute{
				MarkdownDescription: "The agentd that owns the cluster: the `id` of a `herd_node` (`NAME@ADDRESS`), " +
					"as in the `herd_cluster`'s `node`.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The cluster's name.",
				Required:            true,
				Validators:          []validator.String{nameValidator("cluster name")},
			},
			"kubeconfig": schema.StringAttribute{
				MarkdownDescription: "The admin kubeconfig (YAML): the endpoint, the CA and a client certificate and " +
					"key (`client-certificate-data`, `client-key-data`, base64 as in every kubeconfig; " +
					"`yamldecode` reads them).",
				Computed:  true,
				Sensitive: true,
			},
			"endpoint": schema.StringAttribute{
				MarkdownDescription: "`https://HOST:PORT` of the nested API server.",
				Computed:            true,
			},
			"ca_certificate": schema.StringAttribute{
				MarkdownDescription: "PEM of the nested cluster's CA.",
				Computed:            true,
			},
		},
	}
}

func (e *nestedKubeconfigEphemeral) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	m, ok := configuredModel[nestedKubeconfigModel](ctx, e.clients, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	nodeID, name := m.Node.ValueString(), m.Name.ValueString()
	nc, err := e.clients.NestedClusterClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, e.clients.DialTimeout()+30*time.Second)
	defer cancel()
	cl, err := nc.GetNestedCluster(cctx, &herdv1.GetNestedClusterRequest{Name: name})
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read cluster %q", name), nodeID, err)
		return
	}
	kc, err := nc.GetNestedClusterKubeconfig(cctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: name})
	if err != nil {
		addRPCError(&resp.Diagnostics, fmt.Sprintf("read the kubeconfig of cluster %q", name), nodeID, err)
		return
	}
	m.Kubeconfig = types.StringValue(string(kc.GetKubeconfig()))
	m.Endpoint = types.StringValue(cl.GetStatus().GetEndpoint())
	m.CACertificate = types.StringValue(cl.GetStatus().GetCaCertificate())
	resp.Diagnostics.Append(resp.Result.Set(ctx, &m)...)
}
