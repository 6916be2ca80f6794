package spec

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func validDeployment() *herdv1.DeploymentSpec {
	return &herdv1.DeploymentSpec{
		Name:     "web",
		Replicas: 3,
		Selector: map[string]string{"app": "web"},
		Template: &herdv1.PodSpec{
			Labels: map[string]string{"app": "web", "tier": "front"},
			Containers: []*herdv1.ContainerSpec{{
				Name: "web", Image: "nginx:1.27", Cpu: "1", Memory: "256Mi",
			}},
		},
	}
}

func TestValidateDeployment(t *testing.T) {
	tests := []mutationCase[herdv1.DeploymentSpec]{
		{name: "valid", mutate: func(*herdv1.DeploymentSpec) {}},
		{name: "zero replicas", mutate: func(s *herdv1.DeploymentSpec) { s.Replicas = 0 }},
		{name: "negative replicas", mutate: func(s *herdv1.DeploymentSpec) { s.Replicas = -1 }, wantPath: "replicas", wantMsg: "between 0 and 1000"},
		{name: "too many replicas", mutate: func(s *herdv1.DeploymentSpec) { s.Replicas = MaxReplicas + 1 }, wantPath: "replicas", wantMsg: "between 0 and 1000"},
		{name: "bad name", mutate: func(s *herdv1.DeploymentSpec) { s.Name = "Web_1" }, wantPath: "name"},
		{name: "long name", mutate: func(s *herdv1.DeploymentSpec) { s.Name = strings.Repeat("a", MaxDeploymentName+1) }, wantPath: "name", wantMsg: "at most 40"},
		{name: "bad namespace", mutate: func(s *herdv1.DeploymentSpec) { s.Namespace = "NS" }, wantPath: "namespace"},
		{name: "no selector", mutate: func(s *herdv1.DeploymentSpec) { s.Selector = nil }, wantPath: "selector", wantMsg: "at least one label"},
		{name: "no template", mutate: func(s *herdv1.DeploymentSpec) { s.Template = nil }, wantPath: "template", wantMsg: "required"},
		{name: "template labels missing a selector label", mutate: func(s *herdv1.DeploymentSpec) { s.Selector["track"] = "stable" },
			wantPath: "template.labels", wantMsg: "missing track=stable"},
		{name: "template label with another value", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Labels["app"] = "api" },
			wantPath: "template.labels", wantMsg: "missing app=web"},
		{name: "template named", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Name = "web" }, wantPath: "template.name", wantMsg: "herd names the replicas"},
		{name: "template with a deployment ref", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Deployment = &herdv1.DeploymentRef{Name: "web"} },
			wantPath: "template.deployment"},
		{name: "template reserved label", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Labels[LabelRevision] = "1" },
			wantPath: `template.labels["herd.io/revision"]`, wantMsg: "reserved"},
		{name: "template container without image", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Containers[0].Image = "" },
			wantPath: "template.containers[0].image"},
		{name: "request above limit", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Containers[0].CpuRequest = "2" },
			wantPath: "template.containers[0].cpu_request", wantMsg: "above the CPU limit 1"},
		{name: "memory request above limit", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Containers[0].MemoryRequest = "1Gi" },
			wantPath: "template.containers[0].memory_request", wantMsg: "above the memory limit 256Mi"},
		{name: "bad node_selector", mutate: func(s *herdv1.DeploymentSpec) { s.NodeSelector = map[string]string{"-bad": "x"} }, wantPath: `node_selector["-bad"]`},
		{name: "unknown strategy type", mutate: func(s *herdv1.DeploymentSpec) { s.Strategy = &herdv1.DeploymentStrategy{Type: "Recreate"} },
			wantPath: "strategy.type", wantMsg: `"Recreate"`},
		{name: "max_surge and max_unavailable both 0", mutate: func(s *herdv1.DeploymentSpec) {
			s.Strategy = &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(0), MaxUnavailable: proto.Int32(0)}
		}, wantPath: "strategy.max_surge", wantMsg: "must not both be 0"},
		{name: "blue-green with both 0 is fine", mutate: func(s *herdv1.DeploymentSpec) {
			s.Strategy = &herdv1.DeploymentStrategy{Type: StrategyBlueGreen, MaxSurge: proto.Int32(0), MaxUnavailable: proto.Int32(0)}
		}},
		{name: "surge 0 unavailable 1 is fine", mutate: func(s *herdv1.DeploymentSpec) {
			s.Strategy = &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(0), MaxUnavailable: proto.Int32(1)}
		}},
		{name: "negative max_surge", mutate: func(s *herdv1.DeploymentSpec) { s.Strategy = &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(-1)} },
			wantPath: "strategy.max_surge", wantMsg: "negative"},
		{name: "negative max_unavailable", mutate: func(s *herdv1.DeploymentSpec) {
			s.Strategy = &herdv1.DeploymentStrategy{MaxUnavailable: proto.Int32(-1)}
		}, wantPath: "strategy.max_unavailable", wantMsg: "negative"},
		{name: "negative min_ready_seconds", mutate: func(s *herdv1.DeploymentSpec) { s.Strategy = &herdv1.DeploymentStrategy{MinReadySeconds: -1} },
			wantPath: "strategy.min_ready_seconds", wantMsg: "between 0 and 3600"},
		{name: "min_ready_seconds not below the deadline", mutate: func(s *herdv1.DeploymentSpec) {
			s.Strategy = &herdv1.DeploymentStrategy{MinReadySeconds: 60, ProgressDeadlineSeconds: 60}
		}, wantPath: "strategy.min_ready_seconds", wantMsg: "below progress_deadline_seconds"},
		{name: "negative progress deadline", mutate: func(s *herdv1.DeploymentSpec) {
			s.Strategy = &herdv1.DeploymentStrategy{ProgressDeadlineSeconds: -1}
		}, wantPath: "strategy.progress_deadline_seconds"},
		{name: "unknown placement strategy", mutate: func(s *herdv1.DeploymentSpec) { s.Placement = &herdv1.Placement{Strategy: "random"} },
			wantPath: "placement.strategy", wantMsg: `"random"`},
		{name: "negative max_per_node", mutate: func(s *herdv1.DeploymentSpec) { s.Placement = &herdv1.Placement{MaxPerNode: -1} },
			wantPath: "placement.max_per_node", wantMsg: "0 (no limit) or more"},
	}
	runMutations(t, tests, validDeployment, ValidateDeployment, true)

	if errs := ValidateDeployment(nil); len(errs) != 1 {
		t.Errorf("nil spec: %v", errs)
	}
	// A defaulted spec validates as the original did.
	if errs := ValidateDeployment(DefaultDeployment(validDeployment())); len(errs) != 0 {
		t.Errorf("defaulted: %v", errs)
	}
}

func TestDefaultDeployment(t *testing.T) {
	d := DefaultDeployment(validDeployment())
	st := d.GetStrategy()
	if d.GetNamespace() != DefaultNamespace || d.GetPlacement().GetStrategy() != PlacementBinPack || st.GetType() != StrategyRollingUpdate ||
		st.MaxSurge == nil || st.GetMaxSurge() != 1 || st.MaxUnavailable == nil || st.GetMaxUnavailable() != 0 ||
		st.GetProgressDeadlineSeconds() != DefaultProgressDeadline || st.AutoRollback == nil || !st.GetAutoRollback() {
		t.Errorf("defaults: %v", d)
	}
	// Set values are kept, and the input is not changed.
	in := validDeployment()
	in.Strategy = &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(0), MaxUnavailable: proto.Int32(2), AutoRollback: proto.Bool(false)}
	d = DefaultDeployment(in)
	if d.GetStrategy().GetMaxSurge() != 0 || d.GetStrategy().GetMaxUnavailable() != 2 || d.GetStrategy().GetAutoRollback() {
		t.Errorf("set values lost: %v", d.GetStrategy())
	}
	if in.Namespace != "" || in.Placement != nil {
		t.Errorf("input changed: %v", in)
	}
}

func TestMaxPerNodeError(t *testing.T) {
	if m := MaxPerNodeError(4, 1, 3); m != "max_per_node = 1 allows at most 3 replicas on the 3 matching nodes, replicas = 4" {
		t.Errorf("got %q", m)
	}
	for _, c := range [][3]int{{3, 1, 3}, {10, 0, 1}, {0, 1, 0}} {
		if m := MaxPerNodeError(c[0], c[1], c[2]); m != "" {
			t.Errorf("MaxPerNodeError%v = %q, want none", c, m)
		}
	}
}

// Replicas are in the deployment's namespace: the template may not name
// another, and its secret references resolve in the deployment's.
func TestValidateDeploymentNamespace(t *testing.T) {
	mount := func(ref string) func(*herdv1.DeploymentSpec) {
		return func(s *herdv1.DeploymentSpec) {
			s.Namespace = "prod"
			s.Template.Containers[0].SecretMounts = []*herdv1.SecretMount{{Secret: ref}}
		}
	}
	tests := []mutationCase[herdv1.DeploymentSpec]{
		{name: "template in the deployment's", mutate: func(s *herdv1.DeploymentSpec) { s.Namespace = "prod"; s.Template.Namespace = "prod" }},
		{name: "template in another", mutate: func(s *herdv1.DeploymentSpec) { s.Namespace = "prod"; s.Template.Namespace = "dev" },
			wantPath: "template.namespace", wantMsg: `must be empty or "prod"`},
		{name: "template named, deployment default", mutate: func(s *herdv1.DeploymentSpec) { s.Template.Namespace = "prod" },
			wantPath: "template.namespace", wantMsg: `must be empty or "default"`},
		{name: "own secret", mutate: mount("db")},
		{name: "own secret qualified", mutate: mount("prod/db")},
		{name: "other secret", mutate: mount("default/db"),
			wantPath: "template.containers[0].secret_mounts[0].secret", wantMsg: `a pod in namespace "prod" may use only secrets of its own namespace`},
	}
	runMutations(t, tests, validDeployment, ValidateDeployment, true)
}

// Volumes are node-local with one writer: a template may mount them, but
// one that writes a volume runs at most one replica and never BlueGreen
// (both would start a second writer). Read-only mounts, empty_dirs and
// config files leave the deployment as it is.
func TestValidateDeploymentVolumes(t *testing.T) {
	writes := func(s *herdv1.DeploymentSpec) {
		s.Template.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}}
	}
	tests := []mutationCase[herdv1.DeploymentSpec]{
		{name: "config files", mutate: func(s *herdv1.DeploymentSpec) {
			s.Template.Containers[0].ConfigFiles = []*herdv1.ConfigFile{{Path: "/etc/nginx/conf.d/web.conf", Content: "server {}"}}
		}},
		{name: "an empty_dir", mutate: func(s *herdv1.DeploymentSpec) {
			s.Template.EmptyDirs = []*herdv1.EmptyDir{{Name: "cache", SizeLimit: "64Mi"}}
			s.Template.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{EmptyDir: "cache", Path: "/var/cache/nginx"}}
		}},
		{name: "a volume written by one replica", mutate: func(s *herdv1.DeploymentSpec) {
			writes(s)
			s.Replicas = 1
		}},
		{name: "a volume written by no replica yet", mutate: func(s *herdv1.DeploymentSpec) {
			writes(s)
			s.Replicas = 0
		}},
		{name: "a volume written by three replicas", mutate: writes,
			wantPath: "replicas", wantMsg: "must be 0 or 1: the template writes persistent volume data"},
		{name: "a written volume with BlueGreen", mutate: func(s *herdv1.DeploymentSpec) {
			writes(s)
			s.Replicas = 1
			s.Strategy = &herdv1.DeploymentStrategy{Type: StrategyBlueGreen}
		}, wantPath: "strategy.type", wantMsg: "would start a second writer"},
		{name: "a written volume ignores max_surge", mutate: func(s *herdv1.DeploymentSpec) {
			writes(s)
			s.Replicas = 1
			s.Strategy = &herdv1.DeploymentStrategy{MaxSurge: proto.Int32(3)}
		}},
		{name: "a volume read by three replicas of a second container", mutate: func(s *herdv1.DeploymentSpec) {
			s.Template.EmptyDirs = []*herdv1.EmptyDir{{Name: "cache"}}
			s.Template.Containers = append(s.Template.Containers, &herdv1.ContainerSpec{Name: "side", Image: "busybox",
				VolumeMounts: []*herdv1.VolumeMount{{EmptyDir: "cache", Path: "/cache"}, {Volume: "data", Path: "/data", ReadOnly: true}}})
		}},
		{name: "a volume of another namespace", mutate: func(s *herdv1.DeploymentSpec) {
			s.Template.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "prod/data", Path: "/data", ReadOnly: true}}
		}, wantPath: "template.containers[0].volume_mounts[0].volume"},
		{name: "a bad empty_dir is the template's error", mutate: func(s *herdv1.DeploymentSpec) {
			s.Template.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{EmptyDir: "nope", Path: "/data"}}
		}, wantPath: "template.containers[0].volume_mounts[0].empty_dir", wantMsg: `the pod has no empty_dir "nope"`},
	}
	runMutations(t, tests, validDeployment, ValidateDeployment, true)
}
