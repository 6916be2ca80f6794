package spec

import (
	"errors"
	"fmt"
)

// ErrOtherIncarnation: a delete named the uid its caller read, and the
// object of that name now has another (it was deleted and made again since
// the read). That object is kept: it is someone else's.
var ErrOtherIncarnation = errors.New("another incarnation")

// OtherIncarnation is the error for what (e.g. "pod web") holding uid got
// when the delete named want; it wraps ErrOtherIncarnation.
func OtherIncarnation(what, got, want string) error {
	return fmt.Errorf("%s has uid %s, not %s: %w", what, got, want, ErrOtherIncarnation)
}
