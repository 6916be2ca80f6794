package resources_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/provider"
)

// The CLI used by terraform-plugin-testing:
//
//   - TF_ACC_TERRAFORM_PATH, when set, is used as is;
//   - otherwise HERD_TEST_CLI ("tofu", the default, or "terraform") picks a
//     binary that scripts/tool.sh built into its cache, at the version
//     pinned in tools/<cli>/go.mod (acctest.Tool).
//
// When neither exists, tests that need a CLI are skipped (there is no
// network to download one from); build it with `scripts/tool.sh tofu`.
var cliSkipReason string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// A hermetic, empty CLI configuration: a developer's dev_overrides or
	// provider_installation must not change what the tests run, and a
	// TF_CLI_CONFIG_FILE naming a missing file makes the CLI print a
	// warning on stdout, which breaks `version -json` parsing.
	dir, err := os.MkdirTemp("", "herd-cli-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cliConfig := filepath.Join(dir, "cli.tfrc")
	if err := os.WriteFile(cliConfig, nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("TF_CLI_CONFIG_FILE", cliConfig)

	// terraform-plugin-testing registers the in-process provider for
	// reattach under HOST/NAMESPACE/herd for each namespace, by default
	// both "-" and "hashicorp" (HOST: TF_ACC_PROVIDER_HOST, default
	// registry.terraform.io). OpenTofu refuses the whole
	// TF_REATTACH_PROVIDERS when it holds "registry.terraform.io/-/herd"
	// (the legacy namespace "-" is valid only with registry.opentofu.org).
	// One explicit namespace avoids "-" and works with both CLIs; it is
	// also the provider's real address (registry.terraform.io/herd-project/herd).
	if os.Getenv("TF_ACC_PROVIDER_NAMESPACE") == "" {
		os.Setenv("TF_ACC_PROVIDER_NAMESPACE", "herd-project")
	}

	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		if p, err := cachedCLI(); err != nil {
			cliSkipReason = err.Error()
		} else {
			os.Setenv("TF_ACC_TERRAFORM_PATH", p)
		}
	}
	// acctest.Main tears down the shared containerd, registry and agentd
	// binary that the acceptance tests start on first use.
	return acctest.Main(m)
}

func cachedCLI() (string, error) {
	name := os.Getenv("HERD_TEST_CLI")
	if name == "" {
		name = "tofu"
	}
	if name != "tofu" && name != "terraform" {
		return "", fmt.Errorf("HERD_TEST_CLI=%q: want tofu or terraform", name)
	}
	p, err := acctest.Tool(name)
	if err != nil {
		return "", fmt.Errorf("no %s CLI: set TF_ACC_TERRAFORM_PATH or build it: %w", name, err)
	}
	return p, nil
}

// needCLI skips a test that runs a Terraform CLI when none is available.
func needCLI(t *testing.T) {
	t.Helper()
	if cliSkipReason != "" {
		t.Skip(cliSkipReason)
	}
}

// providerFactories serves the provider in-process to the CLI.
func providerFactories() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"herd": provider.ServerWithError("test"),
	}
}

// errRe builds a regexp that finds the parts in order, anywhere in the CLI
// output. The CLI wraps long lines, so each space in a part matches any run
// of whitespace.
func errRe(parts ...string) *regexp.Regexp {
	quoted := make([]string, len(parts))
	for i, p := range parts {
		quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(p), " ", `\s+`)
	}
	return regexp.MustCompile(`(?s)` + strings.Join(quoted, ".*"))
}
