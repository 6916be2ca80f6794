package acctest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// A typical real-system test: private containerd, registry behind basic
// auth, busybox pushed, pulled with credentials and run.
func Example() {
	var t *testing.T // the test's *testing.T

	ctd := acctest.ContainerdForTest(t) // skips without root/containerd
	reg := acctest.RegistryForTest(t, acctest.WithBasicAuth("herd", "s3cret"))

	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctd.Context(context.Background()) // the instance's own namespace
	ref, err := reg.Push(ctx, "herd/busybox", "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	// reg.Resolver() is NewResolver(reg.Host(), "herd", "s3cret").
	image, err := acctest.PullImage(ctx, ctd.Client(), ref, reg.Resolver())
	if err != nil {
		t.Fatal(err)
	}
	code, err := ctd.RunContainer(ctx, image, "hello", t.TempDir()+"/out.log", "echo", "hello-herd")
	fmt.Println(code, err)
}
