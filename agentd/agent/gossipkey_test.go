package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// gossipKeyFileOf is the --gossip-key file a cluster node was started with.
func gossipKeyFileOf(t *testing.T, n *acctest.ClusterNode) string {
	t.Helper()
	args := n.Agent.Opts.ExtraArgs
	for i := range len(args) - 1 {
		if args[i] == "--gossip-key" {
			return args[i+1]
		}
	}
	t.Fatal("no --gossip-key")
	return ""
}

// RotateGossipKey on a real cluster of two: the key file changes on every
// member, services and secrets written after the switch still reach the
// other member, the secret checksums do not change (the members took them
// from the gossip key, and keep a copy of the old one), a member restarted
// afterwards comes back with the new key file and the same checksums, and
// an operator may not rotate.
func TestGossipKeyRotation(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:  []string{"gk-a", "gk-b"},
		Subnet: netip.MustParsePrefix("10.93.0.0/24"),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, b := c.Nodes[0], c.Nodes[1]
	sa, sb := herdv1.NewSecretServiceClient(a.Conn), herdv1.NewSecretServiceClient(b.Conn)
	if _, err := sa.ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
		Name: "before", Data: map[string][]byte{"k": []byte("written before the rotation")},
	}}); err != nil {
		t.Fatal(err)
	}
	checksumOn := func(sc herdv1.SecretServiceClient, name string) (string, bool) {
		s, err := sc.GetSecret(ctx, &herdv1.GetSecretRequest{Name: name})
		if err != nil {
			return err.Error(), false
		}
		return s.GetStatus().GetChecksum(), s.GetStatus().GetSynced()
	}
	var before string
	waitFor(t, 30*time.Second, "the secret synced on both", func() (bool, string) {
		sumA, okA := checksumOn(sa, "before")
		sumB, okB := checksumOn(sb, "before")
		before = sumA
		return okA && okB && sumA == sumB, sumA + " " + sumB
	})
	keyFile := gossipKeyFileOf(t, a)
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	// An operator is refused.
	opConn := agentAccessConn(t, env, a.Agent, "olga", pki.Access{Role: pki.RoleOperator})
	if _, err := herdv1.NewClusterServiceClient(opConn).RotateGossipKey(ctx, &herdv1.RotateGossipKeyRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("operator rotate: %v, want PermissionDenied", err)
	}

	resp, err := a.Cluster.RotateGossipKey(ctx, &herdv1.RotateGossipKeyRequest{})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if got := strings.Join(resp.GetMembers(), ","); got != "gk-a,gk-b" {
		t.Fatalf("rotated on %q, want gk-a,gk-b", got)
	}
	newKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(newKey) == string(oldKey) || len(strings.TrimSpace(string(newKey))) != 44 {
		t.Fatalf("the key file did not get a new key: %q", newKey)
	}
	if strings.Contains(a.Agent.LogTail(400)+b.Agent.LogTail(400), strings.TrimSpace(string(newKey))) {
		t.Fatal("the new key is in a log")
	}

	// Gossip works with the new key: a service and a secret written on a
	// now reach b.
	if _, err := a.Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
		Name: "after", Selector: map[string]string{"app": "after"}, Ports: []*herdv1.ServicePort{{Port: 80, TargetPort: 8080}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
		Name: "after", Data: map[string][]byte{"k": []byte("written after the rotation")},
	}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "service and secret written after the rotation on b", func() (bool, string) {
		if _, err := b.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: "after"}); err != nil {
			return false, "service: " + err.Error()
		}
		sum, ok := checksumOn(sb, "after")
		return ok, "secret: " + sum
	})
	for _, sc := range []herdv1.SecretServiceClient{sa, sb} {
		if sum, ok := checksumOn(sc, "before"); sum != before || !ok {
			t.Fatalf("checksum after the rotation %s (synced %v), want %s", sum, ok, before)
		}
	}

	// b restarts with the new key file: it is a member again, and its
	// checksums are the same.
	if err := b.Agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	c.WaitMembers(t, 2)
	waitFor(t, 60*time.Second, "b back, the secret synced with the same checksum", func() (bool, string) {
		sum, ok := checksumOn(sb, "before")
		return ok && sum == before, fmt.Sprintf("%s synced=%v", sum, ok)
	})
	// Equal data gives an equal checksum: written through the restarted
	// b, the same data as before has the checksum from before.
	again, err := sb.ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
		Name: "again", Data: map[string][]byte{"k": []byte("written before the rotation")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.GetSecret().GetStatus().GetChecksum(); got != before {
		t.Errorf("checksum of the same data through the restarted member: %s, want %s", got, before)
	}
	if _, err := os.Stat(filepath.Join(b.Agent.StateDir, "secret-checksum.key")); err != nil {
		t.Errorf("no copy of the old checksum key: %v", err)
	}
}
