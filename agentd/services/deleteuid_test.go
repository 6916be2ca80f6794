package services

import (
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/incarnationtest"
)

// Delete with a uid removes only that incarnation: a service deleted and
// made again under the same name is kept when the old uid is named.
func TestDeleteUID(t *testing.T) {
	r, _ := newRegistry(t, "10.96.0.0/24")
	incarnationtest.CheckDeleteUID(t, incarnationtest.Kind{
		Apply: func(t *testing.T) string {
			t.Helper()
			s, _, err := r.Apply(svcSpec("web", ""))
			if err != nil {
				t.Fatal(err)
			}
			return s.GetUid()
		},
		Delete: func(uid string) (bool, error) { return r.Delete("default", "web", uid) },
		Current: func(*testing.T) (string, bool) {
			s, err := r.Get("default", "web")
			return s.GetUid(), err == nil
		},
	})
}
