package acctest

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is the static busybox the image is built from (Debian's
// busybox-static package).
const BusyboxPath = "/bin/busybox"

// imageEpoch is the timestamp of every file, history entry and the image
// config, so that the image digest only depends on the busybox binary.
var imageEpoch = time.Unix(0, 0).UTC()

var busybox struct {
	once sync.Once
	img  v1.Image
	err  error
}

// BusyboxImage returns a single-layer linux/amd64 OCI image built from the
// host's static busybox (BusyboxPath). The layer holds /bin/busybox, a
// symlink in /bin for every applet, /etc/passwd and /etc/group with root
// and nobody, /tmp (mode 1777) and /root. The config sets
// PATH=/usr/sbin:/usr/bin:/sbin:/bin and Cmd ["sh"].
//
// Every timestamp is fixed, so the digest is stable across runs (for a
// given busybox binary). The image is built once per process and shared.
func BusyboxImage() (v1.Image, error) {
	busybox.once.Do(func() { busybox.img, busybox.err = buildBusyboxImage(BusyboxPath) })
	return busybox.img, busybox.err
}

// buildBusyboxImage does the work of BusyboxImage, uncached.
func buildBusyboxImage(path string) (v1.Image, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w (apt-get install busybox-static)", err)
	}
	if err := checkStaticAMD64(path); err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	applets, err := busyboxApplets(path)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	layerTar, err := busyboxLayerTar(bin, applets)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
	)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: layer: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: imageEpoch},
			CreatedBy: "herd acctest: static busybox from " + path,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build busybox image: append layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build busybox image: config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = "amd64"
	cfg.OS = "linux"
	cfg.Created = v1.Time{Time: imageEpoch}
	cfg.Config.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"sh"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: set config: %w", err)
	}
	// Compute the digest now, so that errors surface here and not in Push.
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("build busybox image: digest: %w", err)
	}
	return img, nil
}

// checkStaticAMD64 makes sure path is a statically linked x86-64 ELF: the
// image is linux/amd64 with nothing but busybox in it, so a dynamic binary
// would not even start.
func checkStaticAMD64(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is for %s, not x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (install busybox-static, not busybox)", path)
		}
	}
	return nil
}

// busyboxApplets lists the applets of the busybox at path, sorted.
func busyboxApplets(path string) ([]string, error) {
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", path, err)
	}
	var applets []string
	for name := range strings.FieldsSeq(string(out)) {
		if name != "busybox" && !strings.Contains(name, "/") {
			applets = append(applets, name)
		}
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", path)
	}
	sort.Strings(applets)
	return applets, nil
}

// busyboxLayerTar renders the uncompressed layer: every entry owned by
// root, every timestamp imageEpoch, entries in a fixed order.
func busyboxLayerTar(bin []byte, applets []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(h *tar.Header) *tar.Header {
		h.ModTime = imageEpoch
		h.Format = tar.FormatUSTAR
		return h
	}
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}))
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))})); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}

	steps := []func() error{
		func() error { return dir("bin", 0o755) },
		func() error { return file("bin/busybox", 0o755, bin) },
		func() error {
			for _, a := range applets {
				if err := tw.WriteHeader(hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return dir("etc", 0o755) },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
		},
		func() error { return file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\n")) },
		func() error { return dir("root", 0o700) },
		func() error { return dir("tmp", 0o1777) },
		tw.Close,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("write layer tar: %w", err)
		}
	}
	return buf.Bytes(), nil
}
