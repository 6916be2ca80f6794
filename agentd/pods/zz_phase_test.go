package pods

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
)

func TestZZPhases(t *testing.T) {
	e := newEnv(t)
	ctx := e.rt.Context(context.Background())
	img, _, _ := e.rt.EnsureImage(ctx, e.ref)
	cl := e.rt.Client()
	ci, _ := cl.GetImage(ctx, img.Ref)
	logDir := t.TempDir()
	var tc, tt, ts, tw time.Duration
	n := 20
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("raw-%d", i)
		t0 := time.Now()
		c, err := cl.NewContainer(ctx, id, client.WithSnapshotter("overlayfs"), client.WithNewSnapshot(id, ci), e.ctd.RuntimeOpt(),
			client.WithNewSpec(oci.WithImageConfig(ci), oci.WithProcessArgs("sleep", "3600")))
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		task, err := c.NewTask(ctx, cio.LogFile(filepath.Join(logDir, id+".log")))
		if err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		ch, _ := task.Wait(ctx)
		t3 := time.Now()
		task.Start(ctx)
		t4 := time.Now()
		tc += t1.Sub(t0); tt += t2.Sub(t1); tw += t3.Sub(t2); ts += t4.Sub(t3)
		task.Kill(ctx, 9)
		<-ch
		task.Delete(ctx)
		c.Delete(ctx, client.WithSnapshotCleanup)
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("create %s newtask %s wait %s start %s", tc/time.Duration(n), tt/time.Duration(n), tw/time.Duration(n), ts/time.Duration(n))
}
