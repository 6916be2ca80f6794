package spec

import (
	"errors"
	"testing"
)

func TestOtherIncarnation(t *testing.T) {
	err := OtherIncarnation("pod web", "u2", "u1")
	if !errors.Is(err, ErrOtherIncarnation) || err.Error() != "pod web has uid u2, not u1: another incarnation" {
		t.Fatalf("got %v", err)
	}
}
