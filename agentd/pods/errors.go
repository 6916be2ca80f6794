package pods

import (
	"errors"
	"fmt"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
)

// Sentinel errors. The gRPC server maps them to codes with errors.Is:
// ErrNotFound → NotFound, ErrConflict → AlreadyExists, ErrForeign →
// FailedPrecondition, ErrNotReady → Unavailable, ErrSecretUnavailable
// (secrets.go) → FailedPrecondition. Validation failures are
// spec.FieldErrors → InvalidArgument.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrForeign is runtime.ErrForeign: an object herd would have to touch
	// lacks the safety marker.
	ErrForeign = runtime.ErrForeign
	// ErrNotReady: the manager was not started, or was closed.
	ErrNotReady = errors.New("pod manager not running")
	// ErrVolumeUnavailable: a volume the pod mounts is not on this node
	// (or not usable); ErrVolumeInUse: another pod writes it. Both are
	// FailedPrecondition.
	ErrVolumeUnavailable = errors.New("volume unavailable")
	ErrVolumeInUse       = errors.New("volume in use")
)

// sentinelError carries a complete message and matches its sentinel with
// errors.Is, so messages read naturally ("pod web not found").
type sentinelError struct {
	sentinel error
	msg      string
}

func (e *sentinelError) Error() string        { return e.msg }
func (e *sentinelError) Is(target error) bool { return target == e.sentinel }

func newError(sentinel error, format string, args ...any) error {
	return &sentinelError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}
