package agent_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// A node certificate used as a client reaches only deployment replicas on
// a real agentd: it may create, read the logs of and delete a replica, but
// neither create, read the logs of nor delete any other pod, and what it
// is refused changes nothing.
func TestNodeCertificateOnlyTouchesReplicas(t *testing.T) {
	t.Parallel()
	n := startNode(t, "nodecert")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cert, key, err := n.env.Certs.CA.IssueNode("peer-x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := n.agent.ClientTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	peer := herdv1.NewPodServiceClient(dial(t, n.agent.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc))))

	_, err = peer.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: n.pod("sneaky", "sleep 3600")})
	wantCode(t, err, codes.PermissionDenied, "only deployment replicas")
	if _, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "sneaky"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after a refused ApplyPod GetPod = %v, want NotFound", err)
	}

	plain := n.apply(t, n.pod("plain", "echo plain-output; sleep 3600")).GetPod()
	n.waitLogs(t, "plain", "", "plain-output")
	_, err = peer.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "plain"})
	wantCode(t, err, codes.PermissionDenied, "pod plain is none")
	stream, err := peer.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "plain"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied)
	if got, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "plain"}); err != nil || got.GetUid() != plain.GetUid() {
		t.Errorf("pod plain after refused calls = %v, %v; want uid %s", got, err, plain.GetUid())
	}

	replica := n.pod("web-1-abcde", "echo replica-output; sleep 3600")
	replica.Deployment = &herdv1.DeploymentRef{Namespace: "default", Name: "web", Revision: 1, Uid: "d-uid"}
	if _, err := peer.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: replica}); err != nil {
		t.Fatalf("node certificate ApplyPod of a replica: %v", err)
	}
	n.waitLogs(t, "web-1-abcde", "", "replica-output")
	stream, err = peer.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "web-1-abcde"})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Errorf("node certificate PodLogs of a replica: %v", err)
	}
	resp, err := peer.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "web-1-abcde", SkipDrain: true})
	if err != nil || !resp.GetExisted() {
		t.Errorf("node certificate DeletePod of a replica = %v, %v", resp, err)
	}
}
