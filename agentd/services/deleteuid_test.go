package services

import (
	"errors"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Delete with a uid removes only that incarnation: a service deleted and
// made again under the same name is kept when the old uid is named.
func TestDeleteUID(t *testing.T) {
	r, _ := newRegistry(t, "10.96.0.0/24")
	first, _, err := r.Apply(svcSpec("web", ""))
	if err != nil {
		t.Fatal(err)
	}
	if existed, err := r.Delete("default", "web", first.GetUid()); !existed || err != nil {
		t.Fatalf("delete with the current uid: %v, %v", existed, err)
	}
	second, _, err := r.Apply(svcSpec("web", ""))
	if err != nil || second.GetUid() == first.GetUid() {
		t.Fatalf("recreate: uid %s (first %s), %v", second.GetUid(), first.GetUid(), err)
	}
	for _, tc := range []struct {
		name        string
		uid         string
		wantExisted bool
		wantErr     error
	}{
		{name: "stale uid", uid: first.GetUid(), wantErr: spec.ErrOtherIncarnation},
		{name: "current uid", uid: second.GetUid(), wantExisted: true},
		{name: "already gone", uid: second.GetUid()},
	} {
		existed, err := r.Delete("default", "web", tc.uid)
		if existed != tc.wantExisted || !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: Delete = %v, %v; want %v, %v", tc.name, existed, err, tc.wantExisted, tc.wantErr)
		}
		got, gerr := r.Get("default", "web")
		if kept := gerr == nil; kept != (tc.wantErr != nil) || (kept && got.GetUid() != second.GetUid()) {
			t.Fatalf("%s: after Delete Get = %v, %v", tc.name, got.GetUid(), gerr)
		}
	}
}
