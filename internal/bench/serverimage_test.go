package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// serverImage builds ./benchserver (static, so it runs in the busybox
// image), adds it as /benchserver on top of the busybox test image and
// pushes that to the Env's registry. It returns the image reference.
func serverImage(tb testing.TB, env *acctest.Env) string {
	tb.Helper()
	bin, err := buildServer(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	img, err := withServerLayer(bin)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := env.Registry.Push(ctx, "herd/benchserver", "1", img)
	if err != nil {
		tb.Fatal(err)
	}
	return ref
}

// buildServer compiles the server into dir and returns the binary's bytes.
func buildServer(dir string) ([]byte, error) {
	root, err := acctest.ModuleRoot()
	if err != nil {
		return nil, fmt.Errorf("build benchserver: %w", err)
	}
	out := filepath.Join(dir, "benchserver")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./internal/bench/benchserver")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build benchserver: %w: %s", err, msg)
	}
	return os.ReadFile(out)
}

// withServerLayer is the busybox test image plus one layer holding
// /benchserver; busybox stays for the shell the pods may need.
func withServerLayer(bin []byte) (v1.Image, error) {
	base, err := acctest.BusyboxImage()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "benchserver", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("server layer: %w", err)
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, fmt.Errorf("server layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("server layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("server layer: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: time.Unix(0, 0).UTC()}, CreatedBy: "herd bench: benchserver"},
	})
	if err != nil {
		return nil, fmt.Errorf("server image: %w", err)
	}
	return img, nil
}
