package agent_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// A delete that names a uid removes only that incarnation: after the pod
// is replaced, a delete with the old uid is refused and the new pod runs
// on; with the new uid it goes.
func TestDeletePodUIDPrecondition(t *testing.T) {
	t.Parallel()
	n := startNode(t, "deluid")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := n.apply(t, n.pod("inc", "sleep 3600")).GetPod().GetUid()
	n.waitRunning(t, "inc")
	if !n.delete(t, "inc", 0) {
		t.Fatal("first incarnation did not exist")
	}
	second := n.apply(t, n.pod("inc", "sleep 3601")).GetPod().GetUid()
	if second == first {
		t.Fatalf("a new incarnation kept uid %s", first)
	}
	n.waitRunning(t, "inc")
	var zero int64
	_, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "inc", Uid: first, GracePeriodSeconds: &zero})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete with the old uid: %v, want FailedPrecondition", err)
	}
	if p := n.get(t, "inc"); p.GetUid() != second || !running(p) {
		t.Fatalf("after a refused delete: uid %s running %v, want %s running", p.GetUid(), running(p), second)
	}
	resp, err := n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "inc", Uid: second, GracePeriodSeconds: &zero})
	if err != nil || !resp.GetExisted() {
		t.Fatalf("delete with the current uid: %v, %v", resp, err)
	}
	if _, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "inc"}); status.Code(err) != codes.NotFound {
		t.Errorf("after the delete GetPod = %v, want NotFound", err)
	}
}
