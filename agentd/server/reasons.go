package server

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// reasoner is implemented by engine errors that name their
// google.rpc.ErrorInfo reason (a herdv1.Reason constant). It keeps this
// package free of the engine's error types, as ErrorMapper does.
type reasoner interface {
	ErrorReason() string
}

// withReason adds the ErrorInfo of the first reasoner in err's chain to st,
// so that clients need not read the message to tell the failure apart.
func withReason(st *status.Status, err error) *status.Status {
	var r reasoner
	if !errors.As(err, &r) {
		return st
	}
	d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: r.ErrorReason(), Domain: herdv1.ErrorDomain})
	if derr != nil {
		return st
	}
	return d
}
