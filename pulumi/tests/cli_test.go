package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
)

// pulumiCLI is the Pulumi CLI for the end-to-end tests: HERD_PULUMI_CLI
// when set (make test-pulumi sets it), else the binary scripts/tool.sh
// built into its cache at the version pinned in tools/pulumi/go.mod. There
// is no network to download one from: without it the test skips, and
// fails under CI.
func pulumiCLI(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HERD_PULUMI_CLI")
	if p == "" {
		var err error
		if p, err = cachedPulumi(); err != nil {
			needOrSkip(t, err.Error())
		}
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		needOrSkip(t, fmt.Sprintf("no Pulumi CLI at %s: build it with `scripts/tool.sh pulumi`", p))
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

func cachedPulumi() (string, error) {
	ver, err := pinnedVersion(filepath.Join("..", "..", "tools", "pulumi", "go.mod"), "github.com/pulumi/pulumi/pkg/v3")
	if err != nil {
		return "", err
	}
	cache := os.Getenv("HERD_TOOLS_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "herd", "tools")
	}
	return filepath.Join(cache, "pulumi-"+ver, "pulumi"), nil
}

func pinnedVersion(gomod, module string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module && strings.HasPrefix(fields[1], "v") {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s: no version of %s", gomod, module)
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
