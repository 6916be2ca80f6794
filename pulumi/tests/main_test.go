// Package tests runs the bridged Pulumi provider against real agentd
// processes (internal/acctest): in process through the bridge's provider
// interface, and end to end through the real Pulumi CLI with the Automation
// API. Tests that need root and containerd skip without them locally and
// fail under CI=true (acctest.SharedEnv); tests that need the Pulumi CLI do
// the same when it is missing.
package tests

import (
	"os"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestMain(m *testing.M) {
	code := acctest.Main(m)
	cleanupBuilt()
	os.Exit(code)
}
