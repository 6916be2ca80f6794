package agent_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// accessConn dials n over mTLS with a fresh certificate granting a.
func accessConn(t *testing.T, n *node, name string, a pki.Access) *grpc.ClientConn {
	t.Helper()
	return agentAccessConn(t, n.env, n.agent, name, a)
}

// agentAccessConn dials agent ag of env over mTLS with a fresh
// certificate granting a.
func agentAccessConn(t *testing.T, env *acctest.Env, ag *acctest.Agent, name string, a pki.Access) *grpc.ClientConn {
	t.Helper()
	cert, key, err := env.Certs.CA.IssueClientAccess(name, a)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := ag.ClientTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return dial(t, ag.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
}

// A real agentd enforces the roles: a viewer reads but neither writes nor
// reads logs, an operator runs pods but cannot set node labels (they
// decide which nodes hold secrets), an operator of another namespace
// cannot touch pods; refused calls change nothing.
func TestRolesOnAgentd(t *testing.T) {
	t.Parallel()
	n := startNode(t, "roles")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	viewer := accessConn(t, n, "eve", pki.Access{Role: pki.RoleViewer})
	operator := accessConn(t, n, "olga", pki.Access{Role: pki.RoleOperator})
	webOnly := accessConn(t, n, "wes", pki.Access{Role: pki.RoleOperator, Namespaces: []string{"web"}})
	denied := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", what, err)
		}
	}

	before, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := herdv1.NewNodeServiceClient(viewer).GetNode(ctx, &herdv1.GetNodeRequest{}); err != nil {
		t.Errorf("viewer GetNode: %v", err)
	}
	labels := map[string]string{"secrets": "yes"}
	_, err = herdv1.NewNodeServiceClient(operator).SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: labels})
	denied("operator SetNodeLabels", err)
	if after, err := n.nodes.GetNode(ctx, &herdv1.GetNodeRequest{}); err != nil || !maps.Equal(after.GetLabels(), before.GetLabels()) {
		t.Errorf("labels after a refused SetNodeLabels: %v (%v), want %v", after.GetLabels(), err, before.GetLabels())
	}

	spec := n.pod("roles-a", "echo hello; sleep 3600")
	_, err = herdv1.NewPodServiceClient(viewer).ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: spec})
	denied("viewer ApplyPod", err)
	_, err = herdv1.NewPodServiceClient(webOnly).ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: spec})
	denied("operator of web ApplyPod", err)
	if _, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "roles-a"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after refused applies GetPod = %v, want NotFound", err)
	}
	if _, err := herdv1.NewPodServiceClient(operator).ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: spec}); err != nil {
		t.Fatalf("operator ApplyPod: %v", err)
	}
	n.waitLogs(t, "roles-a", "", "hello")
	stream, err := herdv1.NewPodServiceClient(viewer).PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "roles-a"})
	if err == nil {
		_, err = stream.Recv()
	}
	denied("viewer PodLogs", err)
	stream, err = herdv1.NewPodServiceClient(operator).PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "roles-a"})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("operator PodLogs: %v", err)
		}
		got = append(got, chunk.GetData()...)
	}
	if string(got) != "hello\n" {
		t.Errorf("operator PodLogs = %q, want hello", got)
	}
	_, err = herdv1.NewPodServiceClient(webOnly).DeletePod(ctx, &herdv1.DeletePodRequest{Name: "roles-a"})
	denied("operator of web DeletePod", err)
	if _, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "roles-a"}); err != nil {
		t.Errorf("after a refused delete GetPod: %v", err)
	}
	_, err = herdv1.NewSecretServiceClient(operator).RevealSecret(ctx, &herdv1.RevealSecretRequest{Namespace: "default", Name: "db"})
	denied("operator RevealSecret", err)
}
