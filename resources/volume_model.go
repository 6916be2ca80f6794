package resources

import (
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// volumeModel is the state of herd_volume.
type volumeModel struct {
	ID                 types.String   `tfsdk:"id"`
	Node               types.String   `tfsdk:"node"`
	NodeCandidates     types.List     `tfsdk:"node_candidates"`
	Namespace          types.String   `tfsdk:"namespace"`
	Name               types.String   `tfsdk:"name"`
	Size               types.String   `tfsdk:"size"`
	DeletionProtection types.Bool     `tfsdk:"deletion_protection"`
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
	UID                types.String   `tfsdk:"uid"`
	SizeBytes          types.Int64    `tfsdk:"size_bytes"`
	CapacityBytes      types.Int64    `tfsdk:"capacity_bytes"`
	UsedBytes          types.Int64    `tfsdk:"used_bytes"`
	Phase              types.String   `tfsdk:"phase"`
	BoundTo            types.String   `tfsdk:"bound_to"`
	Readers            types.List     `tfsdk:"readers"`
}

// identity of a herd_volume.
func (m volumeModel) identity() namespacedIdentityModel {
	return namespacedIdentityModel{Namespace: m.Namespace, Name: m.Name, Node: m.Node}
}

// volumeSpec is the spec to apply: the plan's values, all known.
func (m volumeModel) volumeSpec() *herdv1.VolumeSpec {
	return &herdv1.VolumeSpec{
		Namespace:          m.Namespace.ValueString(),
		Name:               m.Name.ValueString(),
		Size:               m.Size.ValueString(),
		DeletionProtection: m.DeletionProtection.ValueBool(),
	}
}

// setFromVolume fills what agentd reports. The size keeps its spelling in
// the state while it is the same number of bytes ("1024Mi" stays "1024Mi"
// when agentd says "1Gi"): only a real change of size shows as a diff.
func (m *volumeModel) setFromVolume(v *herdv1.Volume) {
	s := v.GetSpec()
	m.Namespace = types.StringValue(spec.VolumeNamespace(s))
	if s.GetName() != "" {
		m.Name = types.StringValue(s.GetName())
	}
	if prior, err := spec.ParseVolumeSize(m.Size.ValueString()); m.Size.IsNull() || m.Size.IsUnknown() ||
		err != nil || prior != v.GetSizeBytes() {
		m.Size = types.StringValue(s.GetSize())
	}
	m.DeletionProtection = types.BoolValue(s.GetDeletionProtection())
	m.UID = types.StringValue(v.GetUid())
	m.SizeBytes = types.Int64Value(v.GetSizeBytes())
	st := v.GetStatus()
	m.CapacityBytes = types.Int64Value(st.GetCapacityBytes())
	m.UsedBytes = types.Int64Value(st.GetUsedBytes())
	m.Phase = types.StringValue(st.GetPhase())
	m.BoundTo = types.StringValue(st.GetBoundTo())
	m.Readers = stringListValue(st.GetReaders())
	m.ID = types.StringValue(volumeID(m.Node.ValueString(), m.Namespace.ValueString(), m.Name.ValueString()))
}

// volumeID is a herd_volume's id, NODEID/NAMESPACE/NAME: the node first,
// as volumes are node-local.
func volumeID(nodeID, ns, name string) string { return nodeID + "/" + ns + "/" + name }

// parseVolumeID splits NODEID/NAMESPACE/NAME at its last two '/':
// namespaces and names are RFC 1123 labels, but a node's address may hold
// '/' (unix:///run/herd/agentd.sock).
func parseVolumeID(id string) (nodeID, ns, name string, err error) {
	rest, name, ok := cutLast(id, "/")
	if ok {
		nodeID, ns, ok = cutLast(rest, "/")
	}
	if !ok {
		return "", "", "", fmt.Errorf("import id %q: want NODEID/NAMESPACE/NAME", id)
	}
	for _, part := range []struct{ what, v string }{{"namespace", ns}, {"name", name}} {
		if err := spec.ValidateName(part.v); err != nil {
			return "", "", "", fmt.Errorf("import id %q: %s: %w", id, part.what, err)
		}
	}
	if _, _, err := nodeid.Parse(nodeID); err != nil {
		return "", "", "", fmt.Errorf("import id %q: node id: %w", id, err)
	}
	return nodeID, ns, name, nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
