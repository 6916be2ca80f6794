package resources_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// fakeDeployments is a DeploymentService that "rolls out" at once: what
// the provider does with agentd's answers (waiting for the observed
// version, failures, planned nodes, deletion), without agentd. A template
// whose first container has env FAIL is rolled back.
type fakeDeployments struct {
	herdv1.UnimplementedDeploymentServiceServer
	mu      sync.Mutex
	deps    map[string]*herdv1.Deployment
	version uint64
	// gets counts GetDeployment calls per key after a write; the status
	// catches up only on the second (the driver is not instant).
	gets    map[string]int
	dryRuns int
}

var fakeNodes = []string{"n1", "n2", "n3"}

func newFakeDeployments(t *testing.T) (nodeID string, f *fakeDeployments) {
	t.Helper()
	f = &fakeDeployments{deps: map[string]*herdv1.Deployment{}, gets: map[string]int{}}
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	herdv1.RegisterDeploymentServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return "fake@unix://" + sock, f
}

func (f *fakeDeployments) ApplyDeployment(_ context.Context, req *herdv1.ApplyDeploymentRequest) (*herdv1.ApplyDeploymentResponse, error) {
	if errs := spec.ValidateDeployment(req.GetSpec()); len(errs) > 0 {
		return nil, status.Error(codes.InvalidArgument, errs.Error())
	}
	s := spec.DefaultDeployment(req.GetSpec())
	key := s.GetNamespace() + "/" + s.GetName()
	if mp := s.GetPlacement().GetMaxPerNode(); spec.MaxPerNodeError(int(s.GetReplicas()), int(mp), len(fakeNodes)) != "" {
		st, _ := status.New(codes.FailedPrecondition, "cannot place "+key+": "+
			spec.MaxPerNodeError(int(s.GetReplicas()), int(mp), len(fakeNodes))).WithDetails(
			&errdetails.ErrorInfo{Domain: herdv1.ErrorDomain, Reason: herdv1.ReasonUnplaceable})
		return nil, st.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.deps[key]
	d := &herdv1.Deployment{Spec: s, Uid: "uid-" + key, Revision: 1}
	have := 0
	if old != nil {
		d.Uid, d.Revision, d.Status = old.GetUid(), old.GetRevision(), old.GetStatus()
		have = len(old.GetStatus().GetReplicaStatus())
		if !proto.Equal(old.GetSpec().GetTemplate(), s.GetTemplate()) {
			d.Revision++
			have = 0
		}
	}
	plan := &herdv1.RolloutPlan{ToRevision: d.GetRevision(), Summary: fmt.Sprintf("%s: revision %d, %d replicas", key, d.GetRevision(), s.GetReplicas())}
	for i := have; i < int(s.GetReplicas()); i++ {
		node := fakeNodes[i%len(fakeNodes)]
		if i < len(req.GetPlacementHint()) {
			node = req.GetPlacementHint()[i]
		}
		plan.Replicas = append(plan.Replicas, &herdv1.PlannedReplica{Node: node, Revision: d.GetRevision(), Action: "create"})
	}
	if req.GetDryRun() {
		f.dryRuns++
		return &herdv1.ApplyDeploymentResponse{Deployment: d, Plan: plan}, nil
	}
	f.version++
	d.Version = f.version
	f.deps[key] = d
	f.gets[key] = 0
	return &herdv1.ApplyDeploymentResponse{Deployment: proto.Clone(d).(*herdv1.Deployment), Changed: true, Plan: plan}, nil
}

// converge is the fake driver: the status of d's version.
func converge(d *herdv1.Deployment, old *herdv1.DeploymentStatus) *herdv1.DeploymentStatus {
	s := d.GetSpec()
	fail := s.GetTemplate().GetContainers()[0].GetEnv()["FAIL"] != "" && s.GetReplicas() > 0
	if fail {
		st := proto.Clone(old).(*herdv1.DeploymentStatus)
		st.Phase, st.Message, st.ObservedVersion, st.FailedRevision = spec.PhaseRolledBack,
			"replica web-2-xxxxx: readiness probe failed: HTTP 503\nlast log lines:\nboom", d.GetVersion(), d.GetRevision()
		return st
	}
	st := &herdv1.DeploymentStatus{CurrentRevision: d.GetRevision(), StableRevision: d.GetRevision(), Phase: spec.PhaseComplete,
		ObservedVersion: d.GetVersion(), Replicas: s.GetReplicas()}
	// Survivors of the same revision stay; new ones are named after the count.
	var keep []*herdv1.ReplicaStatus
	for _, r := range old.GetReplicaStatus() {
		if r.GetRevision() == d.GetRevision() && len(keep) < int(s.GetReplicas()) {
			keep = append(keep, r)
		}
	}
	for i := len(keep); i < int(s.GetReplicas()); i++ {
		pod := fmt.Sprintf("%s-%d-%05d", s.GetName(), d.GetRevision(), int(d.GetVersion())*100+i)
		keep = append(keep, &herdv1.ReplicaStatus{Pod: pod, Uid: "uid-" + pod, Node: fakeNodes[i%len(fakeNodes)],
			Revision: d.GetRevision(), Phase: "Running", Ready: true, Available: true})
	}
	st.ReplicaStatus = keep
	st.ReadyReplicas, st.UpdatedReplicas, st.AvailableReplicas = s.GetReplicas(), s.GetReplicas(), s.GetReplicas()
	return st
}

func (f *fakeDeployments) GetDeployment(_ context.Context, req *herdv1.GetDeploymentRequest) (*herdv1.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := req.GetNamespace() + "/" + req.GetName()
	d, ok := f.deps[key]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "deployment %s not found", key)
	}
	f.gets[key]++
	if f.gets[key] >= 2 && d.GetStatus().GetObservedVersion() < d.GetVersion() {
		d.Status = converge(d, d.GetStatus())
	}
	return proto.Clone(d).(*herdv1.Deployment), nil
}

func (f *fakeDeployments) DeleteDeployment(_ context.Context, req *herdv1.DeleteDeploymentRequest) (*herdv1.DeleteDeploymentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := req.GetNamespace() + "/" + req.GetName()
	_, ok := f.deps[key]
	delete(f.deps, key)
	return &herdv1.DeleteDeploymentResponse{Existed: ok}, nil
}

func fakeDeploymentHCL(nodeID string, replicas int, env, placement string) string {
	return fmt.Sprintf(`
resource "herd_deployment" "web" {
  node     = %q
  name     = "web"
  replicas = %d
  selector = { app = "web" }
  template {
    labels = { app = "web" }
    container {
      name   = "app"
      image  = "busybox:1.36"
      env    = { %s }
      cpu    = "100m"
      memory = "32Mi"
      port {
        name           = "http"
        container_port = 8080
      }
    }
  }
  placement = %s
}
`, nodeID, replicas, env, placement)
}

// What the provider makes of agentd's answers, against a fake
// DeploymentService: planned_nodes from the dry run kept through apply,
// waiting for the driver, in-place scale and template change, a rollback
// as an error with the status message and the state at the old revision,
// an unplaceable plan, import and deletion.
func TestDeploymentAgainstFakeService(t *testing.T) {
	needCLI(t)
	nodeID, f := newFakeDeployments(t)
	rec := &warningRecorder{}
	const res = "herd_deployment.web"
	var uid1, pod0 string
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: rec.factories(),
		CheckDestroy: func(*terraform.State) error {
			if _, err := f.GetDeployment(context.Background(), &herdv1.GetDeploymentRequest{Namespace: "default", Name: "web"}); status.Code(err) != codes.NotFound {
				return fmt.Errorf("after destroy: %v", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: fakeDeploymentHCL(nodeID, 3, `V = "1"`, `{ strategy = "spread" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					expectWarning{rec: rec, parts: []string{"Deployment rollout plan", "default/web: revision 1, 3 replicas"}},
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "1"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					resource.TestCheckResourceAttr(res, "replica_status.#", "3"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "3"),
					resource.TestCheckResourceAttr(res, "planned_nodes.0", "n1"),
					resource.TestCheckResourceAttr(res, "strategy.max_surge", "1"),
					resource.TestCheckResourceAttr(res, "strategy.auto_rollback", "true"),
					resource.TestCheckResourceAttr(res, "placement.max_per_node", "0"),
					resource.TestCheckResourceAttr(res, "template.restart_policy", "Always"),
					resource.TestCheckResourceAttrWith(res, "uid", record(&uid1)),
					resource.TestCheckResourceAttrWith(res, "replica_status.0.pod", record(&pod0)),
				),
			},
			{
				// A scale: same revision, the first replica survives.
				Config: fakeDeploymentHCL(nodeID, 5, `V = "1"`, `{ strategy = "spread" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "1"),
					resource.TestCheckResourceAttr(res, "replica_status.#", "5"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "2"),
					resource.TestCheckResourceAttrWith(res, "uid", equals(&uid1)),
					resource.TestCheckResourceAttrWith(res, "replica_status.0.pod", equals(&pod0)),
				),
			},
			{
				Config: fakeDeploymentHCL(nodeID, 5, `V = "2"`, `{ strategy = "spread" }`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "updated_replicas", "5"),
				),
			},
			{
				Config: fakeDeploymentHCL(nodeID, 2, `V = "2"`, `{ strategy = "spread" }`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseComplete),
					resource.TestCheckResourceAttr(res, "replica_status.#", "2"),
					resource.TestCheckResourceAttr(res, "planned_nodes.#", "0"),
				),
			},
			{
				// A revision that fails is rolled back: an error with the
				// status message; the state records revision 2, RolledBack.
				Config:      fakeDeploymentHCL(nodeID, 2, `V = "2", FAIL = "1"`, `{ strategy = "spread" }`),
				ExpectError: errRe("Deployment rollout failed", "revision 3", "readiness probe failed: HTTP 503", "boom", "rolled back to revision 2"),
			},
			{
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "revision", "2"),
					resource.TestCheckResourceAttr(res, "phase", spec.PhaseRolledBack),
				),
			},
			{
				// The status alone plans nothing: the failed template stays
				// the deployment's until the configuration changes.
				Config:   fakeDeploymentHCL(nodeID, 2, `V = "2", FAIL = "1"`, `{ strategy = "spread" }`),
				PlanOnly: true,
			},
			{
				Config:      fakeDeploymentHCL(nodeID, 5, `V = "2", FAIL = "1"`, `{ strategy = "spread", max_per_node = 1 }`),
				PlanOnly:    true,
				ExpectError: errRe("Deployment does not fit the cluster", "max_per_node = 1 allows at most 3 replicas"),
			},
			{
				ResourceName:            res,
				ImportState:             true,
				ImportStateId:           "default/web@" + nodeID,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"planned_nodes"},
			},
		},
	})
}

// fakeStorageHCL is herd_deployment.web with a template that writes
// volume (an HCL expression) beside two empty_dirs and a config file,
// restarting on config changes; emptyDirs false leaves the empty_dirs and
// their mounts out.
func fakeStorageHCL(nodeID, volume string, emptyDirs bool) string {
	dirs, mounts := "", ""
	if emptyDirs {
		dirs = `
    empty_dir {
      name       = "scratch"
      medium     = "memory"
      size_limit = "8Mi"
    }
    empty_dir {
      name = "disk"
    }`
		mounts = `
      volume_mount {
        empty_dir = "scratch"
        path      = "/scratch"
      }
      volume_mount {
        empty_dir = "disk"
        path      = "/disk"
      }`
	}
	return fmt.Sprintf(`
resource "herd_deployment" "web" {
  node     = %q
  name     = "web"
  replicas = 1
  selector = { app = "web" }
  template {
    labels                   = { app = "web" }
    restart_on_config_change = true%s
    container {
      name  = "app"
      image = "busybox:1.36"
      volume_mount {
        volume = %s
        path   = "/data"
      }%s
      config_file {
        path    = "/etc/app/conf"
        content = "one"
      }
    }
  }
}
`, nodeID, dirs, volume, mounts)
}

// fakeTemplate checks the template the fake service was last given.
func fakeTemplate(f *fakeDeployments, check func(*herdv1.PodSpec) error) resource.TestCheckFunc {
	return func(*terraform.State) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, ok := f.deps["default/web"]
		if !ok {
			return fmt.Errorf("the fake has no deployment default/web")
		}
		return check(d.GetSpec().GetTemplate())
	}
}

// A template's empty_dirs, restart_on_config_change and volume mounts
// reach agentd as herd_pod's do: the volume by name whatever its
// spelling, the empty_dirs with their medium (disk by default), and the
// state read back plans nothing. Switching the volume between its id
// and its name is an update that leaves the spec, the revision and the
// replica alone; dropping the empty_dirs rolls out a new revision.
func TestDeploymentStorageAgainstFakeService(t *testing.T) {
	needCLI(t)
	nodeID, f := newFakeDeployments(t)
	const res = "herd_deployment.web"
	volumeID := "n1@127.0.0.1:1/default/data"
	var pod0 string
	wantTemplate := func(dirs int) func(*herdv1.PodSpec) error {
		return func(s *herdv1.PodSpec) error {
			if !s.GetRestartOnConfigChange() {
				return fmt.Errorf("restart_on_config_change not sent: %v", s)
			}
			if s.GetNamespace() != "" {
				return fmt.Errorf("template namespace %q, want none (the deployment's)", s.GetNamespace())
			}
			if m := s.GetContainers()[0].GetVolumeMounts()[0]; m.GetVolume() != "data" || m.GetPath() != "/data" || m.GetReadOnly() {
				return fmt.Errorf("volume mount %v, want volume data at /data read-write", m)
			}
			var got []string
			for _, d := range s.GetEmptyDirs() {
				got = append(got, d.GetName()+":"+d.GetMedium()+":"+d.GetSizeLimit())
			}
			want := []string{"scratch:memory:8Mi", "disk:disk:"}[:dirs]
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("empty_dirs %v, want %v", got, want)
			}
			return nil
		}
	}
	sameReplica := func(volume string) resource.TestStep {
		return resource.TestStep{
			Config: fakeStorageHCL(nodeID, volume, true),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(res, "template.container.0.volume_mount.0.volume", strings.Trim(volume, `"`)),
				resource.TestCheckResourceAttr(res, "revision", "1"),
				resource.TestCheckResourceAttrWith(res, "replica_status.0.pod", equals(&pod0)),
				fakeTemplate(f, wantTemplate(2)),
			),
		}
	}
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{
			{
				Config: fakeStorageHCL(nodeID, strconv.Quote(volumeID), true),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "template.restart_on_config_change", "true"),
					resource.TestCheckResourceAttr(res, "template.empty_dir.#", "2"),
					resource.TestCheckResourceAttr(res, "template.empty_dir.1.medium", "disk"),
					resource.TestCheckNoResourceAttr(res, "template.empty_dir.1.size_limit"),
					resource.TestCheckResourceAttr(res, "template.container.0.volume_mount.0.volume", volumeID),
					resource.TestCheckResourceAttr(res, "revision", "1"),
					resource.TestCheckResourceAttrWith(res, "replica_status.0.pod", record(&pod0)),
					fakeTemplate(f, wantTemplate(2)),
				),
			},
			sameReplica(`"data"`),
			sameReplica(strconv.Quote(volumeID)),
			{
				// agentd knows the volume by name: that is what an import reads.
				ResourceName:            res,
				ImportState:             true,
				ImportStateId:           "default/web@" + nodeID,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"planned_nodes", "template.container.0.volume_mount.0.volume"},
			},
			{
				Config: fakeStorageHCL(nodeID, `"data"`, false),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(res, "template.empty_dir.#", "0"),
					resource.TestCheckResourceAttr(res, "revision", "2"),
					fakeTemplate(f, wantTemplate(0)),
				),
			},
		},
	})
}
