package secrets

import (
	"context"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/incarnationtest"
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
	incarnationtest.CheckDeleteUID(t, incarnationtest.Kind{
		Apply: func(t *testing.T) string {
			t.Helper()
			return apply()
		},
		// Deleted through the other member: the uid checked is the
		// replicated one.
		Delete: func(uid string) (bool, error) { return b.rep.Delete(ctx, "default", "inc", uid) },
		Current: func(t *testing.T) (string, bool) {
			t.Helper()
			va, erra := a.rep.Get(ctx, "default", "inc")
			vb, errb := b.rep.Get(ctx, "default", "inc")
			if (erra == nil) != (errb == nil) || va.Rec.UID != vb.Rec.UID {
				t.Fatalf("the members disagree: node-a has uid %q (%v), node-b %q (%v)", va.Rec.UID, erra, vb.Rec.UID, errb)
			}
			return va.Rec.UID, erra == nil
		},
	})
}
