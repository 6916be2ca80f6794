package agent_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// A real agentd with --max-pods 1 refuses a second pod with
// ResourceExhausted and the limit in the message, but takes a re-apply of
// the pod it holds; both listeners refuse a request over the size cap
// with ResourceExhausted (3.5 MiB: under gRPC's default, over agentd's
// cap). agentd runs with a core size limit of 0.
func TestLimitsOnRealAgent(t *testing.T) {
	t.Parallel()
	n := startNode(t, "limits", func(o *acctest.AgentOptions) {
		o.ExtraArgs = append(o.ExtraArgs, "--max-pods", "1")
	})
	n.apply(t, n.pod("first", "sleep 3600"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	huge := n.pod("huge", "sleep 3600")
	huge.Containers[0].Env = map[string]string{"PAD": strings.Repeat("x", 3<<20+512<<10)}
	cases := []struct {
		name   string
		client herdv1.PodServiceClient
		spec   *herdv1.PodSpec
		want   codes.Code
		inMsg  string
	}{
		{"re-apply of the held pod", n.pods, n.pod("first", "sleep 3600"), codes.OK, ""},
		{"second pod over mTLS", n.pods, n.pod("second", "sleep 3600"), codes.ResourceExhausted, "node limits holds 1 pod, its limit (--max-pods)"},
		{"second pod over the socket", n.local, n.pod("second", "sleep 3600"), codes.ResourceExhausted, "its limit (--max-pods)"},
		{"oversize request over mTLS", n.pods, huge, codes.ResourceExhausted, ""},
		{"oversize request over the socket", n.local, huge, codes.ResourceExhausted, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: tc.spec})
			if got := status.Code(err); got != tc.want {
				t.Fatalf("ApplyPod %s: code %s (%v), want %s", tc.spec.GetName(), got, err, tc.want)
			}
			if tc.want == codes.OK && resp.GetCreated() {
				t.Errorf("re-apply of %s created a pod", tc.spec.GetName())
			}
			if tc.inMsg != "" && !strings.Contains(status.Convert(err).Message(), tc.inMsg) {
				t.Errorf("message %q does not say %q", status.Convert(err).Message(), tc.inMsg)
			}
		})
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", n.agent.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max core file size"); ok {
			if f := strings.Fields(rest); len(f) < 2 || f[0] != "0" || f[1] != "0" {
				t.Errorf("agentd's core size limit: %q, want 0 0", strings.TrimSpace(rest))
			}
		}
	}
	list, err := n.local.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetPods()) != 1 {
		t.Errorf("node holds %d pods after the refusals, want 1", len(list.GetPods()))
	}
}
