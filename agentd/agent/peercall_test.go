package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// checkPeerCallsOverMTLS: the secret calls between members travel over
// PeerService.Call on the mTLS listener: the holder logged the writer's
// calls, caller named by its certificate; a client certificate (admin
// too) is refused; a node certificate's name is who the handler sees, so
// a node certificate of no member selected is not handed the data.
func checkPeerCallsOverMTLS(t *testing.T, env *acctest.Env, holder *acctest.ClusterNode, writer, secret string) {
	t.Helper()
	ctx := context.Background()
	logs, err := os.ReadFile(holder.Agent.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, l := range strings.Split(string(logs), "\n") {
		if strings.Contains(l, "method=/herd.v1.PeerService/Call") && strings.Contains(l, "caller="+writer) {
			seen = true
			break
		}
	}
	if !seen {
		t.Errorf("%s logged no PeerService.Call from %s: the writer's secret calls did not come over mTLS", holder.Agent.Opts.Name, writer)
	}

	fetch, err := json.Marshal(map[string]string{"key": "default/" + secret})
	if err != nil {
		t.Fatal(err)
	}
	req := &herdv1.PeerCallRequest{Method: "secret.fetch", Payload: fetch}
	_, err = herdv1.NewPeerServiceClient(holder.Conn).Call(ctx, req)
	wantCode(t, err, codes.PermissionDenied, "node certificates")

	cert, key, err := env.Certs.CA.IssueNode("peer-x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := holder.Agent.ClientTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, holder.Agent.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	resp, err := herdv1.NewPeerServiceClient(conn).Call(ctx, req)
	wantCode(t, err, codes.Unknown, "member peer-x is outside its node_selector")
	if len(resp.GetPayload()) != 0 {
		t.Errorf("a node certificate outside the selector got %d bytes", len(resp.GetPayload()))
	}
}
