package volumes

import (
	"errors"
	"fmt"
)

// Sentinel errors, for the server to map with errors.Is: ErrNotFound →
// NotFound, ErrInvalid → InvalidArgument, ErrInUse and ErrProtected →
// FailedPrecondition, ErrNotReady → Unavailable. Validation failures are
// spec.FieldErrors (InvalidArgument) and a delete of another incarnation
// wraps spec.ErrOtherIncarnation.
var (
	ErrNotFound  = errors.New("volume not found")
	ErrInvalid   = errors.New("invalid volume change")
	ErrInUse     = errors.New("volume in use")
	ErrProtected = errors.New("volume deletion protected")
	// ErrNotReady: the manager was not started.
	ErrNotReady = errors.New("volume manager not running")
)

// sentinelError carries a complete message and matches its sentinel with
// errors.Is, so messages read naturally ("volume default/db not found").
type sentinelError struct {
	sentinel error
	msg      string
}

func (e *sentinelError) Error() string        { return e.msg }
func (e *sentinelError) Is(target error) bool { return target == e.sentinel }

func newError(sentinel error, format string, args ...any) error {
	return &sentinelError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}
