package secrets

import (
	"errors"
	"fmt"
)

// ErrOtherIncarnation: a delete named a uid, and the secret of that name
// has another.
var ErrOtherIncarnation = errors.New("another incarnation of the secret")

// checkIncarnation accepts r when uid is empty or r is the secret of that
// uid (the uid is random per creation and kept by every later version).
func checkIncarnation(r Record, uid string) error {
	if uid != "" && r.UID != uid {
		return fmt.Errorf("%s has uid %s, not %s: %w", r.Key(), r.UID, uid, ErrOtherIncarnation)
	}
	return nil
}
