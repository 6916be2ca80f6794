package nested

import (
	"context"
	"errors"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Delete with a uid removes only that incarnation: a cluster deleted and
// made again under the same name is kept when the old uid is named.
func TestDeleteUID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name = "inc"
	sp := testSpec(name, 0)
	sp.DeletionProtection = false
	apply := func() string {
		t.Helper()
		c, _, err := e.d.Apply(ctx, sp)
		if err != nil || c.GetUid() == "" {
			t.Fatalf("apply: uid %q, %v", c.GetUid(), err)
		}
		return c.GetUid()
	}
	first := apply()
	if existed, err := e.d.Delete(ctx, name, first); err != nil || !existed {
		t.Fatalf("delete with the current uid: %v, %v", existed, err)
	}
	second := apply()
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
		existed, err := e.d.Delete(ctx, name, tc.uid)
		if existed != tc.wantExisted || !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: Delete = %v, %v; want %v, %v", tc.name, existed, err, tc.wantExisted, tc.wantErr)
		}
		c, gerr := e.d.Get(ctx, name)
		if kept := gerr == nil; kept != (tc.wantErr != nil) || (kept && c.GetUid() != second) {
			t.Fatalf("%s: after Delete Get = %v, %v", tc.name, c.GetUid(), gerr)
		}
	}
}
