package resources

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errReplaced: the name holds another incarnation than the one in state
// (deleted and recreated by someone else); ours is gone.
var errReplaced = errors.New("replaced by another incarnation")

// replacedIsGone maps the error of a delete that named uid to nil when our
// object is gone: the delete found nothing (NotFound), or agentd refused
// with FailedPrecondition because the name holds another uid (someone
// else's object, which stays). current reads the uid the name holds now;
// NotFound there means gone too.
func replacedIsGone(ctx context.Context, err error, uid string, current func(context.Context) (string, error)) error {
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if uid == "" || status.Code(err) != codes.FailedPrecondition {
		return err
	}
	got, gerr := current(ctx)
	if status.Code(gerr) == codes.NotFound || (gerr == nil && got != uid) {
		return nil
	}
	return err
}
