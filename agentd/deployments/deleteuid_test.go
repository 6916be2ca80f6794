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
	"github.com/herd-project/terraform-provider-herd/internal/incarnationtest"
)

// Delete with a uid, over agentd/cluster's real Cluster, removes only that
// incarnation: a deployment deleted and made again under the same name is
// kept when the old uid is named.
func TestDeleteUID(t *testing.T) {
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
	apply := func() string {
		t.Helper()
		resp, err := r.Apply(context.Background(), &herdv1.ApplyDeploymentRequest{Spec: regSpec(1, "v1")})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetDeployment().GetUid()
	}
	incarnationtest.CheckDeleteUID(t, incarnationtest.Kind{
		Apply: func(t *testing.T) string {
			t.Helper()
			return apply()
		},
		Delete: func(uid string) (bool, error) { return r.Delete("default/web", uid) },
		Current: func(*testing.T) (string, bool) {
			rec, ok := r.Get("default/web")
			return rec.GetDeployment().GetUid(), ok
		},
	})
}
