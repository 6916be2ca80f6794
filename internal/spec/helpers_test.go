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

// mutationCase is a validation table row: mutate breaks a valid spec in
// one way, and wantPath and wantMsg say the error wanted ("" for none).
type mutationCase[S any] struct {
	name     string
	mutate   func(*S)
	wantPath string
	wantMsg  string
}

// runMutations runs each case as a subtest on a fresh valid() spec and
// checks what validate reports as wantFieldError does.
func runMutations[S any](t *testing.T, tests []mutationCase[S], valid func() *S, validate func(*S) FieldErrors, only bool) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(s)
			wantFieldError(t, validate(s), tt.wantPath, tt.wantMsg, only)
		})
	}
}
