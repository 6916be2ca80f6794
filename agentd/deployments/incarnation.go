package deployments

import (
	"errors"
	"fmt"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
)

// ErrOtherIncarnation: a delete named a uid, and the deployment of that
// name has another.
var ErrOtherIncarnation = errors.New("another incarnation of the deployment")

// checkIncarnation accepts o when uid is empty or o is the deployment of
// that uid. A record that cannot be decoded is not the one named.
func checkIncarnation(o cluster.Object, uid string) error {
	if uid == "" {
		return nil
	}
	rec, err := decodeRecord(o)
	if err != nil {
		return err
	}
	if got := rec.GetDeployment().GetUid(); got != uid {
		return fmt.Errorf("%s has uid %s, not %s: %w", o.Key, got, uid, ErrOtherIncarnation)
	}
	return nil
}
