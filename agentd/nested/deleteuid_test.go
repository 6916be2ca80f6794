package nested

import (
	"context"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/incarnationtest"
)

// Delete with a uid removes only that incarnation: a cluster deleted and
// made again under the same name is kept when the old uid is named.
func TestDeleteUID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name = "inc"
	sp := testSpec(name, 0)
	sp.DeletionProtection = false
	incarnationtest.CheckDeleteUID(t, incarnationtest.Kind{
		Apply: func(t *testing.T) string {
			t.Helper()
			c, _, err := e.d.Apply(ctx, sp)
			if err != nil || c.GetUid() == "" {
				t.Fatalf("apply: uid %q, %v", c.GetUid(), err)
			}
			return c.GetUid()
		},
		Delete: func(uid string) (bool, error) { return e.d.Delete(ctx, name, uid) },
		Current: func(*testing.T) (string, bool) {
			c, err := e.d.Get(ctx, name)
			return c.GetUid(), err == nil
		},
	})
}
