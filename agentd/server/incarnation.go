package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxDeleteUID bounds the uid a delete may name (uids are 32 hex digits;
// pods allow the same).
const maxDeleteUID = 64

func checkDeleteUID(uid string) error {
	if len(uid) > maxDeleteUID {
		return status.Errorf(codes.InvalidArgument, "uid: at most %d characters, got %d", maxDeleteUID, len(uid))
	}
	return nil
}

// replacedStatus is the answer to a delete that named a uid the object no
// longer has: the caller's object is gone, and the one of that name now is
// someone else's, which stays.
func replacedStatus(doing string, err error) error {
	return status.Errorf(codes.FailedPrecondition, "%s: %v: it was replaced since you read it; read it again", doing, err)
}
