package pods

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
)

func TestZZCreateCost(t *testing.T) {
	e := newEnv(t)
	ctx := e.rt.Context(context.Background())
	img, _, _ := e.rt.EnsureImage(ctx, e.ref)
	cl := e.rt.Client()
	ci, _ := cl.GetImage(ctx, img.Ref)
	n := 20
	for _, withCfg := range []bool{true, false} {
		var total time.Duration
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("c-%v-%d", withCfg, i)
			specOpts := []oci.SpecOpts{oci.WithProcessArgs("sleep", "3600")}
			if withCfg {
				specOpts = append([]oci.SpecOpts{oci.WithImageConfig(ci)}, specOpts...)
			}
			t0 := time.Now()
			c, err := cl.NewContainer(ctx, id, client.WithSnapshotter("overlayfs"), client.WithNewSnapshot(id, ci), e.ctd.RuntimeOpt(), client.WithNewSpec(specOpts...))
			if err != nil {
				t.Fatal(err)
			}
			total += time.Since(t0)
			c.Delete(ctx, client.WithSnapshotCleanup)
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("withImageConfig=%v: %s", withCfg, total/time.Duration(n))
	}
}
