package resources

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A delete refused because the name holds another incarnation is a
// delete of ours; any other refusal stays an error.
func TestReplacedIsGone(t *testing.T) {
	refused := status.Error(codes.FailedPrecondition, "delete service default/web: replaced")
	other := status.Error(codes.PermissionDenied, "no")
	for _, tc := range []struct {
		name    string
		err     error
		uid     string
		current string
		curErr  error
		want    error
	}{
		{name: "no error", uid: "u1"},
		{name: "already gone", err: status.Error(codes.NotFound, "gone"), uid: "u1"},
		{name: "another incarnation", err: refused, uid: "u1", current: "u2"},
		{name: "gone meanwhile", err: refused, uid: "u1", curErr: status.Error(codes.NotFound, "gone")},
		{name: "still ours", err: refused, uid: "u1", current: "u1", want: refused},
		{name: "current unreadable", err: refused, uid: "u1", curErr: other, want: refused},
		{name: "no uid sent", err: refused, current: "u2", want: refused},
		{name: "another error", err: other, uid: "u1", current: "u2", want: other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := replacedIsGone(context.Background(), tc.err, tc.uid, func(context.Context) (string, error) {
				return tc.current, tc.curErr
			})
			if !errors.Is(got, tc.want) {
				t.Fatalf("replacedIsGone = %v, want %v", got, tc.want)
			}
		})
	}
}
