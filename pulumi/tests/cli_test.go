package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
)

// pulumiCLI is the Pulumi CLI for the end-to-end tests: HERD_PULUMI_CLI
// when set (make test-pulumi sets it), else the binary scripts/tool.sh
// built into its cache at the version pinned in tools/pulumi/go.mod
// (acctest.Tool). There is no network to download one from: without it the
// test skips, and fails under CI.
func pulumiCLI(t *testing.T) string {
	t.Helper()
	p, err := acctest.Tool("pulumi")
	if err != nil {
		needOrSkip(t, err.Error())
	}
	return p
}

func needOrSkip(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("needed in CI: %s", reason)
	}
	t.Skip(reason)
}

var pluginBuild struct {
	once sync.Once
	path string
	err  error
}

// pluginBinary builds pulumi-resource-herd once per test binary (from the
// build cache the test binary itself was compiled with).
func pluginBinary(t *testing.T) string {
	t.Helper()
	pluginBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "herd-pulumi-plugin-")
		if err != nil {
			pluginBuild.err = err
			return
		}
		builtDirs = append(builtDirs, dir)
		pluginBuild.path = filepath.Join(dir, "pulumi-resource-"+provider.Name)
		cmd := exec.Command("go", "build", "-o", pluginBuild.path, "./provider/cmd/pulumi-resource-"+provider.Name)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginBuild.err = fmt.Errorf("build the plugin: %v\n%s", err, out)
		}
	})
	if pluginBuild.err != nil {
		t.Fatal(pluginBuild.err)
	}
	return pluginBuild.path
}
