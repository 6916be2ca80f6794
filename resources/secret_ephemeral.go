package resources

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var (
	_ ephemeral.EphemeralResource              = (*secretEphemeralResource)(nil)
	_ ephemeral.EphemeralResourceWithConfigure = (*secretEphemeralResource)(nil)
)

// NewSecretEphemeralResource returns the herd_secret ephemeral resource.
func NewSecretEphemeralResource() ephemeral.EphemeralResource { return &secretEphemeralResource{} }

type secretEphemeralResource struct {
	ephemeralClients
}

// secretEphemeralModel is the herd_secret ephemeral resource's result.
type secretEphemeralModel struct {
	Node       types.String `tfsdk:"node"`
	Namespace  types.String `tfsdk:"namespace"`
	Name       types.String `tfsdk:"name"`
	Type       types.String `tfsdk:"type"`
	Data       types.Map    `tfsdk:"data"`
	DataBase64 types.Map    `tfsdk:"data_base64"`
	Keys       types.List   `tfsdk:"keys"`
	Version    types.Int64  `tfsdk:"version"`
	Checksum   types.String `tfsdk:"checksum"`
}

func (e *secretEphemeralResource) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_secret"
}

func (e *secretEphemeralResource) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a secret's values (Terraform or OpenTofu 1.10 and later), to feed them to " +
			"write-only attributes (such as another `herd_secret`'s `data_wo`) or to a provider's configuration. " +
			"Ephemeral resources are never stored in a plan or in the state.\n\n" +
			"Only a member that holds the secret can reveal it: `node` must match the secret's `node_selector`. " +
			"The call requires an admin client certificate.",
		Attributes: map[string]schema.Attribute{
			"node": schema.StringAttribute{
				MarkdownDescription: "The member to read the secret from: the `id` of a `herd_node` (`NAME@ADDRESS`) " +
					"that holds the secret.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The secret's namespace; default `default`.",
				Optional:            true,
				Computed:            true,
				Validators:          []validator.String{nameValidator("namespace")},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The secret's name.",
				Required:            true,
				Validators:          []validator.String{nameValidator("secret name")},
			},
			"type": schema.StringAttribute{
				MarkdownDescription: "The secret's type: `opaque`, `tls`, `basic-auth` or `registry`.",
				Computed:            true,
			},
			"data": schema.MapAttribute{
				MarkdownDescription: "The secret's values, as text. A value that is not valid UTF-8 is left out here: " +
					"read it from `data_base64`.",
				ElementType: types.StringType,
				Computed:    true,
				Sensitive:   true,
			},
			"data_base64": schema.MapAttribute{
				MarkdownDescription: "The secret's values, base64-encoded (every key, binary values included).",
				ElementType:         types.StringType,
				Computed:            true,
				Sensitive:           true,
			},
			"keys": schema.ListAttribute{
				MarkdownDescription: "The secret's key names, sorted.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "The version of the values read.",
				Computed:            true,
			},
			"checksum": schema.StringAttribute{
				MarkdownDescription: "The keyed checksum of the values read (see `herd_secret`'s `checksum`).",
				Computed:            true,
			},
		},
	}
}

func (e *secretEphemeralResource) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	m, ok := configuredModel[secretEphemeralModel](ctx, e.clients, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	ns := m.Namespace.ValueString()
	if m.Namespace.IsNull() || ns == "" {
		ns = spec.DefaultNamespace
	}
	name, nodeID := m.Name.ValueString(), m.Node.ValueString()
	sc, err := e.clients.SecretClient(nodeID)
	if err != nil {
		addRPCError(&resp.Diagnostics, "connect to the node", nodeID, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, e.clients.DialTimeout()+30*time.Second)
	defer cancel()
	what := fmt.Sprintf("reveal secret %s/%s", ns, name)
	got, err := sc.RevealSecret(cctx, &herdv1.RevealSecretRequest{Namespace: ns, Name: name})
	if status.Code(err) == codes.FailedPrecondition {
		resp.Diagnostics.AddError("Node does not hold the secret",
			fmt.Sprintf("%s does not hold secret %s/%s (%s). Only members its node_selector matches hold a secret: "+
				"read it through one of them (herd_secret's holders lists them).", nodeDescription(nodeID), ns, name,
				status.Convert(err).Message()))
		return
	}
	if err != nil {
		addRPCError(&resp.Diagnostics, what, nodeID, err)
		return
	}
	m.Namespace = types.StringValue(ns)
	m.Type = types.StringValue(secretTypeFromRemote(got.GetSecret().GetMeta().GetType()))
	m.Version = types.Int64Value(int64(got.GetSecret().GetStatus().GetVersion()))
	m.Checksum = types.StringValue(got.GetSecret().GetStatus().GetChecksum())
	m.Data, m.DataBase64, m.Keys = revealedData(got.GetData())
	resp.Diagnostics.Append(resp.Result.Set(ctx, &m)...)
}

// revealedData renders revealed values as text (valid UTF-8 only), as
// base64 (all) and the sorted key names.
func revealedData(data map[string][]byte) (text, b64 types.Map, keys types.List) {
	t := make(map[string]attr.Value, len(data))
	b := make(map[string]attr.Value, len(data))
	names := make([]string, 0, len(data))
	for k, v := range data {
		names = append(names, k)
		b[k] = types.StringValue(base64.StdEncoding.EncodeToString(v))
		if utf8.Valid(v) {
			t[k] = types.StringValue(string(v))
		}
	}
	sort.Strings(names)
	return types.MapValueMust(types.StringType, t), types.MapValueMust(types.StringType, b), stringListValue(names)
}
