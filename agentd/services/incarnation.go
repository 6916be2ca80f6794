package services

import (
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// checkIncarnation accepts o when uid is empty or o is the service of that
// uid. A service that cannot be decoded is not the one named.
func checkIncarnation(o cluster.Object, uid string) error {
	if uid == "" {
		return nil
	}
	s, err := decode(o)
	if err != nil {
		return err
	}
	if s.GetUid() != uid {
		return spec.OtherIncarnation("service "+o.Key, s.GetUid(), uid)
	}
	return nil
}
