package agent_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// Pods have namespaces on a real agentd: an operator limited to namespace
// web cannot mount another namespace's secret in its pod (so it cannot
// read one through its pod's logs), cannot see, read the logs of, delete
// or take over by name a pod of another namespace, and what it is refused
// changes nothing.
func TestNamespacesOnAgentd(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	// A cluster of one: secrets need a cluster.
	c := env.NewCluster(t, acctest.ClusterOptions{Names: []string{"nsp-a"}, Subnet: netip.MustParsePrefix("10.74.0.0/24")})
	cn := c.Nodes[0]
	n := &node{env: env, agent: cn.Agent, pods: cn.Pods, nodes: cn.Nodes}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := cn.Conn
	web := herdv1.NewPodServiceClient(agentAccessConn(t, env, cn.Agent, "wes", pki.Access{Role: pki.RoleOperator, Namespaces: []string{"web"}}))

	// A secret of namespace prod, which this node holds.
	if _, err := herdv1.NewSecretServiceClient(admin).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
		Namespace: "prod", Name: "db", Data: map[string][]byte{"password": []byte("ns-test-secret-value")},
	}}); err != nil {
		t.Fatalf("admin ApplySecret: %v", err)
	}
	thief := n.pod("thief", "cat /run/secrets/db/password; sleep 3600")
	thief.Namespace = "web"
	for _, ref := range []string{"prod/db", "db"} {
		thief.Containers[0].SecretMounts = []*herdv1.SecretMount{{Secret: ref}}
		_, err := web.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: thief})
		switch ref {
		case "prod/db": // another namespace's: refused as invalid, at its field
			wantCode(t, err, codes.InvalidArgument, "containers[0].secret_mounts[0].secret", `may use only secrets of its own namespace`)
		case "db": // web/db: there is no such secret
			if err == nil {
				t.Fatalf("pod mounting web/db (which does not exist) was accepted")
			}
		}
		if _, gerr := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "thief"}); status.Code(gerr) != codes.NotFound {
			t.Fatalf("after a refused apply (%s) GetPod = %v, want NotFound", ref, gerr)
		}
	}

	// A pod of the default namespace, and one of web.
	other := n.apply(t, n.pod("other", "echo other-output; sleep 3600")).GetPod()
	mine := n.pod("mine", "echo mine-output; sleep 3600")
	mine.Namespace = "web"
	if _, err := web.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: mine}); err != nil {
		t.Fatalf("operator of web ApplyPod in web: %v", err)
	}
	n.waitLogs(t, "mine", "", "mine-output")
	n.waitLogs(t, "other", "", "other-output")

	if _, err := web.GetPod(ctx, &herdv1.GetPodRequest{Name: "mine", Namespace: "web"}); err != nil {
		t.Errorf("GetPod of its own pod: %v", err)
	}
	_, err := web.GetPod(ctx, &herdv1.GetPodRequest{Name: "other", Namespace: "web"})
	wantCode(t, err, codes.NotFound, "not found in namespace web")
	_, err = web.GetPod(ctx, &herdv1.GetPodRequest{Name: "other"})
	wantCode(t, err, codes.PermissionDenied)

	list, err := web.ListPods(ctx, &herdv1.ListPodsRequest{Namespace: "web"})
	if err != nil || len(list.GetPods()) != 1 || list.GetPods()[0].GetSpec().GetName() != "mine" {
		t.Errorf("ListPods of web = %v, %v; want only mine", list.GetPods(), err)
	}

	stream, err := web.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "other", Namespace: "web"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.NotFound)

	// Delete in its namespace does not reach the other namespace's pod.
	resp, err := web.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "other", Namespace: "web"})
	if err != nil || resp.GetExisted() {
		t.Errorf("DeletePod of another namespace's pod = %v, %v; want not existed", resp, err)
	}
	// Applying the other pod's name in web replaces nothing.
	squat := n.pod("other", "echo squat; sleep 3600")
	squat.Namespace = "web"
	_, err = web.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: squat})
	wantCode(t, err, codes.AlreadyExists, "another namespace")
	got, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "other"})
	if err != nil || got.GetUid() != other.GetUid() || got.GetSpec().GetNamespace() != "" {
		t.Errorf("the default namespace's pod after refused calls = %v, %v; want uid %s in default", got, err, other.GetUid())
	}

	// Its own pod it may delete.
	if resp, err := web.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "mine", Namespace: "web"}); err != nil || !resp.GetExisted() {
		t.Errorf("DeletePod of its own pod = %v, %v", resp, err)
	}
}
