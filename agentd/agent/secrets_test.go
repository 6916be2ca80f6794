package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// secretPod serves what its containers see of secret db-creds over HTTP:
// the mounted file on :8080 (httpd rooted at the mount), and the env var
// and the file's mode and owner on :8081 (from /dev/shm, a tmpfs, so no
// copy of the value lands on the node's disk).
func secretPod(image, name string, restart bool) *herdv1.PodSpec {
	uid, gid := uint32(1000), uint32(2000)
	grace := int64(1) // httpd as PID 1 ignores SIGTERM
	return &herdv1.PodSpec{
		Name:                          name,
		TerminationGracePeriodSeconds: &grace,
		RestartOnSecretChange:         restart,
		Containers: []*herdv1.ContainerSpec{
			{
				Name: "files", Image: image,
				Command:      []string{"httpd", "-f", "-p", "8080", "-h", "/run/secrets/db-creds"},
				SecretMounts: []*herdv1.SecretMount{{Secret: "db-creds", Uid: &uid, Gid: &gid}},
			},
			{
				Name: "env", Image: image,
				Command: []string{"sh", "-c", "mkdir -p /dev/shm/e && printf %s \"$DB_PASSWORD\" > /dev/shm/e/env && " +
					"stat -c '%a %u %g' /run/secrets/db-creds/..data/password > /dev/shm/e/stat && exec httpd -f -p 8081 -h /dev/shm/e"},
				SecretMounts: []*herdv1.SecretMount{{Secret: "db-creds", Uid: &uid, Gid: &gid}},
				SecretEnv:    []*herdv1.SecretEnv{{Name: "DB_PASSWORD", Secret: "db-creds", Key: "password"}},
			},
		},
	}
}

func randomSecret() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return []byte("s3cr3t-" + hex.EncodeToString(b))
}

// TestSecretsAcrossNodes: a secret written through a node outside its
// selector reaches only the matching nodes; a pod reads it from its file
// (mode 0400, its uid and gid) and its env; new data reaches the running
// pod's file by the ..data swap; a pod with restart_on_secret_change is
// restarted and listed; a pod on a node outside the selector is refused;
// the outsider's state shows no trace; the plaintext is in no bbolt file
// and no log; a client without an admin certificate is refused; key
// rotation keeps the secret readable, also after an agentd restart.
func TestSecretsAcrossNodes(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:  []string{"se-a", "se-b", "se-c"},
		Subnet: netip.MustParsePrefix("10.89.0.0/24"),
	})
	ctx := context.Background()
	a, b, out := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	for _, n := range []*acctest.ClusterNode{a, b} {
		if _, err := n.Nodes.SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"role": "db"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := out.Nodes.SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"role": "web"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every member's labels seen by the outsider", func() (bool, string) {
		resp, err := out.Cluster.ListMembers(ctx, &herdv1.ListMembersRequest{})
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, m := range resp.GetMembers() {
			if m.GetLabels()["role"] != "" {
				n++
			}
		}
		return n == 3, fmt.Sprint(resp.GetMembers())
	})
	secrets := func(n *acctest.ClusterNode) herdv1.SecretServiceClient { return herdv1.NewSecretServiceClient(n.Conn) }

	v1 := randomSecret()
	spec := &herdv1.SecretSpec{
		Name: "db-creds", Type: "basic-auth",
		Data:         map[string][]byte{"username": []byte("app"), "password": v1},
		NodeSelector: map[string]string{"role": "db"},
	}
	resp, err := secrets(out).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: spec})
	if err != nil {
		t.Fatalf("apply through the outsider: %v", err)
	}
	var holders []string
	for _, m := range resp.GetSecret().GetStatus().GetMembers() {
		holders = append(holders, m.GetNode())
	}
	if !slices.Equal(holders, []string{"se-a", "se-b"}) || !resp.GetSecret().GetStatus().GetSynced() {
		t.Fatalf("held by %v synced=%v, want se-a se-b synced", holders, resp.GetSecret().GetStatus().GetSynced())
	}
	if got := resp.GetSecret().GetMeta().GetKeys(); !slices.Equal(got, []string{"password", "username"}) {
		t.Fatalf("keys %v", got)
	}

	// The pod on se-a sees the value in its file and its env.
	if _, err := a.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: secretPod(env.Image, "reader", false)}); err != nil {
		t.Fatalf("apply reader: %v", err)
	}
	if _, err := b.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: secretPod(env.Image, "restarter", true)}); err != nil {
		t.Fatalf("apply restarter: %v", err)
	}
	reader := waitPodRunning(t, a, "reader")
	restarter := waitPodRunning(t, b, "restarter")
	ask := func(n *acctest.ClusterNode, p *herdv1.Pod, port int, path string) (string, error) {
		return acctest.HTTPGetPathIn(n.PodNetns(p.GetUid()), fmt.Sprintf("%s:%d", p.GetStatus().GetPodIp(), port), path)
	}
	waitFor(t, 30*time.Second, "reader serves the secret file and env", func() (bool, string) {
		f, err1 := ask(a, reader, 8080, "/password")
		e, err2 := ask(a, reader, 8081, "/env")
		return f == string(v1) && e == string(v1), fmt.Sprintf("file err %v, env err %v", err1, err2)
	})
	if st, err := ask(a, reader, 8081, "/stat"); err != nil || st != "400 1000 2000" {
		t.Fatalf("mode uid gid of the file = %q (%v), want 400 1000 2000", st, err)
	}

	t.Run("a pod on a node outside the selector is refused", func(t *testing.T) {
		_, err := out.Pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: secretPod(env.Image, "intruder", false)})
		wantCode(t, err, codes.FailedPrecondition, "outside the node_selector", "db-creds")
		if _, err := out.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "intruder"}); err == nil {
			t.Fatal("the refused pod exists")
		}
	})

	t.Run("a client without an admin certificate is refused", func(t *testing.T) {
		conn := nonAdminConn(t, env, a.Agent, "viewer")
		sc := herdv1.NewSecretServiceClient(conn)
		_, err := sc.RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-creds"})
		wantCode(t, err, codes.PermissionDenied, "admin")
		_, err = sc.ListSecrets(ctx, &herdv1.ListSecretsRequest{})
		wantCode(t, err, codes.PermissionDenied, "admin")
		_, err = sc.ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{Name: "evil", Data: map[string][]byte{"k": []byte("v")}}})
		wantCode(t, err, codes.PermissionDenied, "admin")
		_, err = sc.DeleteSecret(ctx, &herdv1.DeleteSecretRequest{Name: "db-creds"})
		wantCode(t, err, codes.PermissionDenied, "admin")
		// The same certificate still runs pods: only secrets need admin.
		if _, err := herdv1.NewNodeServiceClient(conn).GetNode(ctx, &herdv1.GetNodeRequest{}); err != nil {
			t.Fatalf("non-admin GetNode: %v", err)
		}
	})

	t.Run("members call each other over mTLS, as their node certificates", func(t *testing.T) {
		checkPeerCallsOverMTLS(t, env, a, "se-c", "db-creds")
	})

	t.Run("agentd refuses traversal and oversize input", func(t *testing.T) {
		for _, bad := range []map[string][]byte{
			{"../../etc/passwd": []byte("x")},
			{"..": []byte("x")},
			{"a/b": []byte("x")},
			{"big": bytes.Repeat([]byte("x"), 1<<20+1)},
		} {
			_, err := secrets(a).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{Name: "bad", Data: bad}})
			wantCode(t, err, codes.InvalidArgument, "spec.data")
		}
		if _, err := secrets(a).GetSecret(ctx, &herdv1.GetSecretRequest{Name: "bad"}); grpcstatus.Code(err) != codes.NotFound {
			t.Fatalf("a refused secret exists: %v", err)
		}
	})

	v2 := randomSecret()
	t.Run("new data: files swap in place, the flagged pod restarts", func(t *testing.T) {
		spec.Data = map[string][]byte{"username": []byte("app"), "password": v2}
		dry, err := secrets(out).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: spec, DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(dry.GetRestartedPods()); !strings.Contains(got, "se-b") || !strings.Contains(got, "restarter") || strings.Contains(got, "reader") {
			t.Fatalf("dry run lists %s, want only se-b/restarter", got)
		}
		if f, _ := ask(a, reader, 8080, "/password"); f != string(v1) {
			t.Fatal("the dry run changed the data")
		}
		before := restarter.GetStatus().GetContainers()
		resp, err := secrets(out).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(resp.GetRestartedPods()) != fmt.Sprint(dry.GetRestartedPods()) {
			t.Fatalf("restarted %v, the dry run said %v", resp.GetRestartedPods(), dry.GetRestartedPods())
		}
		waitFor(t, 30*time.Second, "reader's file has the new value without a restart", func() (bool, string) {
			f, err := ask(a, reader, 8080, "/password")
			return f == string(v2), fmt.Sprint(err)
		})
		if e, _ := ask(a, reader, 8081, "/env"); e != string(v1) {
			t.Fatal("the reader's env changed although it was not restarted")
		}
		p, err := a.Pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "reader"})
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range p.GetStatus().GetContainers() {
			if cs.GetRestartCount() != 0 {
				t.Fatalf("reader container %s restarted", cs.GetName())
			}
		}
		restarter = waitPodRunning(t, b, "restarter")
		waitFor(t, 60*time.Second, "restarter's env has the new value", func() (bool, string) {
			e, err := ask(b, restarter, 8081, "/env")
			return e == string(v2), fmt.Sprint(err)
		})
		after := restarter.GetStatus().GetContainers()
		for i := range after {
			if !after[i].GetStartedAt().AsTime().After(before[i].GetStartedAt().AsTime()) {
				t.Fatalf("container %s of restarter was not restarted", after[i].GetName())
			}
		}
	})

	t.Run("key rotation keeps the secret readable, also after a restart", func(t *testing.T) {
		rot, err := secrets(a).RotateKey(ctx, &herdv1.RotateKeyRequest{})
		if err != nil || rot.GetRewrapped() < 1 || rot.GetKeyId() == "" {
			t.Fatalf("rotate: %v %v", rot, err)
		}
		got, err := secrets(a).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-creds"})
		if err != nil || !bytes.Equal(got.GetData()["password"], v2) {
			t.Fatalf("reveal after rotation: %v", err)
		}
		if err := a.Agent.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		got, err = secrets(a).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-creds"})
		if err != nil || !bytes.Equal(got.GetData()["password"], v2) {
			t.Fatalf("reveal after rotation and restart: %v", err)
		}
		_, err = secrets(out).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-creds"})
		wantCode(t, err, codes.FailedPrecondition, "outside the node_selector")
	})

	t.Run("no plaintext in any bbolt file or log; no trace on the outsider", func(t *testing.T) {
		for _, n := range c.Nodes {
			for _, v := range [][]byte{v1, v2} {
				for _, dir := range []string{n.Agent.StateDir, filepath.Dir(n.Agent.LogFile)} {
					if hits := acctest.GrepFiles(t, dir, v); len(hits) > 0 {
						t.Errorf("%s: plaintext found in %v", n.Agent.Name, hits)
					}
				}
			}
		}
		if hits := acctest.GrepFiles(t, out.Agent.StateDir, []byte("db-creds")); len(hits) > 0 {
			t.Errorf("outsider: the secret's name is in %v", hits)
		}
		if hits := acctest.GrepFiles(t, a.Agent.StateDir, []byte("db-creds")); len(hits) == 0 {
			t.Error("holder: the secret's name is nowhere in its state (is the search working?)")
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, p := range []struct {
			n    *acctest.ClusterNode
			name string
		}{{a, "reader"}, {b, "restarter"}} {
			if _, err := p.n.Pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: p.name}); err != nil {
				t.Fatal(err)
			}
		}
		d, err := secrets(out).DeleteSecret(ctx, &herdv1.DeleteSecretRequest{Name: "db-creds"})
		if err != nil || !d.GetExisted() {
			t.Fatalf("delete: %v %v", d, err)
		}
		_, err = secrets(b).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-creds"})
		wantCode(t, err, codes.NotFound)
	})
}
