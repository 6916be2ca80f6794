package pods

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// settle lets the previous iteration's shim exit and containerd finish
// its clean-up before the next timed start, so that both benchmarks
// measure a quiet node (on 2 cores the clean-up otherwise overlaps the
// next start).
const settle = 200 * time.Millisecond

// BenchmarkPodStart measures Apply → every container running (status
// published), with the image present: herd's fast path. Compare with
// BenchmarkRawContainerdStart.
func BenchmarkPodStart(b *testing.B) {
	e := newEnv(b)
	m := e.manager(b, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	ctx := context.Background()
	zero := time.Duration(0)
	// Pull the image first.
	if _, _, err := m.Apply(ctx, e.pod("warmup", "", "sleep", "3600")); err != nil {
		b.Fatal(err)
	}
	if _, err := m.WaitFor(ctx, "warmup", allRunning); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Delete(ctx, "warmup", &zero); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench-%d", i)
		if _, _, err := m.Apply(ctx, e.pod(name, "", "sleep", "3600")); err != nil {
			b.Fatal(err)
		}
		if _, err := m.WaitFor(ctx, name, allRunning); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := m.Delete(ctx, name, &zero); err != nil {
			b.Fatal(err)
		}
		time.Sleep(settle)
		b.StartTimer()
	}
}

// BenchmarkRawContainerdStart is the floor: the same image and process
// with the bare containerd client — NewContainer (new snapshot, spec from
// the image config), NewTask with a cio.LogFile, Start.
func BenchmarkRawContainerdStart(b *testing.B) {
	e := newEnv(b)
	ctx := e.rt.Context(context.Background())
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		b.Fatal(err)
	}
	cl := e.rt.Client()
	ci, err := cl.GetImage(ctx, img.Ref)
	if err != nil {
		b.Fatal(err)
	}
	logDir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("raw-%d", i)
		c, err := cl.NewContainer(ctx, id,
			client.WithSnapshotter(e.rt.Snapshotter()),
			client.WithNewSnapshot(id, ci),
			e.ctd.RuntimeOpt(),
			client.WithNewSpec(oci.WithImageConfig(ci), oci.WithProcessArgs("sleep", "3600")),
		)
		if err != nil {
			b.Fatal(err)
		}
		task, err := c.NewTask(ctx, cio.LogFile(filepath.Join(logDir, id+".log")))
		if err != nil {
			b.Fatal(err)
		}
		if err := task.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
			b.Fatal(err)
		}
		time.Sleep(settle)
		b.StartTimer()
	}
}
