package spec

import (
	"testing"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// TestDefaultedReplicaLabels: a replica (PodSpec.deployment set) carries
// its deployment's labels once defaulted; other pods get none.
func TestDefaultedReplicaLabels(t *testing.T) {
	d := Defaulted(&herdv1.PodSpec{Name: "web-2-abcde", Labels: map[string]string{"app": "web"},
		Deployment: &herdv1.DeploymentRef{Name: "web", Revision: 2, Uid: "u"}})
	if got := d.GetLabels(); got[LabelDeployment] != "default.web" || got[LabelRevision] != "2" || got["app"] != "web" {
		t.Fatalf("labels %v", got)
	}
	if got := Defaulted(&herdv1.PodSpec{Name: "p"}).GetLabels(); len(got) != 0 {
		t.Fatalf("a plain pod got labels %v", got)
	}
}
