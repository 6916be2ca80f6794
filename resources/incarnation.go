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

// replacedIsGone maps the error of a delete that named uid: agentd refuses
// with FailedPrecondition when the object of that name has another uid, and
// then ours is gone (the other one is someone else's, and stays). current
// reads the uid the name holds now; NotFound there means gone too.
func replacedIsGone(ctx context.Context, err error, uid string, current func(context.Context) (string, error)) error {
	if uid == "" || status.Code(err) != codes.FailedPrecondition {
		return err
	}
	got, gerr := current(ctx)
	if status.Code(gerr) == codes.NotFound || (gerr == nil && got != uid) {
		return nil
	}
	return err
}
