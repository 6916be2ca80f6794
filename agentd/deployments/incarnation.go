package deployments

import (
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

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
		return spec.OtherIncarnation("deployment "+o.Key, got, uid)
	}
	return nil
}
