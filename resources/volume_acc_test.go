package resources_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// startVolumeNode starts agentd `name` with a volume directory of its
// own, and deletes whatever volumes are left when the test ends (their
// loop devices and mounts with them), before agentd stops.
func startVolumeNode(t *testing.T, name string) (*accNode, herdv1.VolumeServiceClient) {
	t.Helper()
	dir := t.TempDir()
	n := startNode(t, name, func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--volume-dir", dir)
	})
	vc := herdv1.NewVolumeServiceClient(n.conn)
	needVolumeService(t, vc)
	t.Cleanup(func() { removeVolumes(t, vc) })
	return n, vc
}

// needVolumeService skips the test ONLY when the agentd under test does
// not implement VolumeService at all (codes.Unimplemented): the gate for
// the time the provider's resource existed before agentd's side. Any other
// answer than NotFound for a missing volume fails the test.
func needVolumeService(t *testing.T, vc herdv1.VolumeServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := vc.GetVolume(ctx, &herdv1.GetVolumeRequest{Namespace: "default", Name: "gate-probe"})
	switch status.Code(err) {
	case codes.Unimplemented:
		t.Skipf("agentd does not implement VolumeService yet: %v", err)
	case codes.NotFound:
	default:
		t.Fatalf("GetVolume of a missing volume: %v, want NotFound", err)
	}
}

// removeVolumes deletes every volume of the node, protected or not.
func removeVolumes(t *testing.T, vc herdv1.VolumeServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := vc.ListVolumes(ctx, &herdv1.ListVolumesRequest{})
	if err != nil {
		t.Errorf("cleanup: list volumes: %v", err)
		return
	}
	for _, v := range list.GetVolumes() {
		s := v.GetSpec()
		if s.GetDeletionProtection() {
			off := &herdv1.VolumeSpec{Namespace: s.GetNamespace(), Name: s.GetName(), Size: s.GetSize()}
			if _, err := vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: off}); err != nil {
				t.Errorf("cleanup: unprotect volume %s/%s: %v", s.GetNamespace(), s.GetName(), err)
				continue
			}
		}
		if _, err := vc.DeleteVolume(ctx, &herdv1.DeleteVolumeRequest{Namespace: s.GetNamespace(), Name: s.GetName()}); err != nil {
			t.Errorf("cleanup: delete volume %s/%s: %v", s.GetNamespace(), s.GetName(), err)
		}
	}
}

// volumeHCL is herd_volume.v on the node with the given body.
func volumeHCL(n *accNode, body string) string {
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_volume" "v" {
  node = herd_node.n.id
%s
}
`, body)
}

// nodeVolume checks the volume default/name on the node with GetVolume:
// its uid is the state's, its size and protection as given.
func nodeVolume(vc herdv1.VolumeServiceClient, name string, sizeBytes int64, protected bool) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		v, err := vc.GetVolume(context.Background(), &herdv1.GetVolumeRequest{Namespace: "default", Name: name})
		if err != nil {
			return fmt.Errorf("GetVolume %s: %w", name, err)
		}
		uid, err := stateAttr(s, "herd_volume.v", "uid")
		if err != nil {
			return err
		}
		capacity, err := stateAttr(s, "herd_volume.v", "capacity_bytes")
		if err != nil {
			return err
		}
		switch {
		case v.GetUid() != uid:
			return fmt.Errorf("node's volume has uid %s, the state %s", v.GetUid(), uid)
		case v.GetSizeBytes() != sizeBytes:
			return fmt.Errorf("node's volume has size_bytes %d, want %d", v.GetSizeBytes(), sizeBytes)
		case strconv.FormatInt(v.GetStatus().GetCapacityBytes(), 10) != capacity:
			return fmt.Errorf("node's volume has capacity_bytes %d, the state %s", v.GetStatus().GetCapacityBytes(), capacity)
		case v.GetSpec().GetDeletionProtection() != protected:
			return fmt.Errorf("node's volume has deletion_protection %t, want %t", v.GetSpec().GetDeletionProtection(), protected)
		}
		return nil
	}
}

// greaterThan checks that an integer attribute grew past a recorded one.
func greaterThan(old *string) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		o, err := strconv.ParseInt(*old, 10, 64)
		if err != nil {
			return fmt.Errorf("recorded value %q: %w", *old, err)
		}
		if n <= o {
			return fmt.Errorf("got %d, want more than %d", n, o)
		}
		return nil
	}
}

// The life of a volume on a real agentd (real image files, loop devices
// and ext4): created protected by default; grown in place (same uid, more
// capacity); the same bytes spelled otherwise change nothing on the node;
// a shrink, a replacement and a destroy are refused at plan while
// deletion_protection is true; imported by id and by identity; unprotected
// in place; deleted behind Terraform's back and created again; deleted and
// created anew by someone else (another uid), which Terraform refuses to
// adopt without an import; destroyed.
func TestAccVolumeLifecycle(t *testing.T) {
	t.Parallel()
	n, vc := startVolumeNode(t, "vol-life")
	id := n.agent.ID() + "/default/data"
	var uid1, cap1, cap2, uid2 string
	const (
		mi16 = 16 << 20
		mi32 = 32 << 20
	)
	protectedHCL := volumeHCL(n, `  name = "data"
  size = "32768Ki"`)
	unprotectedHCL := volumeHCL(n, `  name = "data"
  size = "32768Ki"
  deletion_protection = false`)

	steps := []resource.TestStep{
		// 1. Created, protected by default, no pod on it.
		{
			Config: volumeHCL(n, `  name = "data"
  size = "16Mi"`),
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_volume.v", "id", id),
				resource.TestCheckResourceAttr("herd_volume.v", "namespace", "default"),
				resource.TestCheckResourceAttr("herd_volume.v", "deletion_protection", "true"),
				resource.TestCheckResourceAttr("herd_volume.v", "size", "16Mi"),
				resource.TestCheckResourceAttr("herd_volume.v", "size_bytes", strconv.Itoa(mi16)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "capacity_bytes", atLeast(1)),
				resource.TestCheckResourceAttr("herd_volume.v", "phase", "Available"),
				resource.TestCheckResourceAttr("herd_volume.v", "bound_to", ""),
				resource.TestCheckResourceAttr("herd_volume.v", "readers.#", "0"),
				resource.TestCheckResourceAttrWith("herd_volume.v", "used_bytes", atLeast(0)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", record(&uid1)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "capacity_bytes", record(&cap1)),
				nodeVolume(vc, "data", mi16, true),
			),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
		},
		// 2. Grown in place: the same volume, more room.
		{
			Config: volumeHCL(n, `  name = "data"
  size = "32Mi"`),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionUpdate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", equals(&uid1)),
				resource.TestCheckResourceAttr("herd_volume.v", "size_bytes", strconv.Itoa(mi32)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "capacity_bytes", greaterThan(&cap1)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "capacity_bytes", record(&cap2)),
				nodeVolume(vc, "data", mi32, true),
			),
		},
		// 3. The same bytes spelled otherwise: an update that changes
		// nothing on the node.
		{
			Config: protectedHCL,
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionUpdate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_volume.v", "size", "32768Ki"),
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", equals(&uid1)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "capacity_bytes", equals(&cap2)),
				nodeVolume(vc, "data", mi32, true),
			),
		},
		// 4. A shrink is refused at plan, at size.
		{
			Config: volumeHCL(n, `  name = "data"
  size = "16Mi"`),
			ExpectError: errRe("Volume cannot shrink", "size: a volume cannot shrink (from 32768Ki to 16Mi)"),
		},
		// 5. So is a replacement while protected...
		{
			Config: volumeHCL(n, `  name = "data2"
  size = "32Mi"`),
			ExpectError: errRe("Volume is protected from deletion", "Changing name replaces volume default/data",
				"set deletion_protection = false, apply, then apply the replacement"),
		},
		// 6. ...and a destroy.
		{
			Config:  protectedHCL,
			Destroy: true,
			ExpectError: errRe("Volume is protected from deletion", "deletion_protection = true",
				"set deletion_protection = false, apply, then destroy"),
		},
		// 7. Nothing of that reached the node.
		{
			Config: protectedHCL,
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", equals(&uid1)),
				nodeVolume(vc, "data", mi32, true),
			),
		},
		// 8. Imported by id, and by identity.
		{
			ResourceName:            "herd_volume.v",
			ImportState:             true,
			ImportStateId:           id,
			ImportStateVerify:       true,
			ImportStateVerifyIgnore: []string{"timeouts", "used_bytes"},
		},
		{
			Config:          requiredHerd + protectedHCL,
			ResourceName:    "herd_volume.v",
			ImportState:     true,
			ImportStateKind: resource.ImportBlockWithResourceIdentity,
		},
		// 9. Protection off, in place.
		{
			Config: unprotectedHCL,
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionUpdate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("herd_volume.v", "deletion_protection", "false"),
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", equals(&uid1)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "capacity_bytes", equals(&cap2)),
				nodeVolume(vc, "data", mi32, false),
			),
		},
		// 10. Deleted behind Terraform's back: the plan creates it.
		{
			PreConfig: func() {
				if _, err := vc.DeleteVolume(context.Background(), &herdv1.DeleteVolumeRequest{Namespace: "default", Name: "data", Uid: uid1}); err != nil {
					t.Fatalf("delete the volume behind Terraform's back: %v", err)
				}
			},
			Config: unprotectedHCL,
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionCreate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", differs(&uid1)),
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", record(&uid2)),
				nodeVolume(vc, "data", mi32, false),
			),
		},
		// 11. Deleted and created again by someone else: another uid,
		// other data. Terraform forgets its volume, and its creation
		// refuses to take the other one over, naming the import id.
		{
			PreConfig: func() {
				ctx := context.Background()
				if _, err := vc.DeleteVolume(ctx, &herdv1.DeleteVolumeRequest{Namespace: "default", Name: "data", Uid: uid2}); err != nil {
					t.Fatalf("delete the volume behind Terraform's back: %v", err)
				}
				spec := &herdv1.VolumeSpec{Namespace: "default", Name: "data", Size: "16Mi"}
				if _, err := vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: spec}); err != nil {
					t.Fatalf("create another volume under the name: %v", err)
				}
			},
			Config:      unprotectedHCL,
			ExpectError: errRe("Volume already exists", "import it with the id", id),
		},
		// 12. Once the other one is gone, the volume is created again;
		// the test's destroy then deletes it.
		{
			PreConfig: func() {
				if _, err := vc.DeleteVolume(context.Background(), &herdv1.DeleteVolumeRequest{Namespace: "default", Name: "data"}); err != nil {
					t.Fatalf("delete the other volume: %v", err)
				}
			},
			Config: unprotectedHCL,
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_volume.v", plancheck.ResourceActionCreate)},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttrWith("herd_volume.v", "uid", differs(&uid2)),
				nodeVolume(vc, "data", mi32, false),
			),
		},
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		TerraformVersionChecks:   identityCLI,
		CheckDestroy: func(*terraform.State) error {
			_, err := vc.GetVolume(context.Background(), &herdv1.GetVolumeRequest{Namespace: "default", Name: "data"})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("GetVolume after destroy: %v, want NotFound", err)
			}
			return nil
		},
		Steps: steps,
	})
}

// volumePod starts pod name on the node with the volume "shared" mounted
// at /data, running script.
func volumePod(t *testing.T, n *accNode, name string, readOnly bool, script string) {
	t.Helper()
	g := int64(0)
	_, err := n.pods.ApplyPod(context.Background(), &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{
		Name:                          name,
		TerminationGracePeriodSeconds: &g,
		Containers: []*herdv1.ContainerSpec{{
			Name:         "app",
			Image:        n.env.Image,
			Command:      []string{"sh", "-c", script},
			VolumeMounts: []*herdv1.VolumeMount{{Volume: "shared", Path: "/data", ReadOnly: readOnly}},
		}},
	}})
	if err != nil {
		t.Fatalf("start pod %s: %v", name, err)
	}
}

// deletePods deletes the pods and waits until they are gone.
func deletePods(t *testing.T, n *accNode, names ...string) {
	for _, name := range names {
		if _, err := n.pods.DeletePod(context.Background(), &herdv1.DeletePodRequest{Name: name}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("delete pod %s: %v", name, err)
		}
	}
	for _, name := range names {
		if err := n.waitPodGone(t, name, time.Minute); err != nil {
			t.Error(err)
		}
	}
}

// waitVolume polls GetVolume until ok accepts the volume.
func waitVolume(t *testing.T, vc herdv1.VolumeServiceClient, name, what string, ok func(*herdv1.Volume) bool) {
	t.Helper()
	var last *herdv1.Volume
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx(t), 100*time.Millisecond, 2*time.Minute, true, func(c context.Context) (bool, error) {
		last, lastErr = vc.GetVolume(c, &herdv1.GetVolumeRequest{Namespace: "default", Name: name})
		return lastErr == nil && ok(last), nil
	})
	if err != nil {
		t.Fatalf("volume %s: %s: not seen (last %v, error %v)", name, what, last, lastErr)
	}
}

// Pods using a volume change its used_bytes, phase, bound_to and readers
// behind Terraform's back: a refresh shows them and nothing is planned.
// agentd refuses to delete a volume a pod mounts, and once the pods are
// gone the volume is Available again and destroyed.
func TestAccVolumeUseIsNoDiff(t *testing.T) {
	t.Parallel()
	n, vc := startVolumeNode(t, "vol-use")
	t.Cleanup(func() { deletePods(t, n, "writer", "reader") })
	config := volumeHCL(n, `  name = "shared"
  size = "16Mi"
  deletion_protection = false`)
	var used0 string
	const written = 2 << 20

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			_, err := vc.GetVolume(context.Background(), &herdv1.GetVolumeRequest{Namespace: "default", Name: "shared"})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("GetVolume after destroy: %v, want NotFound", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_volume.v", "phase", "Available"),
					resource.TestCheckResourceAttrWith("herd_volume.v", "used_bytes", record(&used0)),
				),
			},
			// A writer fills 2 MiB, a reader mounts it read-only: the
			// refresh sees both and the plan is empty.
			{
				PreConfig: func() {
					base, err := strconv.ParseInt(used0, 10, 64)
					if err != nil {
						t.Fatalf("used_bytes %q: %v", used0, err)
					}
					volumePod(t, n, "writer", false, "dd if=/dev/zero of=/data/f bs=1048576 count=2 && sync && exec sleep 3600")
					volumePod(t, n, "reader", true, "exec sleep 3600")
					waitVolume(t, vc, "shared", "bound to writer, read by reader, 2 MiB written", func(v *herdv1.Volume) bool {
						st := v.GetStatus()
						return st.GetPhase() == "Bound" && st.GetBoundTo() == "writer" && len(st.GetReaders()) == 1 &&
							st.GetUsedBytes() >= base+written
					})
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_volume.v", "phase", "Bound"),
					resource.TestCheckResourceAttr("herd_volume.v", "bound_to", "writer"),
					resource.TestCheckResourceAttr("herd_volume.v", "readers.#", "1"),
					resource.TestCheckResourceAttr("herd_volume.v", "readers.0", "reader"),
					resource.TestCheckResourceAttrWith("herd_volume.v", "used_bytes", func(v string) error {
						got, err := strconv.ParseInt(v, 10, 64)
						if err != nil {
							return err
						}
						base, _ := strconv.ParseInt(used0, 10, 64)
						if got < base+written {
							return fmt.Errorf("used_bytes %d, want at least %d + %d written", got, base, written)
						}
						return nil
					}),
				),
			},
			// agentd refuses to delete a volume pods mount, unprotected or
			// not; the volume stays.
			{
				Config:      config,
				Destroy:     true,
				ExpectError: errRe("Cannot delete volume default/shared now"),
			},
			// The pods gone, it is Available again: still no plan.
			{
				PreConfig: func() {
					deletePods(t, n, "writer", "reader")
					waitVolume(t, vc, "shared", "Available", func(v *herdv1.Volume) bool {
						return v.GetStatus().GetPhase() == "Available" && v.GetStatus().GetBoundTo() == ""
					})
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_volume.v", "phase", "Available"),
					resource.TestCheckResourceAttr("herd_volume.v", "bound_to", ""),
					resource.TestCheckResourceAttr("herd_volume.v", "readers.#", "0"),
				),
			},
		},
	})
}
