// Package incarnationtest checks a delete that takes the uid the caller
// last saw, the same way for every kind of object: a stale uid is refused
// and the object kept, the current one deletes it, and a delete of what is
// already gone is no error.
package incarnationtest

import (
	"errors"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Kind is one kind of object under one name.
type Kind struct {
	// Apply creates the object (again) and returns its uid.
	Apply func(t *testing.T) string
	// Delete deletes it if its uid is uid ("": any).
	Delete func(uid string) (existed bool, err error)
	// Current returns the uid of the object kept under the name (every
	// view of it must agree; report a disagreement with t), or ok false
	// when there is none.
	Current func(t *testing.T) (uid string, ok bool)
}

// CheckDeleteUID creates the object, deletes it with its uid, creates it
// again under the same name, and checks the three deletes that follow.
func CheckDeleteUID(t *testing.T, k Kind) {
	t.Helper()
	first := k.Apply(t)
	if existed, err := k.Delete(first); !existed || err != nil {
		t.Fatalf("delete with the current uid: %v, %v", existed, err)
	}
	second := k.Apply(t)
	if second == first {
		t.Fatalf("a new incarnation kept uid %s", first)
	}
	for _, tc := range []struct {
		name        string
		uid         string
		wantExisted bool
		wantErr     error
	}{
		{name: "stale uid", uid: first, wantErr: spec.ErrOtherIncarnation},
		{name: "current uid", uid: second, wantExisted: true},
		{name: "already gone", uid: second},
	} {
		existed, err := k.Delete(tc.uid)
		if existed != tc.wantExisted || !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: Delete = %v, %v; want %v, %v", tc.name, existed, err, tc.wantExisted, tc.wantErr)
		}
		uid, kept := k.Current(t)
		if kept != (tc.wantErr != nil) || (kept && uid != second) {
			t.Fatalf("%s: after Delete the object has uid %q (kept %v)", tc.name, uid, kept)
		}
	}
}
