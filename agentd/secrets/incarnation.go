package secrets

import "github.com/herd-project/terraform-provider-herd/internal/spec"

// checkIncarnation accepts r when uid is empty or r is the secret of that
// uid (the uid is random per creation and kept by every later version).
func checkIncarnation(r Record, uid string) error {
	if uid != "" && r.UID != uid {
		return spec.OtherIncarnation("secret "+r.Key(), r.UID, uid)
	}
	return nil
}
