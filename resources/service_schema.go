package resources

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func (r *serviceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_service"
}

func (r *serviceResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceString := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A service: a stable virtual IP (`cluster_ip`) and DNS name in front of the pods its `selector` " +
			"matches, on every node of a herd cluster.\n\n" +
			"Services are cluster-scoped: they are written through any member (`node`), replicated to every member and " +
			"programmed into every member's data plane. The agentd must run in a cluster (`--cluster-cidr`, " +
			"`--gossip-listen`, `--gossip-key`); a single node that joins nobody is a one-node cluster.\n\n" +
			"The selector, ports and session affinity change in place (the cluster IP and node ports are kept); the " +
			"namespace, name and type force a replacement. A service deleted behind Terraform's back shows up as a " +
			"creation in the next plan; a service some live member does not hold in its current version yet " +
			"(`synced = false`) shows up as an in-place update that writes it again.\n\n" +
			"Invalid input is refused at plan time, with the path of the offending attribute.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`NAMESPACE/NAME`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The member to write and read the service through: the `id` of a `herd_node` " +
					"(`NAME@ADDRESS`). Any member serves the cluster's services, so changing it does not replace the service.",
				Required:   true,
				Validators: []validator.String{nodeIDValidator()},
			},
			"namespace": schema.StringAttribute{
				MarkdownDescription: "The service's namespace, a lowercase RFC 1123 label; default `default`. Changing it " +
					"replaces the service.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.DefaultNamespace),
				PlanModifiers: replaceString,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The service's name, unique in its namespace: a lowercase RFC 1123 label. Changing it " +
					"replaces the service.",
				Required:      true,
				PlanModifiers: replaceString,
			},
			"type": schema.StringAttribute{
				MarkdownDescription: "`ClusterIP` (the default: a virtual IP reachable from every node and pod), `NodePort` " +
					"(also a port on every node's address) or `Headless` (no virtual IP: the DNS name resolves to the ready " +
					"pods' IPs). Changing it replaces the service.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(spec.ServiceTypeClusterIP),
				PlanModifiers: replaceString,
			},
			"selector": schema.MapAttribute{
				MarkdownDescription: "The service's endpoints are the pods whose labels include all of these (label syntax " +
					"as for `herd_pod`). Required and not empty, for every type: herd has no manual endpoints. Changes in place.",
				ElementType: types.StringType,
				Required:    true,
			},
			"session_affinity": schema.StringAttribute{
				MarkdownDescription: "`None` (the default) or `ClientIP`: all connections of a client go to the same pod. " +
					"Not for `Headless` services. Changes in place.",
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(spec.SessionAffinityNone),
			},
			"cluster_ip": schema.StringAttribute{
				MarkdownDescription: "The service's virtual IP, from agentd's `--service-cidr`; stable for the service's " +
					"life. Empty (`\"\"`) for `Headless` services.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"dns_name": schema.StringAttribute{
				MarkdownDescription: "`NAME.NAMESPACE.svc.` and the cluster domain, e.g. `web.default.svc.cluster.local`.",
				Computed:            true,
				PlanModifiers:       keepString,
			},
			"uid": schema.StringAttribute{
				MarkdownDescription: "Unique id of this incarnation of the service: a service recreated under the same " +
					"name gets a new one.",
				Computed:      true,
				PlanModifiers: keepString,
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "Version of the service's current specification; every change raises it.",
				Computed:            true,
			},
			"synced": schema.BoolAttribute{
				MarkdownDescription: "Every live member of the cluster holds the current version, as `node` sees it. " +
					"When a refresh finds `false`, the plan updates the service in place (`synced: false -> true`), " +
					"which writes it again with a new version and so replicates it again.",
				Computed: true,
			},
			"endpoints": schema.ListNestedAttribute{
				MarkdownDescription: "The pods the selector matches, ready or not, as `node` sees them at the last refresh.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"node":  schema.StringAttribute{MarkdownDescription: "The node that runs the pod.", Computed: true},
						"pod":   schema.StringAttribute{MarkdownDescription: "The pod's name.", Computed: true},
						"ip":    schema.StringAttribute{MarkdownDescription: "The pod's IP.", Computed: true},
						"ready": schema.BoolAttribute{MarkdownDescription: "The pod is ready: traffic goes to it.", Computed: true},
					},
				},
			},
		},
		Blocks: map[string]schema.Block{
			"port":     servicePortBlock(),
			"timeouts": serviceTimeoutsBlock(ctx),
		},
	}
}

// servicePortBlock is the port block. Its values are checked by agentd's
// validation (ValidateConfig), not by framework validators, so that each
// problem is reported once.
func servicePortBlock() schema.Block {
	return schema.ListNestedBlock{
		MarkdownDescription: fmt.Sprintf("A port of the service; at least one, at most %d. Ports change in place.",
			spec.MaxServicePorts),
		NestedObject: schema.NestedBlockObject{
			Attributes: map[string]schema.Attribute{
				"name": schema.StringAttribute{
					MarkdownDescription: "Name of the port, unique in the service and required when it has more than one " +
						"port: at most 15 characters of `a-z`, `0-9` and `-`, with at least one letter, not starting or " +
						"ending with `-` and without `--` (an IANA service name). Named ports get DNS SRV records.",
					Optional: true,
				},
				"protocol": schema.StringAttribute{
					MarkdownDescription: fmt.Sprintf("`%s` (the default) or `%s`.", spec.ProtocolTCP, spec.ProtocolUDP),
					Optional:            true,
					Computed:            true,
					Default:             stringdefault.StaticString(spec.ProtocolTCP),
				},
				"port": schema.Int64Attribute{
					MarkdownDescription: "The port on the cluster IP, 1 to 65535; unique per protocol in the service.",
					Required:            true,
				},
				"target_port": schema.Int64Attribute{
					MarkdownDescription: "The port on the pods, 1 to 65535. Defaults to `port` unless `target_port_name` is set " +
						"(then it is null).",
					Optional:      true,
					Computed:      true,
					PlanModifiers: []planmodifier.Int64{targetPortModifier{}},
				},
				"target_port_name": schema.StringAttribute{
					MarkdownDescription: "The name of a container port of the pods (see `herd_pod`'s `port` blocks), instead " +
						"of `target_port`.",
					Optional: true,
				},
				"node_port": schema.Int64Attribute{
					MarkdownDescription: fmt.Sprintf("`NodePort` services only: the port on every node's address, %d to %d, "+
						"unique per protocol in the cluster. Unset: agentd allocates one, which is kept as long as the "+
						"service stays a `NodePort` service. 0 for the other types.", spec.NodePortMin, spec.NodePortMax),
					Optional:      true,
					Computed:      true,
					PlanModifiers: []planmodifier.Int64{nodePortModifier{}},
				},
			},
		},
	}
}

func serviceTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeouts(ctx, timeouts.Opts{
		Create: true,
		Update: true,
		Delete: true,
		CreateDescription: fmt.Sprintf("How long creating the service may take, including waiting until every live "+
			"member holds it (a Go duration; default `\"%s\"`).", shortDuration(defaultServiceWriteTimeout)),
		UpdateDescription: fmt.Sprintf("The same for an update (default `\"%s\"`).", shortDuration(defaultServiceWriteTimeout)),
		DeleteDescription: fmt.Sprintf("How long deleting the service may take (default `\"%s\"`).",
			shortDuration(defaultServiceDeleteTimeout)),
	}, "Time limits of the operations on this service. Changing them does not replace it.")
}
