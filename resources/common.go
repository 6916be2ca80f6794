// Package resources holds herd's Terraform resources and data sources: one
// file per resource or data source, tests beside them.
//
// Resources reach agentd through the Clients the provider hands them as
// provider data (provider.Pool implements it). Validation is local
// (internal/spec, the same rules agentd enforces), and nodes are contacted
// only to create, read, update, delete or import, with one exception:
// herd_deployment's plan asks its node for a dry run (placement and rollout
// plan), and goes on without it when the node cannot be reached.
package resources

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeclient"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Clients is what resources need from the provider: typed agentd clients for
// a node id (NAME@ADDRESS). Getting a client makes no network call.
type Clients interface {
	NodeClient(nodeID string) (herdv1.NodeServiceClient, error)
	PodClient(nodeID string) (herdv1.PodServiceClient, error)
	// ServiceClient reaches the cluster's services through that node:
	// services are cluster-scoped, any member serves them.
	ServiceClient(nodeID string) (herdv1.ServiceServiceClient, error)
	// DeploymentClient reaches the cluster's deployments through that
	// node (any member).
	DeploymentClient(nodeID string) (herdv1.DeploymentServiceClient, error)
	ClusterClient(nodeID string) (herdv1.ClusterServiceClient, error)
	// SecretClient reaches the cluster's secrets through that node (any
	// member; RevealSecret only on a member that holds the secret). The
	// secrets API requires an admin client certificate.
	SecretClient(nodeID string) (herdv1.SecretServiceClient, error)
	// NestedClusterClient reaches the nested clusters the node owns (an
	// admin client certificate is required).
	NestedClusterClient(nodeID string) (herdv1.NestedClusterServiceClient, error)
	// VolumeClient reaches the persistent volumes of that node: volumes
	// are node-local, only their node serves them.
	VolumeClient(nodeID string) (herdv1.VolumeServiceClient, error)
	// HealthClient reaches the node's standard grpc.health.v1 service.
	HealthClient(nodeID string) (healthpb.HealthClient, error)
	// DialTimeout is the provider's dial_timeout: how long one connection
	// attempt to a node may take.
	DialTimeout() time.Duration
}

// clientsFromProviderData extracts the Clients from provider data. It
// returns nil without a diagnostic when the provider is not configured yet
// (Terraform calls Configure on resources before the provider is
// configured, e.g. during validation).
func clientsFromProviderData(data any, diags *diag.Diagnostics) Clients {
	if data == nil {
		return nil
	}
	c, ok := data.(Clients)
	if !ok {
		diags.AddError("Unexpected provider data",
			fmt.Sprintf("expected resources.Clients, got %T. This is a bug in the herd provider; please report it.", data))
		return nil
	}
	return c
}

// resourceClients, dataSourceClients and ephemeralClients hold the Clients
// a resource, data source or ephemeral resource gets from Configure; each
// embeds one.
type resourceClients struct{ clients Clients }

func (r *resourceClients) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFromProviderData(req.ProviderData, &resp.Diagnostics)
}

type dataSourceClients struct{ clients Clients }

func (d *dataSourceClients) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.clients = clientsFromProviderData(req.ProviderData, &resp.Diagnostics)
}

type ephemeralClients struct{ clients Clients }

func (e *ephemeralClients) Configure(_ context.Context, req ephemeral.ConfigureRequest, resp *ephemeral.ConfigureResponse) {
	e.clients = clientsFromProviderData(req.ProviderData, &resp.Diagnostics)
}

// checkConfigured reports a clear error when a resource is used before the
// provider was configured.
func checkConfigured(c Clients, diags *diag.Diagnostics) bool {
	if c == nil {
		diags.AddError("Provider not configured",
			"The herd provider was not configured before this operation. This is a bug in the herd provider or in Terraform; please report it.")
		return false
	}
	return true
}

// modelSource is a plan, a state or a configuration.
type modelSource interface {
	Get(ctx context.Context, target any) diag.Diagnostics
}

// configuredModel is how the methods that reach a node start: the provider
// must be configured, and the plan, state or configuration is read into a
// model. It reports false when diags hold an error.
func configuredModel[M any](ctx context.Context, c Clients, from modelSource, diags *diag.Diagnostics) (M, bool) {
	var m M
	if !checkConfigured(c, diags) {
		return m, false
	}
	diags.Append(from.Get(ctx, &m)...)
	return m, !diags.HasError()
}

// timeoutsFunc is a resource's Timeouts.Create or Timeouts.Update: the
// configured timeout of the operation, or the default.
type timeoutsFunc func(ctx context.Context, defaultTimeout time.Duration) (time.Duration, diag.Diagnostics)

// nodeDescription renders a node id for messages: node "a" at 10.0.0.5:7443.
func nodeDescription(nodeID string) string {
	name, addr, err := nodeid.Parse(nodeID)
	if err != nil {
		return fmt.Sprintf("node %q", nodeID)
	}
	return fmt.Sprintf("node %q at %s", name, addr)
}

// addRPCError turns an error from the client pool or from agentd into a
// diagnostic that says what failed and what to check.
func addRPCError(diags *diag.Diagnostics, what, nodeID string, err error) {
	summary, detail := describeRPCError(what, nodeID, err)
	diags.AddError(summary, detail)
}

func describeRPCError(what, nodeID string, err error) (summary, detail string) {
	node := nodeDescription(nodeID)
	st, ok := status.FromError(err)
	if !ok {
		// Not from gRPC: the pool refused (bad id, missing TLS settings).
		if errors.Is(err, context.DeadlineExceeded) {
			return "Timed out: " + what, fmt.Sprintf("%s: %v", node, err)
		}
		return "Cannot " + what, fmt.Sprintf("%s: %v", node, err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.InvalidArgument:
		return "agentd refused to " + what,
			fmt.Sprintf("%s rejected the request as invalid: %s", node, msg)
	case codes.NotFound:
		return "Not found: " + what, fmt.Sprintf("%s: %s", node, msg)
	case codes.AlreadyExists:
		return "Already exists: " + what, fmt.Sprintf("%s: %s", node, msg)
	case codes.FailedPrecondition:
		return "Cannot " + what + " now", fmt.Sprintf("%s refused in its current state: %s", node, msg)
	case codes.Unavailable:
		if cause, ok := tlsFailure(err); ok {
			name, _, _ := nodeid.Parse(nodeID)
			// The TLS error itself: the RPC's message may be a later
			// symptom of it (a write to the closed connection).
			msg = cause.Error()
			if nodeclient.IsRemoteAlert(err) {
				// The node's alert: it refused the handshake, most often
				// the provider's client certificate (TLS 1.3 clients
				// learn it only after their side of the handshake).
				return "Node refused the client",
					fmt.Sprintf("Could not %s: %s refused the TLS connection: %s\n\n"+
						"Check that client_cert and client_key were issued by the herd CA that the node trusts, and that "+
						"client_cert has not expired.", what, node, msg)
			}
			return "Cannot verify node",
				fmt.Sprintf("Could not %s: the TLS handshake with %s failed: %s\n\n"+
					"The node must present a certificate issued by the provider's ca_cert for the name %q, and accept the "+
					"provider's client_cert (issued by the same herd CA).", what, node, msg, name)
		}
		return "Cannot reach node",
			fmt.Sprintf("Could not %s: %s is unreachable: %s\n\n"+
				"Check that agentd runs there and listens on that address, that the address is reachable from here, "+
				"and (for TCP addresses) that the node's certificate was issued by the provider's ca_cert for the node's name.", what, node, msg)
	case codes.DeadlineExceeded, codes.Canceled:
		return "Timed out: " + what, fmt.Sprintf("%s did not answer in time: %s", node, msg)
	case codes.PermissionDenied:
		return "Not allowed: " + what,
			fmt.Sprintf("Could not %s: %s does not allow the provider's client certificate this: %s\n\n"+
				"The certificate's role (admin, operator, viewer) and namespaces decide what it may do; "+
				"an admin issues another with herdctl certs client NAME --role ROLE --namespace NS.", what, node, msg)
	case codes.Unauthenticated:
		return "Node refused the client",
			fmt.Sprintf("Could not %s: %s refused the provider's client certificate: %s\n\n"+
				"Check that client_cert and client_key were issued by the herd CA that the node trusts.", what, node, msg)
	case codes.Unimplemented:
		return "Operation not supported by node",
			fmt.Sprintf("Could not %s: the agentd on %s does not implement it (%s). Upgrade agentd on that node.", what, node, msg)
	case codes.ResourceExhausted:
		return "Node out of resources", fmt.Sprintf("Could not %s: %s: %s", what, node, msg)
	default:
		return "Failed to " + what, fmt.Sprintf("%s: %s (%s)", node, msg, st.Code())
	}
}

// isUnreachable reports errors that mean "the node could not be asked",
// as opposed to "the node answered no". A failed TLS handshake is not
// "unreachable": something answered, and it is not the node (or not one
// that trusts us); waiting will not help and it must not be ignored.
func isUnreachable(err error) bool {
	if isTLSFailure(err) {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// isTLSFailure reports a failed TLS handshake (an untrusted or misnamed
// node certificate, or a client certificate the node refused). The client
// pool's connections report those as a *nodeclient.HandshakeError that
// carries the TLS error.
func isTLSFailure(err error) bool {
	_, ok := tlsFailure(err)
	return ok
}

// tlsFailure returns the TLS error of a failed handshake.
func tlsFailure(err error) (error, bool) {
	var hs *nodeclient.HandshakeError
	if !errors.As(err, &hs) || hs.Unwrap() == nil {
		return nil, false
	}
	return hs.Unwrap(), true
}

// hasReason reports whether agentd marked err with a google.rpc.ErrorInfo
// of the given reason (a herdv1.Reason constant).
func hasReason(err error, reason string) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == herdv1.ErrorDomain && info.GetReason() == reason {
			return true
		}
	}
	return false
}

// timeString renders a protobuf timestamp as RFC 3339, null when unset.
func timeString(ts *timestamppb.Timestamp) types.String {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return types.StringNull()
	}
	return types.StringValue(ts.AsTime().UTC().Format(time.RFC3339))
}

// The *FromRemote helpers convert what agentd reports into state values.
// agentd does not distinguish "unset" from "empty", Terraform does: an empty
// remote value becomes null, unless the prior value (state or plan) was the
// empty value itself, which is kept so that `command = []` or
// `working_dir = ""` in a configuration do not show a diff forever.

func stringFromRemote(remote string, prior types.String) types.String {
	if remote == "" && (prior.IsNull() || prior.IsUnknown() || prior.ValueString() != "") {
		return types.StringNull()
	}
	return types.StringValue(remote)
}

func listFromRemote(remote []string, prior types.List) types.List {
	if len(remote) == 0 && (prior.IsNull() || prior.IsUnknown() || len(prior.Elements()) != 0) {
		return types.ListNull(types.StringType)
	}
	elems := make([]attr.Value, len(remote))
	for i, s := range remote {
		elems[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, elems)
}

func mapFromRemote(remote map[string]string, prior types.Map) types.Map {
	if len(remote) == 0 && (prior.IsNull() || prior.IsUnknown() || len(prior.Elements()) != 0) {
		return types.MapNull(types.StringType)
	}
	return stringMapValue(remote)
}

// stringMapValue returns a known map(string), empty for a nil map.
func stringMapValue(m map[string]string) types.Map {
	elems := make(map[string]attr.Value, len(m))
	for k, v := range m {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

// stringMap converts a known map(string) into a Go map; null gives nil.
// Unknown elements are skipped.
func stringMap(m types.Map) map[string]string {
	if m.IsNull() || m.IsUnknown() {
		return nil
	}
	out := make(map[string]string, len(m.Elements()))
	for k, v := range m.Elements() {
		s, ok := v.(types.String)
		if !ok || s.IsUnknown() || s.IsNull() {
			continue
		}
		out[k] = s.ValueString()
	}
	return out
}

// stringList converts a known list(string) into a Go slice; null gives nil.
func stringList(l types.List) []string {
	if l.IsNull() || l.IsUnknown() {
		return nil
	}
	out := make([]string, 0, len(l.Elements()))
	for _, v := range l.Elements() {
		s, _ := v.(types.String)
		out = append(out, s.ValueString())
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// addSpecFieldErrors reports internal/spec field errors as diagnostics at
// the attribute paths attrPath maps them to. summary names the kind of
// specification an error is in; names, when not nil, respells agentd's
// field names inside messages the way the schema spells them.
func addSpecFieldErrors(diags *diag.Diagnostics, errs spec.FieldErrors, summary func(spec.Path) string,
	attrPath func(spec.Path) path.Path, names *strings.Replacer) {
	for _, fe := range errs {
		if len(fe.Path) == 0 {
			diags.AddError(summary(fe.Path), fe.Msg)
			continue
		}
		p := attrPath(fe.Path)
		msg := fe.Msg
		if names != nil {
			msg = names.Replace(msg)
		}
		diags.AddAttributeError(p, summary(fe.Path), fmt.Sprintf("%s: %s", p, msg))
	}
}

// fixedSummary is the summary of a resource whose field errors all share one.
func fixedSummary(s string) func(spec.Path) string { return func(spec.Path) string { return s } }

// attributePath turns an internal/spec field path into the attribute path
// of a resource; rename maps agentd's field names (the protobuf's) to the
// schema's where they differ (blocks are singular), given the step index.
func attributePath(p spec.Path, rename func(i int, field string) string) path.Path {
	out := path.Empty()
	for i, s := range p {
		switch s.Kind {
		case spec.FieldStep:
			out = out.AtName(rename(i, s.Field))
		case spec.IndexStep:
			out = out.AtListIndex(s.Index)
		case spec.KeyStep:
			out = out.AtMapKey(s.Key)
		}
	}
	return out
}

// syncedStatus is the status of a replicated object (a service, a secret).
type syncedStatus interface{ GetSynced() bool }

// waitSynced polls get every interval until the object's status is synced
// or ctx ends, riding out an unreachable node. It returns the last object
// seen (obj until get returns one) and, when not synced, why.
func waitSynced[T any, S syncedStatus](ctx context.Context, interval time.Duration, obj T,
	get func(context.Context) (T, error), statusOf func(T) S) (T, error) {
	if statusOf(obj).GetSynced() {
		return obj, nil
	}
	err := wait.PollUntilContextCancel(ctx, interval, false, func(ctx context.Context) (bool, error) {
		got, err := get(ctx)
		if err != nil {
			if isUnreachable(err) && ctx.Err() == nil {
				return false, nil
			}
			return false, err
		}
		obj = got
		return statusOf(obj).GetSynced(), nil
	})
	return obj, err
}
