// Package bench holds the benchmarks `make bench` reports. Each compares
// herd with the baseline an issue names, measured in the same run on the
// same containerd.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestMain(m *testing.M) { os.Exit(acctest.Main(m)) }

var sleepCmd = []string{"sleep", "3600"}

// BenchmarkPodStart compares, for the same image already present on the
// node, the time from ApplyPod (over mTLS gRPC to a real agentd) until the
// pod reports Running, with containerd's own create + start through its Go
// client — what any runtime on containerd has to pay. The two are measured
// alternately in one loop, so load on a shared machine hits both alike, and
// reported as medians.
func BenchmarkPodStart(b *testing.B) {
	env := acctest.SharedEnv(b)
	agent := env.Agent(b, "bench")
	conn, err := agent.Conn()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	pods := herdv1.NewPodServiceClient(conn)
	ctx := context.Background()
	// Warm up: the image is pulled once, so every measured start has it.
	startPod(b, ctx, pods, "warmup")
	deletePod(b, ctx, pods, "warmup")

	cl := env.Containerd.Client()
	rawCtx := namespaces.WithNamespace(ctx, "bench-raw-"+env.ID)
	img, err := acctest.PullImage(rawCtx, cl, env.Image, acctest.NewResolver(env.Registry.Host(), "", ""))
	if err != nil {
		b.Fatal(err)
	}
	logDir := b.TempDir()

	var herd, raw []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		t0 := time.Now()
		startPod(b, ctx, pods, name)
		herd = append(herd, time.Since(t0))

		id := fmt.Sprintf("raw-%d", i)
		t0 = time.Now()
		c, err := cl.NewContainer(rawCtx, id,
			client.WithImage(img),
			client.WithSnapshotter(acctest.Snapshotter),
			client.WithNewSnapshot(id, img),
			client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(sleepCmd...)))
		if err != nil {
			b.Fatal(err)
		}
		task, err := c.NewTask(rawCtx, cio.LogFile(filepath.Join(logDir, id+".log")))
		if err != nil {
			b.Fatal(err)
		}
		if err := task.Start(rawCtx); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))

		b.StopTimer()
		deletePod(b, ctx, pods, name)
		if _, err := task.Delete(rawCtx, client.WithProcessKill); err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(rawCtx, client.WithSnapshotCleanup); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	h, r := median(herd), median(raw)
	b.ReportMetric(ms(h), "herd-ms")
	b.ReportMetric(ms(r), "containerd-ms")
	b.ReportMetric(ms(percentile(herd, 0.9)), "herd-p90-ms")
	b.ReportMetric(ms(percentile(raw, 0.9)), "containerd-p90-ms")
	b.ReportMetric(float64(h)/float64(r), "ratio")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func startPod(b *testing.B, ctx context.Context, pods herdv1.PodServiceClient, name string) {
	_, err := pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{
		Name:       name,
		Containers: []*herdv1.ContainerSpec{{Name: "app", Image: acctest.SharedEnv(b).Image, Command: sleepCmd}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		p, err := pods.GetPod(ctx, &herdv1.GetPodRequest{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		if running(p) {
			return
		}
		if p.GetStatus().GetPhase() == "Failed" {
			b.Fatalf("pod %s failed: %v", name, p.GetStatus())
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("pod %s not running after a minute", name)
}

func running(p *herdv1.Pod) bool {
	if p.GetStatus().GetPhase() != "Running" || len(p.GetStatus().GetContainers()) != len(p.GetSpec().GetContainers()) {
		return false
	}
	for _, c := range p.GetStatus().GetContainers() {
		if c.GetState() != "running" {
			return false
		}
	}
	return true
}

func deletePod(b *testing.B, ctx context.Context, pods herdv1.PodServiceClient, name string) {
	zero := int64(0)
	if _, err := pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: name, GracePeriodSeconds: &zero}); err != nil {
		b.Fatal(err)
	}
}
