package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// BenchmarkPlanPods times `tofu plan` of 500 herd_pod resources that are
// already applied — the plan refreshes every pod from its node and finds
// nothing to change — right after the creating apply and in the steady
// state (after an apply that changed nothing), against `tofu plan` of 500 terraform_data resources
// with a state, the CLI's own floor, alternating in one loop.
func BenchmarkPlanPods(b *testing.B) {
	const n = 500
	env := acctest.SharedEnv(b)
	c := env.NewCluster(b, acctest.ClusterOptions{
		Names:  []string{"bplanpods-a"},
		Subnet: netip.MustParsePrefix("10.86.0.0/24"),
		Mutate: func(o *acctest.AgentOptions) {
			// A /24 pod CIDR holds 254 pods; 500 need a /22. The last
			// flag wins.
			o.ExtraArgs = append(o.ExtraArgs, "--node-cidr-bits", "22")
		},
	})
	node := c.Nodes[0]
	// The cluster's own cleanup deletes pods one by one within a minute;
	// deleting 500 takes longer, so do it here first, in parallel (this
	// cleanup runs before the cluster's).
	b.Cleanup(func() { deleteAllPods(node.Pods) })
	tofu, dir, rc := devTofu(b)

	var herd, base strings.Builder
	herd.WriteString(herdHeader)
	for i := range n {
		fmt.Fprintf(&herd, `
resource "herd_pod" "p%[1]d" {
  node                             = %[2]q
  name                             = "p%[1]d"
  termination_grace_period_seconds = 0
  container {
    name    = "main"
    image   = %[3]q
    command = ["sleep", "3600"]
    memory  = "16Mi"
  }
}
`, i, node.Agent.ID(), env.Image)
		fmt.Fprintf(&base, "resource \"terraform_data\" \"d%d\" {\n  input = \"d%d\"\n}\n", i, i)
	}
	herdDir, baseDir := filepath.Join(dir, "herd"), filepath.Join(dir, "base")
	writeFile(b, filepath.Join(herdDir, "main.tf"), herd.String())
	writeFile(b, filepath.Join(baseDir, "main.tf"), base.String())
	tfEnv := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1",
		"HERD_CA_CERT="+env.Certs.CAFile, "HERD_CLIENT_CERT="+env.Certs.ClientCertFile, "HERD_CLIENT_KEY="+env.Certs.ClientKeyFile)
	var (
		lastCPU time.Duration
		runEnv  func(env []string, dir string, args ...string) time.Duration
	)
	run := func(dir string, args ...string) time.Duration {
		return runEnv(tfEnv, dir, args...)
	}
	runEnv = func(env []string, dir string, args ...string) time.Duration {
		cmd := exec.Command(tofu, append([]string{"-chdir=" + dir}, args...)...)
		cmd.Env = env
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("tofu %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
		}
		if args[0] == "plan" && !strings.Contains(string(out), "No changes.") {
			b.Fatalf("tofu plan in %s: want no changes:\n%s", dir, out)
		}
		took := time.Since(t0)
		lastCPU = cpuOf(cmd.ProcessState)
		return took
	}
	// terraform_data's provider must be installed once; dev_overrides need no init.
	run(baseDir, "init", "-input=false", "-no-color")
	// Both states hold every resource: the plans refresh, they create nothing.
	run(baseDir, "apply", "-input=false", "-no-color", "-auto-approve", "-lock=false")
	run(herdDir, "apply", "-input=false", "-no-color", "-auto-approve", "-lock=false", "-parallelism=20")
	plan := []string{"plan", "-input=false", "-no-color", "-lock=false"}
	// The first plan after the creating apply refreshes every pod in full:
	// the state holds no record of a refresh yet (a plan's refresh is not
	// saved). An apply that changes nothing saves one, and the plans after
	// it, the steady state of a plan/apply loop, are the figure.
	first, firstBase := run(herdDir, plan...), run(baseDir, plan...)
	run(herdDir, "apply", "-input=false", "-no-color", "-auto-approve", "-lock=false", "-parallelism=20")
	run(baseDir, "apply", "-input=false", "-no-color", "-auto-approve", "-lock=false")
	var hs, bs, hcpu, bcpu []time.Duration
	for b.Loop() {
		hs = append(hs, run(herdDir, plan...))
		hcpu = append(hcpu, lastCPU)
		bs = append(bs, run(baseDir, plan...))
		bcpu = append(bcpu, lastCPU)
	}
	b.StopTimer()
	// Where the time goes: one more plan with the provider started apart
	// (debug mode), so OpenTofu's own CPU is read without the provider's.
	// The provider's share is the difference from the plans above: in
	// debug mode its own logging setup differs, so its CPU there is not
	// what a user's plan costs.
	_, reattach := debugProvider(b, filepath.Join(dir, "bin", "terraform-provider-herd"), tfEnv)
	runEnv(append(tfEnv, "TF_REATTACH_PROVIDERS="+reattach), herdDir, plan...)
	tofuCPU := lastCPU
	b.ReportMetric(ms(median(hcpu))/1000, "plan-cpu-s")
	b.ReportMetric(ms(tofuCPU)/1000, "tofu-cpu-s")
	b.ReportMetric(ms(median(hcpu)-tofuCPU)/1000, "provider-cpu-s")
	b.ReportMetric(ms(median(bcpu))/1000, "baseline-cpu-s")
	h, t := median(hs), median(bs)
	b.ReportMetric(ms(h)/1000, "plan-s")
	b.ReportMetric(ms(t)/1000, "baseline-s")
	b.ReportMetric(float64(h)/float64(t), "ratio")
	b.ReportMetric(ms(first)/1000, "first-plan-s")
	b.ReportMetric(ms(firstBase)/1000, "first-baseline-s")
	b.ReportMetric(ms(percentile(hs, 0))/1000, "plan-min-s")
	b.ReportMetric(ms(percentile(hs, 1))/1000, "plan-max-s")
}

// deleteAllPods deletes every pod of the node, a few at a time, without a
// grace period (best effort: cleanup).
func deleteAllPods(pods herdv1.PodServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	list, err := pods.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil {
		return
	}
	var grace int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, p := range list.GetPods() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, _ = pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: p.GetSpec().GetName(), GracePeriodSeconds: &grace, SkipDrain: true})
		}()
	}
	wg.Wait()
}
