package spec

import (
	"strings"
	"testing"
)

// wantFieldError checks what a validation table case got: no error when
// wantPath is "", otherwise an error at wantPath whose message contains
// wantMsg, and with only, no other error besides.
func wantFieldError(t *testing.T, errs FieldErrors, wantPath, wantMsg string, only bool) {
	t.Helper()
	if wantPath == "" {
		if len(errs) != 0 {
			t.Fatalf("unexpected errors: %v", errs)
		}
		return
	}
	if only && len(errs) != 1 {
		t.Fatalf("want one error at %s containing %q, got %d: %v", wantPath, wantMsg, len(errs), errs)
	}
	for _, e := range errs {
		if e.Path.String() == wantPath && strings.Contains(e.Msg, wantMsg) {
			return
		}
	}
	t.Fatalf("want error at %s containing %q, got %v", wantPath, wantMsg, errs)
}
