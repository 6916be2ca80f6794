package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// BenchmarkPodApply times `tofu apply` of one small herd_pod (its image
// already on the node, no probes), from the CLI's start to its exit,
// against `tofu apply` of one terraform_data resource — the CLI's own
// floor — alternating in one loop; each apply starts from an empty state
// (a destroy, not timed, follows it). It also reports agentd's own
// ApplyPod->Running time for those pods, from the node's timestamps
// (created_at to the container's started_at), so the provider's wait is
// apply-ms minus baseline-ms minus that.
func BenchmarkPodApply(b *testing.B) {
	env := acctest.SharedEnv(b)
	agent := env.Agent(b, "bapply")
	conn, err := agent.Conn()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	pods := herdv1.NewPodServiceClient(conn)
	ctx := context.Background()
	// The image is pulled once, so every measured start has it.
	startPod(b, ctx, pods, "warmup")
	deletePod(b, ctx, pods, "warmup")

	tofu, dir, rc := devTofu(b)

	herdDir, baseDir := filepath.Join(dir, "herd"), filepath.Join(dir, "base")
	writeFile(b, filepath.Join(herdDir, "main.tf"), fmt.Sprintf(`terraform {
  required_providers {
    herd = { source = "herd-project/herd" }
  }
}
provider "herd" {}
resource "herd_pod" "p" {
  node = %q
  name = "apply"
  termination_grace_period_seconds = 0
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "3600"]
  }
}
`, agent.ID(), env.Image))
	writeFile(b, filepath.Join(baseDir, "main.tf"), "resource \"terraform_data\" \"p\" {\n  input = \"apply\"\n}\n")
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
		return time.Since(t0)
	}
	apply := []string{"apply", "-auto-approve", "-input=false", "-no-color", "-lock=false"}
	destroy := []string{"destroy", "-auto-approve", "-input=false", "-no-color", "-lock=false"}
	// terraform_data's provider must be installed once; dev_overrides need no init.
	run(baseDir, "init", "-input=false", "-no-color")

	var as, bs, rs []time.Duration
	for b.Loop() {
		as = append(as, run(herdDir, apply...))
		b.StopTimer()
		p, err := pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "apply"})
		if err != nil {
			b.Fatal(err)
		}
		if cs := p.GetStatus().GetContainers(); len(cs) == 1 && cs[0].GetStartedAt() != nil && p.GetCreatedAt() != nil {
			rs = append(rs, cs[0].GetStartedAt().AsTime().Sub(p.GetCreatedAt().AsTime()))
		}
		run(herdDir, destroy...)
		b.StartTimer()

		bs = append(bs, run(baseDir, apply...))
		b.StopTimer()
		run(baseDir, destroy...)
		b.StartTimer()
	}
	a, t := median(as), median(bs)
	b.ReportMetric(ms(a), "apply-ms")
	b.ReportMetric(ms(t), "baseline-ms")
	b.ReportMetric(float64(a)/float64(t), "ratio")
	if len(rs) > 0 {
		b.ReportMetric(ms(median(rs)), "agentd-running-ms")
	}
}
