package deployments

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// TestRegistryOnCluster: the registry over agentd/cluster's real
// single-node Cluster: the node's own entries make it placeable, the
// answer's version is the cluster object's, and status objects round-trip.
func TestRegistryOnCluster(t *testing.T) {
	c, err := cluster.New(cluster.Config{
		NodeName: "solo", BindAddr: "127.0.0.1", SecretKey: bytes.Repeat([]byte{7}, 32),
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeCIDRBits: 24,
		NodeIP: netip.MustParseAddr("127.0.0.1"), Persist: &cluster.MemPersister{},
		Logger: testRegistry(nil).log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	b, _ := capacity.Info{Allocatable: rsc(4000, 8*regGi), Ready: true}.Encode()
	if err := c.PublishLocal(capacity.Kind, capacity.Key, b); err != nil {
		t.Fatal(err)
	}
	if _, err := peers.Publish(c, "127.0.0.1:7443", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	r := testRegistry(c)
	if n := r.Nodes(); len(n) != 1 || !n[0].Ready {
		t.Fatalf("nodes %+v", n)
	}
	resp, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: regSpec(2, "v1")})
	if err != nil {
		t.Fatal(err)
	}
	o, ok := c.Get(KindDeployment, "default/web")
	if !ok || o.Version != resp.GetDeployment().GetVersion() {
		t.Fatalf("object %v %v, answer version %d", o.Version, ok, resp.GetDeployment().GetVersion())
	}
	if s := resp.GetPlan().GetSummary(); s != "default/web: create revision 1, 2 replicas: solo +2; pods that restart: none" {
		t.Errorf("summary %q", s)
	}
	if err := r.PutStatus("default/web", &herdv1.DeploymentStatus{Phase: "Complete", ObservedVersion: o.Version}); err != nil {
		t.Fatal(err)
	}
	if st, ok := r.Status("default/web"); !ok || st.GetPhase() != "Complete" {
		t.Errorf("status %v %v", st, ok)
	}
	again, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: regSpec(2, "v2")})
	if err != nil || again.GetDeployment().GetRevision() != 2 || again.GetDeployment().GetVersion() <= o.Version {
		t.Fatalf("template change: %v %v", again, err)
	}
}
