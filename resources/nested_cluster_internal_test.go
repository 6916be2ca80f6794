package resources

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

func machinesObject(replicas int64, cpu, memory, image string, dv types.String) types.Object {
	return types.ObjectValueMust(nestedMachinesAttrTypes, map[string]attr.Value{
		"replicas":         types.Int64Value(replicas),
		"cpu":              types.StringValue(cpu),
		"memory":           types.StringValue(memory),
		"image":            types.StringValue(image),
		"data_volume_size": dv,
	})
}

// testClusterModel is a planned herd_cluster with every default applied.
func testClusterModel() nestedClusterModel {
	return nestedClusterModel{
		Node:               types.StringValue("node-1@10.0.0.5:7443"),
		Name:               types.StringValue("dev"),
		KubernetesVersion:  types.StringValue("1.34.3"),
		ControlPlane:       machinesObject(1, "2", "4Gi", "reg/node:1.34.3", types.StringNull()),
		Workers:            machinesObject(2, "2", "4096Mi", "reg/node:1.34.3", types.StringValue("20Gi")),
		PodCIDR:            types.StringValue("10.200.0.0/16"),
		ServiceCIDR:        types.StringValue("10.201.0.0/16"),
		EndpointExposure:   types.StringValue("LoadBalancer"),
		NetworkBinding:     types.StringValue("bridge"),
		DeletionProtection: types.BoolValue(true),
		KeepOnFailure:      types.BoolValue(false),
		StepTimeout:        types.StringValue("10m"),
	}
}

func TestNestedSpecFromModel(t *testing.T) {
	conv, diags := nestedSpecFromModel(context.Background(), testClusterModel())
	if diags.HasError() || len(conv.unknown) > 0 || len(conv.errs) > 0 {
		t.Fatalf("diags %v unknown %v errs %v", diags, conv.unknown, conv.errs)
	}
	want := &herdv1.NestedClusterSpec{
		Name:               "dev",
		KubernetesVersion:  "1.34.3",
		ControlPlane:       &herdv1.NestedMachines{Replicas: 1, Cpu: "2", Memory: "4Gi", Image: "reg/node:1.34.3"},
		Workers:            &herdv1.NestedMachines{Replicas: 2, Cpu: "2", Memory: "4096Mi", Image: "reg/node:1.34.3", DataVolumeSize: "20Gi"},
		PodCidr:            "10.200.0.0/16",
		ServiceCidr:        "10.201.0.0/16",
		EndpointExposure:   "LoadBalancer",
		NetworkBinding:     "bridge",
		DeletionProtection: true,
		StepTimeoutSeconds: 600,
	}
	if !proto.Equal(conv.spec, want) {
		t.Fatalf("spec\n got %v\nwant %v", conv.spec, want)
	}
	if errs := conv.validate(); len(errs) > 0 {
		t.Fatalf("valid spec refused: %v", errs)
	}
}

// Null optional values (a configuration) take the schema's defaults, so
// that ValidateConfig checks what will be applied.
func TestNestedSpecFromConfigDefaults(t *testing.T) {
	m := testClusterModel()
	m.EndpointExposure, m.NetworkBinding, m.StepTimeout = types.StringNull(), types.StringNull(), types.StringNull()
	m.DeletionProtection, m.KeepOnFailure = types.BoolNull(), types.BoolNull()
	m.ControlPlane = types.ObjectValueMust(nestedMachinesAttrTypes, map[string]attr.Value{
		"replicas": types.Int64Null(), "cpu": types.StringNull(), "memory": types.StringNull(),
		"image": types.StringValue("reg/node:1.34.3"), "data_volume_size": types.StringNull(),
	})
	conv, diags := nestedSpecFromModel(context.Background(), m)
	if diags.HasError() {
		t.Fatal(diags)
	}
	s := conv.spec
	if s.GetEndpointExposure() != "LoadBalancer" || s.GetNetworkBinding() != "bridge" || s.GetStepTimeoutSeconds() != 600 ||
		!s.GetDeletionProtection() || s.GetKeepOnFailure() {
		t.Fatalf("defaults not applied: %v", s)
	}
	cp := s.GetControlPlane()
	if cp.GetReplicas() != 1 || cp.GetCpu() != "2" || cp.GetMemory() != "4Gi" {
		t.Fatalf("control plane defaults not applied: %v", cp)
	}
	if errs := conv.validate(); len(errs) > 0 {
		t.Fatalf("valid spec refused: %v", errs)
	}
}

// Unknown values are not checked, nor is anything below an unknown block.
func TestNestedSpecUnknownsNotChecked(t *testing.T) {
	m := testClusterModel()
	m.Name = types.StringUnknown()
	m.PodCIDR = types.StringUnknown()
	m.Workers = types.ObjectUnknown(nestedMachinesAttrTypes)
	m.StepTimeout = types.StringUnknown()
	m.ServiceCIDR = types.StringValue("10.200.0.0/24") // would overlap a known pod_cidr
	conv, diags := nestedSpecFromModel(context.Background(), m)
	if diags.HasError() {
		t.Fatal(diags)
	}
	if errs := conv.validate(); len(errs) > 0 {
		t.Fatalf("unknown values checked: %v", errs)
	}
}

func TestNestedAttributePath(t *testing.T) {
	for _, tt := range []struct {
		in   spec.Path
		want path.Path
	}{
		{spec.Path{}.Field("name"), path.Root("name")},
		{spec.Path{}.Field("workers").Field("replicas"), path.Root("workers").AtName("replicas")},
		{spec.Path{}.Field("step_timeout_seconds"), path.Root("step_timeout")},
	} {
		if got := nestedAttributePath(tt.in); !got.Equal(tt.want) {
			t.Errorf("%s: got %s, want %s", tt.in, got, tt.want)
		}
	}
}

// What agentd reports is rendered with the state's spelling of equal
// values, so a refresh shows no diff for "4096Mi" against "4Gi".
func TestSetFromClusterKeepsEquivalentSpellings(t *testing.T) {
	prior := testClusterModel()
	prior.StepTimeout = types.StringValue("600s")
	prior.PodCIDR = types.StringValue("10.200.0.0/16")
	cl := &herdv1.NestedCluster{
		Uid: "u1",
		Spec: &herdv1.NestedClusterSpec{
			Name: "dev", KubernetesVersion: "1.34.3",
			ControlPlane:       &herdv1.NestedMachines{Replicas: 1, Image: "reg/node:1.34.3"}, // agentd's defaults left empty
			Workers:            &herdv1.NestedMachines{Replicas: 3, Cpu: "2000m", Memory: "4Gi", Image: "reg/node:1.34.3", DataVolumeSize: "20480Mi"},
			PodCidr:            "10.200.0.0/16",
			ServiceCidr:        "10.201.0.0/16",
			DeletionProtection: false,
			StepTimeoutSeconds: 0,
		},
		Status: &herdv1.NestedClusterStatus{
			Phase: "Ready", Endpoint: "https://10.0.0.9:6443", CaCertificate: "PEM", HostNamespace: "herd-dev",
			Vms: []*herdv1.NestedVM{
				{Name: "dev-worker-1", Role: "worker", Phase: "Running", Ready: true, Ip: "10.1.0.3", NodeReady: true},
				{Name: "dev-cp-0", Role: "control-plane", Phase: "Running", Ready: true, Ip: "10.1.0.2", NodeReady: true},
				{Name: "dev-worker-0", Role: "worker", Phase: "Running", Ready: true, Ip: "10.1.0.4"},
			},
		},
	}
	m := prior
	m.setFromCluster(cl, prior)
	if !m.ControlPlane.Equal(prior.ControlPlane) {
		t.Errorf("control_plane: got %v, want %v", m.ControlPlane, prior.ControlPlane)
	}
	wantWorkers := machinesObject(3, "2", "4096Mi", "reg/node:1.34.3", types.StringValue("20Gi"))
	if !m.Workers.Equal(wantWorkers) {
		t.Errorf("workers: got %v, want %v", m.Workers, wantWorkers)
	}
	if m.StepTimeout.ValueString() != "600s" || m.EndpointExposure.ValueString() != "LoadBalancer" ||
		m.NetworkBinding.ValueString() != "bridge" || m.DeletionProtection.ValueBool() {
		t.Errorf("got step_timeout %s exposure %s binding %s protection %s", m.StepTimeout, m.EndpointExposure,
			m.NetworkBinding, m.DeletionProtection)
	}
	var names []string
	for _, v := range m.VMs.Elements() {
		names = append(names, v.(types.Object).Attributes()["name"].(types.String).ValueString())
	}
	if got := strings.Join(names, ","); got != "dev-cp-0,dev-worker-0,dev-worker-1" {
		t.Errorf("vms in order %s", got)
	}
	if m.Phase.ValueString() != "Ready" || m.UID.ValueString() != "u1" || m.HostNamespace.ValueString() != "herd-dev" {
		t.Errorf("status: %v %v %v", m.Phase, m.UID, m.HostNamespace)
	}
	// Another value is shown as agentd spells it.
	cl.Spec.StepTimeoutSeconds = 90
	m.setFromCluster(cl, prior)
	if m.StepTimeout.ValueString() != "1m30s" {
		t.Errorf("step_timeout 90s rendered %s", m.StepTimeout)
	}
}

func TestNestedReplacePaths(t *testing.T) {
	ctx := context.Background()
	state := testClusterModel()
	withWorkers := func(f func(map[string]attr.Value)) types.Object {
		a := map[string]attr.Value{}
		for k, v := range state.Workers.Attributes() {
			a[k] = v
		}
		f(a)
		return types.ObjectValueMust(nestedMachinesAttrTypes, a)
	}
	// A cluster without workers may get its first image in place.
	t.Run("image for a cluster without workers", func(t *testing.T) {
		st := testClusterModel()
		st.Workers = types.ObjectValueMust(nestedMachinesAttrTypes, map[string]attr.Value{
			"replicas": types.Int64Value(0), "cpu": types.StringValue("2"), "memory": types.StringValue("4096Mi"),
			"image": types.StringNull(), "data_volume_size": types.StringValue("20Gi"),
		})
		if got := nestedReplacePaths(ctx, testClusterModel(), st); len(got) > 0 {
			t.Fatalf("replace paths %v, want none", got)
		}
	})
	for _, tt := range []struct {
		name   string
		change func(*nestedClusterModel)
		want   string
	}{
		{"nothing", func(*nestedClusterModel) {}, ""},
		{"workers.replicas", func(m *nestedClusterModel) {
			m.Workers = withWorkers(func(a map[string]attr.Value) { a["replicas"] = types.Int64Value(5) })
		}, ""},
		{"in-place attributes", func(m *nestedClusterModel) {
			m.DeletionProtection = types.BoolValue(false)
			m.KeepOnFailure = types.BoolValue(true)
			m.StepTimeout = types.StringValue("20m")
		}, ""},
		{"node address only", func(m *nestedClusterModel) { m.Node = types.StringValue("node-1@10.0.0.6:7443") }, ""},
		{"node name", func(m *nestedClusterModel) { m.Node = types.StringValue("node-2@10.0.0.5:7443") }, "node"},
		{"node unknown", func(m *nestedClusterModel) { m.Node = types.StringUnknown() }, "node"},
		{"workers.memory", func(m *nestedClusterModel) {
			m.Workers = withWorkers(func(a map[string]attr.Value) { a["memory"] = types.StringValue("8Gi") })
		}, "workers.memory"},
		{"workers.data_volume_size removed", func(m *nestedClusterModel) {
			m.Workers = withWorkers(func(a map[string]attr.Value) { a["data_volume_size"] = types.StringNull() })
		}, "workers.data_volume_size"},
		{"control plane replicas and image", func(m *nestedClusterModel) {
			m.ControlPlane = machinesObject(3, "2", "4Gi", "reg/node:1.34.4", types.StringNull())
		}, "control_plane.image,control_plane.replicas"},
		{"version and ranges", func(m *nestedClusterModel) {
			m.KubernetesVersion = types.StringValue("1.35.0")
			m.PodCIDR = types.StringValue("10.210.0.0/16")
			m.NetworkBinding = types.StringValue("passt")
		}, "kubernetes_version,network_binding,pod_cidr"},
		{"first worker image (agentd allows it)", func(m *nestedClusterModel) {
			m.Workers = withWorkers(func(a map[string]attr.Value) { a["image"] = types.StringValue("reg/other:1") })
		}, "workers.image"},
		{"workers unknown", func(m *nestedClusterModel) { m.Workers = types.ObjectUnknown(nestedMachinesAttrTypes) }, "workers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := testClusterModel()
			tt.change(&plan)
			var got []string
			for _, p := range nestedReplacePaths(ctx, plan, state) {
				got = append(got, p.String())
			}
			sortStrings(got)
			if strings.Join(got, ",") != tt.want {
				t.Fatalf("replace paths %v, want %q", got, tt.want)
			}
		})
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestParseNestedClusterID(t *testing.T) {
	for _, tt := range []struct {
		id, name, node string
		wantErr        bool
	}{
		{id: "dev@node-1@10.0.0.5:7443", name: "dev", node: "node-1@10.0.0.5:7443"},
		{id: "dev@node-1@unix:///run/herd/agentd.sock", name: "dev", node: "node-1@unix:///run/herd/agentd.sock"},
		{id: "dev", wantErr: true},
		{id: "@node-1@10.0.0.5:7443", wantErr: true},
		{id: "Dev@node-1@10.0.0.5:7443", wantErr: true},
		{id: "dev@node-1", wantErr: true},
	} {
		name, node, err := parseNestedClusterID(tt.id)
		if tt.wantErr != (err != nil) || (err == nil && (name != tt.name || node != tt.node)) {
			t.Errorf("%s: got %q %q %v", tt.id, name, node, err)
		}
		if err == nil && nestedClusterID(name, node) != tt.id {
			t.Errorf("%s: id round trip gives %s", tt.id, nestedClusterID(name, node))
		}
	}
}

// fakeNested answers GetNestedCluster from a script of clusters.
type fakeNested struct {
	herdv1.NestedClusterServiceClient
	mu     sync.Mutex
	script []*herdv1.NestedCluster
	calls  int
}

func (f *fakeNested) GetNestedCluster(context.Context, *herdv1.GetNestedClusterRequest, ...grpc.CallOption) (*herdv1.NestedCluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := min(f.calls, len(f.script)-1)
	f.calls++
	return f.script[i], nil
}

func clusterIn(phase, step, msg string, workers int) *herdv1.NestedCluster {
	vms := []*herdv1.NestedVM{{Name: "cp-0", Role: "control-plane"}}
	for i := 0; i < workers; i++ {
		vms = append(vms, &herdv1.NestedVM{Name: "w-" + string(rune('0'+i)), Role: "worker"})
	}
	return &herdv1.NestedCluster{
		Spec:   &herdv1.NestedClusterSpec{Name: "dev"},
		Status: &herdv1.NestedClusterStatus{Phase: phase, Step: step, Message: msg, Vms: vms, HostNamespace: "herd-dev"},
	}
}

func TestWaitNestedReady(t *testing.T) {
	old := nestedPollInterval
	nestedPollInterval = time.Millisecond
	t.Cleanup(func() { nestedPollInterval = old })
	s := &herdv1.NestedClusterSpec{Name: "dev", ControlPlane: &herdv1.NestedMachines{Replicas: 1},
		Workers: &herdv1.NestedMachines{Replicas: 2}}
	ctx := context.Background()

	// Ready with the old worker count is not done: agentd may not have
	// started scaling yet.
	f := &fakeNested{script: []*herdv1.NestedCluster{
		clusterIn("Ready", "", "", 1), clusterIn("Scaling", "workers", "", 1), clusterIn("Ready", "", "", 2),
	}}
	cl, err := waitNestedReady(ctx, f, clusterIn("Ready", "", "", 1), s)
	if err != nil || countVMs(cl.GetStatus().GetVms(), "worker") != 2 {
		t.Fatalf("got %v %v", cl, err)
	}

	f = &fakeNested{script: []*herdv1.NestedCluster{
		clusterIn("Creating", "control plane", "", 0), clusterIn("Failed", "workers", "VM dev-w-0: ErrImagePull", 0),
	}}
	_, err = waitNestedReady(ctx, f, clusterIn("Creating", "pki", "", 0), s)
	var failed *nestedFailedError
	if !errors.As(err, &failed) {
		t.Fatalf("want a nestedFailedError, got %v", err)
	}
	d := failed.detail("node-1@10.0.0.5:7443", false)
	for _, want := range []string{`Cluster "dev"`, `failed at step "workers"`, "ErrImagePull", "removed every host object"} {
		if !strings.Contains(d, want) {
			t.Errorf("detail %q lacks %q", d, want)
		}
	}
	if d := failed.detail("node-1@10.0.0.5:7443", true); !strings.Contains(d, `kept what it made (keep_on_failure), in host namespace "herd-dev"`) {
		t.Errorf("detail with keep_on_failure: %q", d)
	}

	f = &fakeNested{script: []*herdv1.NestedCluster{clusterIn("Creating", "control plane", "waiting for cp-0", 0)}}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	cl, err = waitNestedReady(cctx, f, nil, s)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	if p := progress(cl); p != `phase Creating, step in progress "control plane": waiting for cp-0` {
		t.Fatalf("progress %q", p)
	}
}

func TestParseStepTimeout(t *testing.T) {
	for in, want := range map[string]int32{"10s": 10, "10m": 600, "1h30m": 5400, "2h": 7200} {
		if got, err := parseStepTimeout(in); err != nil || got != want {
			t.Errorf("%s: got %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "10", "0s", "9s", "-1m", "10500ms", "2h0m1s"} {
		if _, err := parseStepTimeout(in); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}
