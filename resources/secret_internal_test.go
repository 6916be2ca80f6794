package resources

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func strMap(kv map[string]attr.Value) types.Map {
	return types.MapValueMust(types.StringType, kv)
}

func TestSecretConversion(t *testing.T) {
	data := strMap(map[string]attr.Value{"tls.crt": types.StringValue("C"), "tls.key": types.StringValue("K")})
	c := secretSpecFromValues(types.StringNull(), types.StringValue("web"), types.StringValue("tls"),
		types.MapValueMust(types.StringType, map[string]attr.Value{"disk": types.StringValue("ssd")}), types.BoolValue(true),
		secretAttrDataWO, data)
	s := c.spec
	if s.GetNamespace() != "default" || s.GetName() != "web" || s.GetType() != "tls" || !s.GetImmutable() ||
		s.GetNodeSelector()["disk"] != "ssd" || string(s.GetData()["tls.key"]) != "K" || len(s.GetData()) != 2 {
		t.Fatalf("spec = %v", s)
	}
	if errs := c.validate(); len(errs) != 0 {
		t.Fatalf("valid secret: %v", errs)
	}
	// A null type is opaque.
	c = secretSpecFromValues(types.StringValue("ns"), types.StringValue("x"), types.StringNull(), types.MapNull(types.StringType),
		types.BoolNull(), secretAttrData, strMap(map[string]attr.Value{"a": types.StringValue("b")}))
	if c.spec.GetType() != spec.SecretTypeOpaque || c.spec.GetNamespace() != "ns" {
		t.Fatalf("spec = %v", c.spec)
	}
}

// Unknown values: key names are still checked, required keys need not be
// non-empty, and the total size is not checked.
func TestSecretValidationWithUnknowns(t *testing.T) {
	big := strings.Repeat("x", spec.MaxSecretBytes)
	data := strMap(map[string]attr.Value{
		"..":       types.StringUnknown(),
		"username": types.StringUnknown(),
		"password": types.StringValue(big),
	})
	c := secretSpecFromValues(types.StringValue("default"), types.StringUnknown(), types.StringValue("basic-auth"),
		types.MapUnknown(types.StringType), types.BoolUnknown(), secretAttrDataWO, data)
	errs := c.validate()
	if len(errs) != 1 || errs[0].Path.String() != `data[".."]` {
		t.Fatalf("errors = %v, want only the key error", errs)
	}
	var diags diag.Diagnostics
	addSecretFieldErrors(&diags, errs, secretAttrDataWO)
	if len(diags) != 1 || !strings.Contains(diags[0].Detail(), `data_wo[".."]: key must not be`) {
		t.Fatalf("diagnostics = %v", diags)
	}
	// A wholly unknown map: nothing about data.
	c = secretSpecFromValues(types.StringValue("default"), types.StringValue("x"), types.StringValue("tls"),
		types.MapNull(types.StringType), types.BoolValue(false), secretAttrData, types.MapUnknown(types.StringType))
	if errs := c.validate(); len(errs) != 0 {
		t.Fatalf("errors = %v", errs)
	}
}

func TestSecretAttributePath(t *testing.T) {
	for _, c := range []struct {
		in       spec.Path
		dataAttr string
		want     path.Path
	}{
		{spec.Path{}.Field("data").Key("a"), secretAttrDataWO, path.Root("data_wo").AtMapKey("a")},
		{spec.Path{}.Field("data"), secretAttrData, path.Root("data")},
		{spec.Path{}.Field("node_selector").Key("k"), secretAttrDataWO, path.Root("node_selector").AtMapKey("k")},
		{spec.Path{}.Field("name"), "", path.Root("name")},
	} {
		if got := secretAttributePath(c.in, c.dataAttr); !got.Equal(c.want) {
			t.Errorf("secretAttributePath(%s, %s) = %s, want %s", c.in, c.dataAttr, got, c.want)
		}
	}
}

func TestSecretDataSource(t *testing.T) {
	d := strMap(map[string]attr.Value{"a": types.StringValue("1")})
	null := types.MapNull(types.StringType)
	if a, _, ok := secretDataSource(d, null); a != secretAttrData || !ok {
		t.Errorf("data: %s %v", a, ok)
	}
	if a, _, ok := secretDataSource(null, types.MapUnknown(types.StringType)); a != secretAttrDataWO || !ok {
		t.Errorf("unknown data_wo: %s %v", a, ok)
	}
	if _, _, ok := secretDataSource(null, null); ok {
		t.Error("neither: ok")
	}
}

func TestSecretFromRemote(t *testing.T) {
	m := secretModel{NodeSelector: types.MapNull(types.StringType)}
	m.setFromSecret(&herdv1.Secret{
		Uid:  "u1",
		Meta: &herdv1.SecretMeta{Namespace: "default", Name: "db", Type: "", Keys: []string{"b", "a"}},
		Status: &herdv1.SecretStatus{Version: 3, Checksum: "hmac-sha256:ab", Synced: true,
			Members: []*herdv1.MemberVersion{{Node: "n2", Version: 3}, {Node: "n1", Version: 2}}},
	})
	if m.Type.ValueString() != "opaque" || !m.NodeSelector.IsNull() || m.Version.ValueInt64() != 3 ||
		m.Checksum.ValueString() != "hmac-sha256:ab" || !m.Synced.ValueBool() || m.UID.ValueString() != "u1" {
		t.Fatalf("model = %+v", m)
	}
	if got := stringList(m.Keys); strings.Join(got, ",") != "a,b" {
		t.Errorf("keys = %v", got)
	}
	var holders []struct {
		Node    types.String `tfsdk:"node"`
		Version types.Int64  `tfsdk:"version"`
	}
	if d := m.Holders.ElementsAs(context.Background(), &holders, false); d.HasError() {
		t.Fatal(d)
	}
	if len(holders) != 2 || holders[0].Node.ValueString() != "n1" || holders[0].Version.ValueInt64() != 2 {
		t.Errorf("holders = %v", holders)
	}
	// An empty selector the configuration wrote as {} stays {}.
	m.NodeSelector = types.MapValueMust(types.StringType, map[string]attr.Value{})
	m.setFromSecret(&herdv1.Secret{Meta: &herdv1.SecretMeta{Name: "db"}})
	if m.NodeSelector.IsNull() {
		t.Error("selector {} became null")
	}
	if got := podRefs([]*herdv1.PodRef{{Node: "a", Pod: "web"}, {Node: "b", Pod: "api"}}); strings.Join(got, " ") != "a/web b/api" {
		t.Errorf("podRefs = %v", got)
	}
}

func TestRevealedData(t *testing.T) {
	text, b64, keys := revealedData(map[string][]byte{"pw": []byte("s3cret"), "bin": {0xff, 0x00}})
	if v := text.Elements()["pw"].(types.String).ValueString(); v != "s3cret" {
		t.Errorf("text pw = %q", v)
	}
	if _, ok := text.Elements()["bin"]; ok {
		t.Error("invalid UTF-8 in data")
	}
	if v := b64.Elements()["bin"].(types.String).ValueString(); v != "/wA=" {
		t.Errorf("base64 bin = %q", v)
	}
	if got := stringList(keys); strings.Join(got, ",") != "bin,pw" {
		t.Errorf("keys = %v", got)
	}
}

func TestFileMode(t *testing.T) {
	for in, want := range map[string]uint32{"0440": 0o440, "440": 0o440, "0o600": 0o600, "0": 0, "0777": 0o777} {
		if got, err := parseFileMode(in); err != nil || got != want {
			t.Errorf("parseFileMode(%q) = %o, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0999", "rw", "0o", "-1"} {
		if _, err := parseFileMode(in); err == nil {
			t.Errorf("parseFileMode(%q): no error", in)
		}
	}
	if got := formatFileMode(0o440, types.StringValue("440")); got.ValueString() != "440" {
		t.Errorf("same mode rewritten: %s", got)
	}
	if got := formatFileMode(0o400, types.StringValue("440")); got.ValueString() != "0400" {
		t.Errorf("other mode: %s", got)
	}
	if got := formatFileMode(0o40, types.StringNull()); got.ValueString() != "0040" {
		t.Errorf("no prior: %s", got)
	}
}

// Secret blocks convert into the spec (with agentd's field names, and
// paths mapped back to the blocks) and back, keeping null optional values.
func TestPodSecretsConversion(t *testing.T) {
	ctx := context.Background()
	mount := types.ObjectValueMust(secretMountAttrTypes, map[string]attr.Value{
		"secret": types.StringValue("prod/tls"), "path": types.StringNull(), "uid": types.Int64Value(1000),
		"gid": types.Int64Null(), "keys": types.ListValueMust(types.StringType, []attr.Value{types.StringValue("tls.crt")}),
		"mode": types.StringValue("440"),
	})
	env := types.ObjectValueMust(secretEnvAttrTypes, map[string]attr.Value{
		"name": types.StringValue("PW"), "secret": types.StringValue("db"), "key": types.StringValue("password"),
	})
	cm := containerModel{
		Name: types.StringValue("app"), Image: types.StringValue("busybox"),
		WorkingDir: types.StringNull(), CPU: types.StringNull(), Memory: types.StringNull(),
		Ports:        types.ListValueMust(portObjectType, nil), // blocks are lists, never null
		SecretMounts: types.ListValueMust(secretMountObjectType, []attr.Value{mount}),
		SecretEnv:    types.ListValueMust(secretEnvObjectType, []attr.Value{env}),
		VolumeMounts: types.ListValueMust(volumeMountObjectType, nil),
		ConfigFiles:  types.ListValueMust(configFileObjectType, nil),
	}
	m := podModel{
		Name: types.StringValue("web"), Namespace: types.StringValue("prod"), Labels: types.MapNull(types.StringType),
		ImagePullSecret: types.StringValue("prod/registry"), RestartOnSecretChange: types.BoolValue(true),
		Containers: types.ListValueMust(types.ObjectType{AttrTypes: containerAttrTypes}, []attr.Value{containerObject(t, cm)}),
	}
	conv, diags := podSpecFromModel(ctx, m, true)
	if diags.HasError() {
		t.Fatal(diags)
	}
	s := conv.spec
	if s.GetImagePullSecret() != "prod/registry" || !s.GetRestartOnSecretChange() {
		t.Fatalf("pod spec = %v", s)
	}
	c := s.GetContainers()[0]
	sm := c.GetSecretMounts()[0]
	if sm.GetSecret() != "prod/tls" || sm.GetPath() != "" || sm.Uid == nil || sm.GetUid() != 1000 || sm.Gid != nil ||
		sm.GetMode() != 0o440 || len(sm.GetKeys()) != 1 {
		t.Fatalf("mount = %v", sm)
	}
	if e := c.GetSecretEnv()[0]; e.GetName() != "PW" || e.GetSecret() != "db" || e.GetKey() != "password" {
		t.Fatalf("env = %v", e)
	}
	if errs := validatePodSpec(conv); len(errs) != 0 {
		t.Fatalf("valid pod: %v", errs)
	}
	// Back from agentd: same values, the mode as written, nulls kept.
	var back podModel
	if d := back.setSpec(ctx, s, m); d.HasError() {
		t.Fatal(d)
	}
	if !back.Containers.Equal(m.Containers) {
		t.Errorf("containers after a round trip:\n got %v\nwant %v", back.Containers, m.Containers)
	}
	if back.ImagePullSecret.ValueString() != "prod/registry" || !back.RestartOnSecretChange.ValueBool() {
		t.Errorf("pod attributes after a round trip: %v %v", back.ImagePullSecret, back.RestartOnSecretChange)
	}
	// Spec paths map to the blocks.
	if got := podAttributePath(spec.Path{}.Field("containers").Index(0).Field("secret_mounts").Index(1).Field("keys").Index(0)); !got.Equal(
		path.Root("container").AtListIndex(0).AtName("secret_mount").AtListIndex(1).AtName("keys").AtListIndex(0)) {
		t.Errorf("path = %s", got)
	}
}
