package resources

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func TestPodAttributePath(t *testing.T) {
	cases := []struct {
		in   spec.Path
		want path.Path
	}{
		{spec.Path{}.Field("name"), path.Root("name")},
		{spec.Path{}.Field("labels").Key("app"), path.Root("labels").AtMapKey("app")},
		{spec.Path{}.Field("restart_policy"), path.Root("restart_policy")},
		{spec.Path{}.Field("containers"), path.Root("container")},
		{spec.Path{}.Field("containers").Index(2).Field("image"), path.Root("container").AtListIndex(2).AtName("image")},
		{spec.Path{}.Field("containers").Index(0).Field("env").Key("A B"), path.Root("container").AtListIndex(0).AtName("env").AtMapKey("A B")},
		{spec.Path{}.Field("containers").Index(1).Field("args").Index(3), path.Root("container").AtListIndex(1).AtName("args").AtListIndex(3)},
		{spec.Path{}.Field("containers").Index(1).Field("ports").Index(2).Field("name"), path.Root("container").AtListIndex(1).AtName("port").AtListIndex(2).AtName("name")},
	}
	for _, c := range cases {
		if got := podAttributePath(c.in); !got.Equal(c.want) {
			t.Errorf("podAttributePath(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func containerObject(t *testing.T, cm containerModel) types.Object {
	t.Helper()
	for _, l := range []*types.List{&cm.Command, &cm.Args} {
		if l.ElementType(context.Background()) == nil {
			*l = types.ListNull(types.StringType)
		}
	}
	if cm.Env.ElementType(context.Background()) == nil {
		cm.Env = types.MapNull(types.StringType)
	}
	if cm.Ports.ElementType(context.Background()) == nil {
		cm.Ports = types.ListNull(portObjectType)
	}
	if cm.SecretMounts.ElementType(context.Background()) == nil {
		cm.SecretMounts = types.ListNull(secretMountObjectType)
	}
	if cm.SecretEnv.ElementType(context.Background()) == nil {
		cm.SecretEnv = types.ListNull(secretEnvObjectType)
	}
	if cm.VolumeMounts.ElementType(context.Background()) == nil {
		cm.VolumeMounts = types.ListNull(volumeMountObjectType)
	}
	if cm.ConfigFiles.ElementType(context.Background()) == nil {
		cm.ConfigFiles = types.ListNull(configFileObjectType)
	}
	for _, o := range []*types.Object{&cm.ReadinessProbe, &cm.LivenessProbe, &cm.StartupProbe} {
		if len(o.AttributeTypes(context.Background())) == 0 {
			*o = types.ObjectNull(probeAttrTypes)
		}
	}
	obj, diags := types.ObjectValueFrom(context.Background(), containerAttrTypes, cm)
	if diags.HasError() {
		t.Fatal(diags)
	}
	return obj
}

func TestValidationSkipsUnknownValues(t *testing.T) {
	ctx := context.Background()
	m := podModel{
		Name:   types.StringUnknown(),
		Labels: types.MapValueMust(types.StringType, map[string]attr.Value{"app": types.StringUnknown(), "bad key": types.StringValue("x")}),
		Containers: types.ListValueMust(types.ObjectType{AttrTypes: containerAttrTypes}, []attr.Value{
			containerObject(t, containerModel{Name: types.StringUnknown(), Image: types.StringUnknown(), CPU: types.StringValue("12Q")}),
			containerObject(t, containerModel{Name: types.StringValue("app"), Image: types.StringValue("busybox"),
				Command: types.ListValueMust(types.StringType, []attr.Value{types.StringUnknown()}), Memory: types.StringUnknown()}),
			types.ObjectUnknown(containerAttrTypes),
		}),
	}
	conv, diags := podSpecFromModel(ctx, m, false)
	if diags.HasError() {
		t.Fatal(diags)
	}
	errs := validatePodSpec(conv)
	var got []string
	for _, e := range errs {
		got = append(got, e.Path.String())
	}
	want := []string{`labels["bad key"]`, "containers[0].cpu"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("errors at %v, want %v (%v)", got, want, errs)
	}

	// A whole unknown container list is not "no container".
	conv, _ = podSpecFromModel(ctx, podModel{Name: types.StringValue("web"), Containers: types.ListUnknown(types.ObjectType{AttrTypes: containerAttrTypes})}, false)
	if errs := validatePodSpec(conv); len(errs) != 0 {
		t.Errorf("unknown containers: %v", errs)
	}
}

func TestSetSpecNullVersusEmpty(t *testing.T) {
	ctx := context.Background()
	remote := &herdv1.PodSpec{
		Name: "web",
		Containers: []*herdv1.ContainerSpec{
			{Name: "a", Image: "busybox"},
			{Name: "b", Image: "busybox", Args: []string{"x"}, Env: map[string]string{"K": "v"}, Cpu: "500m"},
		},
	}
	// Prior state wrote empty values explicitly for container a.
	prior := podModel{
		Labels: types.MapValueMust(types.StringType, map[string]attr.Value{}),
		Containers: types.ListValueMust(types.ObjectType{AttrTypes: containerAttrTypes}, []attr.Value{
			containerObject(t, containerModel{
				Name: types.StringValue("a"), Image: types.StringValue("busybox"),
				Command:    types.ListValueMust(types.StringType, []attr.Value{}),
				Env:        types.MapValueMust(types.StringType, map[string]attr.Value{}),
				WorkingDir: types.StringValue(""),
			}),
		}),
	}
	var m podModel
	if diags := m.setSpec(ctx, remote, prior); diags.HasError() {
		t.Fatal(diags)
	}
	if m.Labels.IsNull() || len(m.Labels.Elements()) != 0 {
		t.Errorf("labels = %v, want {} as in the prior state", m.Labels)
	}
	if m.RestartPolicy.ValueString() != "Always" || m.TerminationGracePeriodSeconds.ValueInt64() != 30 {
		t.Errorf("defaults not applied: %v %v", m.RestartPolicy, m.TerminationGracePeriodSeconds)
	}
	var cs []containerModel
	if diags := m.Containers.ElementsAs(ctx, &cs, false); diags.HasError() {
		t.Fatal(diags)
	}
	a, b := cs[0], cs[1]
	if a.Command.IsNull() || len(a.Command.Elements()) != 0 || a.Env.IsNull() || a.WorkingDir.IsNull() {
		t.Errorf("container a: empty values of the prior state not kept: %+v", a)
	}
	if !a.Args.IsNull() || !a.CPU.IsNull() || !a.Memory.IsNull() {
		t.Errorf("container a: unset values must be null: %+v", a)
	}
	if !b.Command.IsNull() || !b.WorkingDir.IsNull() || b.CPU.ValueString() != "500m" || len(b.Args.Elements()) != 1 || len(b.Env.Elements()) != 1 {
		t.Errorf("container b (no prior): %+v", b)
	}

	// After an import (no prior), empty is null.
	var imported podModel
	if diags := imported.setSpec(ctx, remote, podModel{}); diags.HasError() {
		t.Fatal(diags)
	}
	if !imported.Labels.IsNull() {
		t.Errorf("imported labels = %v, want null", imported.Labels)
	}
}

func TestCheckPodFailure(t *testing.T) {
	code := func(v int32) *int32 { return &v }
	pod := func(phase string, cs ...*herdv1.ContainerStatus) *herdv1.Pod {
		return &herdv1.Pod{Status: &herdv1.PodStatus{Phase: phase, Containers: cs}}
	}
	cases := []struct {
		name     string
		pod      *herdv1.Pod
		baseline map[string]int32
		want     string // "" = no failure
	}{
		{"running", pod("Running", &herdv1.ContainerStatus{Name: "a", State: "running"}), nil, ""},
		{"creating", pod("Pending", &herdv1.ContainerStatus{Name: "a", State: "waiting", Reason: "ContainerCreating"}), nil, ""},
		{"exit 3", pod("Running", &herdv1.ContainerStatus{Name: "a", State: "terminated", Reason: "Error", LastExitCode: code(3)}), nil,
			`container "a" terminated with exit code 3 (reason: Error)`},
		{"exit 0 is not a failure", pod("Running", &herdv1.ContainerStatus{Name: "a", State: "terminated", Reason: "Completed", LastExitCode: code(0)}), nil, ""},
		{"restart", pod("Running", &herdv1.ContainerStatus{Name: "a", State: "running", RestartCount: 2, LastExitCode: code(1)}), nil,
			`container "a" exited with code 1 and restarted 2 time(s)`},
		{"restart already counted", pod("Running", &herdv1.ContainerStatus{Name: "a", State: "running", RestartCount: 2}), map[string]int32{"a": 2}, ""},
		{"image pull", pod("Pending", &herdv1.ContainerStatus{Name: "a", State: "waiting", Reason: "ImagePullBackOff", Message: "not found"}), nil,
			`container "a" cannot start (reason: ImagePullBackOff): not found`},
		{"pod failed", pod("Failed", &herdv1.ContainerStatus{Name: "a", State: "waiting"}), nil, `container "a" failed`},
	}
	for _, c := range cases {
		f := checkPodFailure(c.pod, c.baseline)
		switch {
		case c.want == "" && f != nil:
			t.Errorf("%s: unexpected failure %s", c.name, f)
		case c.want != "" && (f == nil || !strings.Contains(f.String(), c.want)):
			t.Errorf("%s: failure = %v, want %q", c.name, f, c.want)
		}
	}
}

func TestAllStarted(t *testing.T) {
	code0 := int32(0)
	done := &herdv1.ContainerStatus{Name: "job", State: "terminated", LastExitCode: &code0}
	run := &herdv1.ContainerStatus{Name: "srv", State: "running"}
	p := &herdv1.Pod{Status: &herdv1.PodStatus{Phase: "Running", Containers: []*herdv1.ContainerStatus{run, done}}}
	if allStarted(p, []string{"srv", "job"}, spec.RestartAlways) {
		t.Error("Always: a completed container will be restarted; not started")
	}
	if !allStarted(p, []string{"srv", "job"}, spec.RestartOnFailure) {
		t.Error("OnFailure: a container done with 0 counts as started")
	}
	if allStarted(p, []string{"srv", "job", "missing"}, spec.RestartNever) {
		t.Error("a container without status is not started")
	}
}

func portList(t *testing.T, ports ...portModel) types.List {
	t.Helper()
	elems := make([]attr.Value, 0, len(ports))
	for _, p := range ports {
		obj, diags := types.ObjectValueFrom(context.Background(), portAttrTypes, p)
		if diags.HasError() {
			t.Fatal(diags)
		}
		elems = append(elems, obj)
	}
	return types.ListValueMust(portObjectType, elems)
}

func TestPortsConversion(t *testing.T) {
	ctx := context.Background()
	// Unknown values: no error for them, no false duplicate, the known
	// problems are still reported at their indexes.
	m := podModel{
		Name: types.StringValue("web"),
		Containers: types.ListValueMust(types.ObjectType{AttrTypes: containerAttrTypes}, []attr.Value{
			containerObject(t, containerModel{Name: types.StringValue("app"), Image: types.StringValue("busybox"),
				Ports: types.ListValueMust(portObjectType, []attr.Value{
					types.ObjectUnknown(portAttrTypes),
					portList(t, portModel{Name: types.StringUnknown(), ContainerPort: types.Int64Value(80), Protocol: types.StringUnknown()}).Elements()[0],
					portList(t, portModel{Name: types.StringNull(), ContainerPort: types.Int64Value(80), Protocol: types.StringUnknown()}).Elements()[0],
					portList(t, portModel{Name: types.StringValue("Bad"), ContainerPort: types.Int64Unknown(), Protocol: types.StringNull()}).Elements()[0],
					portList(t, portModel{Name: types.StringNull(), ContainerPort: types.Int64Value(1 << 40), Protocol: types.StringValue("TCP")}).Elements()[0],
				})}),
		}),
	}
	conv, diags := podSpecFromModel(ctx, m, false)
	if diags.HasError() {
		t.Fatal(diags)
	}
	var got []string
	for _, e := range validatePodSpec(conv) {
		got = append(got, e.Error())
	}
	want := []string{
		"containers[0].ports[4].container_port: must be between 1 and 65535, got 1099511627776",
		`containers[0].ports[3].name: invalid port name "Bad"`,
	}
	if len(got) != len(want) {
		t.Fatalf("errors %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want prefix %q", i, got[i], want[i])
		}
	}

	// Read reproduces the ports: protocol defaulted, a missing name null
	// unless the prior state held "".
	remote := &herdv1.PodSpec{Name: "web", Containers: []*herdv1.ContainerSpec{
		{Name: "a", Image: "busybox", Ports: []*herdv1.ContainerPort{
			{Name: "http", ContainerPort: 8080}, {ContainerPort: 53, Protocol: "UDP"}, {ContainerPort: 9000},
		}},
		{Name: "b", Image: "busybox"},
	}}
	prior := podModel{Containers: types.ListValueMust(types.ObjectType{AttrTypes: containerAttrTypes}, []attr.Value{
		containerObject(t, containerModel{Name: types.StringValue("a"), Image: types.StringValue("busybox"), Ports: portList(t,
			portModel{Name: types.StringValue("http"), ContainerPort: types.Int64Value(8080), Protocol: types.StringValue("TCP")},
			portModel{Name: types.StringNull(), ContainerPort: types.Int64Value(53), Protocol: types.StringValue("UDP")},
			portModel{Name: types.StringValue(""), ContainerPort: types.Int64Value(9000), Protocol: types.StringValue("TCP")},
		)}),
	})}
	for _, tc := range []struct {
		name  string
		prior podModel
		want  types.List
	}{
		{"refresh", prior, portList(t,
			portModel{Name: types.StringValue("http"), ContainerPort: types.Int64Value(8080), Protocol: types.StringValue("TCP")},
			portModel{Name: types.StringNull(), ContainerPort: types.Int64Value(53), Protocol: types.StringValue("UDP")},
			portModel{Name: types.StringValue(""), ContainerPort: types.Int64Value(9000), Protocol: types.StringValue("TCP")},
		)},
		{"import", podModel{}, portList(t,
			portModel{Name: types.StringValue("http"), ContainerPort: types.Int64Value(8080), Protocol: types.StringValue("TCP")},
			portModel{Name: types.StringNull(), ContainerPort: types.Int64Value(53), Protocol: types.StringValue("UDP")},
			portModel{Name: types.StringNull(), ContainerPort: types.Int64Value(9000), Protocol: types.StringValue("TCP")},
		)},
	} {
		var got podModel
		if diags := got.setSpec(ctx, remote, tc.prior); diags.HasError() {
			t.Fatal(diags)
		}
		var cs []containerModel
		if diags := got.Containers.ElementsAs(ctx, &cs, false); diags.HasError() {
			t.Fatal(diags)
		}
		if !cs[0].Ports.Equal(tc.want) {
			t.Errorf("%s: ports = %v, want %v", tc.name, cs[0].Ports, tc.want)
		}
		if cs[1].Ports.IsNull() || len(cs[1].Ports.Elements()) != 0 {
			t.Errorf("%s: no ports = %v, want an empty list", tc.name, cs[1].Ports)
		}
	}
}
