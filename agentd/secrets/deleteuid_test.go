package secrets

import (
	"context"
	"errors"
	"testing"

	herdspec "github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Delete with a uid removes only that incarnation: a secret deleted and
// made again under the same name (through another member) is kept when the
// old uid is named; the uid checked is the replicated one.
func TestDeleteUID(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, "node-a", nil)
	b := startNode(t, "node-b", nil, a)
	seesLabels(t, a, b)
	spec := Spec{Namespace: "default", Name: "inc", Type: "opaque", Data: map[string][]byte{"k": randomValue()}}
	apply := func() string {
		t.Helper()
		v, _, _, err := a.rep.Apply(ctx, spec, false)
		if err != nil || v.Rec.UID == "" {
			t.Fatalf("apply: uid %q, %v", v.Rec.UID, err)
		}
		return v.Rec.UID
	}
	first := apply()
	if existed, err := b.rep.Delete(ctx, "default", "inc", first); !existed || err != nil {
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
		{name: "stale uid", uid: first, wantErr: herdspec.ErrOtherIncarnation},
		{name: "current uid", uid: second, wantExisted: true},
		{name: "already gone", uid: second},
	} {
		existed, err := b.rep.Delete(ctx, "default", "inc", tc.uid)
		if existed != tc.wantExisted || !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: Delete = %v, %v; want %v, %v", tc.name, existed, err, tc.wantExisted, tc.wantErr)
		}
		for _, n := range []*tnode{a, b} {
			v, gerr := n.rep.Get(ctx, "default", "inc")
			if kept := gerr == nil; kept != (tc.wantErr != nil) || (kept && v.Rec.UID != second) {
				t.Fatalf("%s: after Delete %s has uid %q, %v", tc.name, n.name, v.Rec.UID, gerr)
			}
		}
	}
}
