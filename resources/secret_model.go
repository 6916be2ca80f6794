package resources

import (
	"slices"
	"sort"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// secretModel is the state of herd_secret.
type secretModel struct {
	ID            types.String   `tfsdk:"id"`
	Node          types.String   `tfsdk:"node"`
	Namespace     types.String   `tfsdk:"namespace"`
	Name          types.String   `tfsdk:"name"`
	Type          types.String   `tfsdk:"type"`
	Data          types.Map      `tfsdk:"data"`
	DataWO        types.Map      `tfsdk:"data_wo"`
	DataWOVersion types.Int64    `tfsdk:"data_wo_version"`
	NodeSelector  types.Map      `tfsdk:"node_selector"`
	Immutable     types.Bool     `tfsdk:"immutable"`
	Timeouts      timeouts.Value `tfsdk:"timeouts"`
	Keys          types.List     `tfsdk:"keys"`
	UID           types.String   `tfsdk:"uid"`
	Version       types.Int64    `tfsdk:"version"`
	Checksum      types.String   `tfsdk:"checksum"`
	Synced        types.Bool     `tfsdk:"synced"`
	Holders       types.List     `tfsdk:"holders"`
	Restarts      types.List     `tfsdk:"restarts"`
}

var holderAttrTypes = map[string]attr.Type{
	"node":    types.StringType,
	"version": types.Int64Type,
}

var holderObjectType = types.ObjectType{AttrTypes: holderAttrTypes}

// setFromSecret fills what agentd reports: the metadata (type, selector,
// immutable, key names) and the status. The data attributes are the
// configuration's: agentd never returns values.
func (m *secretModel) setFromSecret(sec *herdv1.Secret) {
	if meta := sec.GetMeta(); meta != nil {
		if meta.GetNamespace() != "" {
			m.Namespace = types.StringValue(meta.GetNamespace())
		}
		if meta.GetName() != "" {
			m.Name = types.StringValue(meta.GetName())
		}
		m.Type = types.StringValue(secretTypeFromRemote(meta.GetType()))
		m.NodeSelector = mapFromRemote(meta.GetNodeSelector(), m.NodeSelector)
		m.Immutable = types.BoolValue(meta.GetImmutable())
		keys := slices.Clone(meta.GetKeys())
		sort.Strings(keys)
		m.Keys = stringListValue(keys)
	}
	st := sec.GetStatus()
	m.UID = types.StringValue(sec.GetUid())
	m.Version = types.Int64Value(int64(st.GetVersion()))
	m.Checksum = types.StringValue(st.GetChecksum())
	m.Synced = types.BoolValue(st.GetSynced())
	m.Holders = holdersValue(st.GetMembers())
}

// holdersValue renders the members holding a secret sorted by name.
func holdersValue(members []*herdv1.MemberVersion) types.List {
	sorted := slices.Clone(members)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetNode() < sorted[j].GetNode() })
	elems := make([]attr.Value, 0, len(sorted))
	for _, mv := range sorted {
		elems = append(elems, types.ObjectValueMust(holderAttrTypes, map[string]attr.Value{
			"node":    types.StringValue(mv.GetNode()),
			"version": types.Int64Value(int64(mv.GetVersion())),
		}))
	}
	return types.ListValueMust(holderObjectType, elems)
}

// stringListValue returns a known list(string), empty for nil.
func stringListValue(ss []string) types.List {
	elems := make([]attr.Value, len(ss))
	for i, s := range ss {
		elems[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, elems)
}
