package bench

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// BenchmarkPlanDeployments times `tofu plan` of 100 herd_deployment
// resources on an empty state — each one validated and dry-run (placed and
// its rollout planned) by agentd — against `tofu plan` of 100
// terraform_data resources, the CLI's own floor, alternating in one loop.
func BenchmarkPlanDeployments(b *testing.B) {
	const n = 100
	env := acctest.SharedEnv(b)
	c := env.NewCluster(b, acctest.ClusterOptions{Names: []string{"bplan-a"}, Subnet: netip.MustParsePrefix("10.83.0.0/24")})
	tofu, dir, rc := devTofu(b)

	var herd, base strings.Builder
	herd.WriteString(herdHeader)
	for i := range n {
		fmt.Fprintf(&herd, `
resource "herd_deployment" "d%[1]d" {
  node     = %[2]q
  name     = "d%[1]d"
  replicas = 2
  selector = { app = "d%[1]d" }
  template {
    labels = { app = "d%[1]d" }
    container {
      name           = "main"
      image          = %[3]q
      command        = ["sleep", "3600"]
      memory         = "64Mi"
      memory_request = "8Mi"
    }
  }
}
`, i, c.Nodes[0].Agent.ID(), env.Image)
		fmt.Fprintf(&base, "resource \"terraform_data\" \"d%d\" {\n  input = \"d%d\"\n}\n", i, i)
	}
	herdDir, baseDir := filepath.Join(dir, "herd"), filepath.Join(dir, "base")
	writeFile(b, filepath.Join(herdDir, "main.tf"), herd.String())
	writeFile(b, filepath.Join(baseDir, "main.tf"), base.String())
	tfEnv := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1",
		"HERD_CA_CERT="+env.Certs.CAFile, "HERD_CLIENT_CERT="+env.Certs.ClientCertFile, "HERD_CLIENT_KEY="+env.Certs.ClientKeyFile)
	run := func(dir string, args ...string) time.Duration {
		cmd := exec.Command(tofu, append([]string{"-chdir=" + dir}, args...)...)
		cmd.Env = tfEnv
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("tofu %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
		}
		if args[0] == "plan" && dir == herdDir && !strings.Contains(string(out), fmt.Sprintf("%d to add", n)) {
			b.Fatalf("tofu plan: want %d to add:\n%s", n, out)
		}
		return time.Since(t0)
	}
	// terraform_data's provider must be installed once; dev_overrides need no init.
	run(baseDir, "init", "-input=false", "-no-color")
	var hs, bs []time.Duration
	for b.Loop() {
		hs = append(hs, run(herdDir, "plan", "-input=false", "-no-color", "-lock=false"))
		bs = append(bs, run(baseDir, "plan", "-input=false", "-no-color", "-lock=false"))
	}
	h, t := median(hs), median(bs)
	b.ReportMetric(ms(h)/1000, "plan-s")
	b.ReportMetric(ms(t)/1000, "baseline-s")
	b.ReportMetric(float64(h)/float64(t), "ratio")
}

// devTofu returns the tofu CLI, a temporary directory, and a CLI config
// file in it that points herd-project/herd at a provider built from this
// tree (dev_overrides).
func devTofu(b *testing.B) (tofu, dir, rc string) {
	tofu, err := acctest.Tool("tofu")
	if err != nil {
		b.Fatal(err)
	}
	dir = b.TempDir()
	root, err := acctest.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", "terraform-provider-herd"), ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the provider: %v\n%s", err, out)
	}
	rc = filepath.Join(dir, "cli.tfrc")
	writeFile(b, rc, fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"herd-project/herd\" = %q\n  }\n  direct {}\n}\n", filepath.Join(dir, "bin")))
	return tofu, dir, rc
}

// herdHeader opens a configuration that uses the herd provider.
const herdHeader = "terraform {\n  required_providers {\n    herd = { source = \"herd-project/herd\" }\n  }\n}\nprovider \"herd\" {}\n"

func writeFile(b *testing.B, path, content string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}
