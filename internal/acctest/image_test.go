package acctest

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI: %v", BusyboxPath, err)
		}
		t.Skipf("%s missing (apt-get install busybox-static): %v", BusyboxPath, err)
	}
}

func TestBusyboxImageDeterministic(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	a, err := buildBusyboxImage(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildBusyboxImage(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	again, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	if cached != again {
		t.Error("BusyboxImage built the image twice")
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	dc, _ := cached.Digest()
	if da != db || da != dc {
		t.Errorf("digests differ between builds: %s, %s, %s", da, db, dc)
	}
	t.Logf("busybox image digest %s", da)
}

func TestBusyboxImageContent(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}

	mt, err := img.MediaType()
	if err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s (%v), want %s", mt, err, types.OCIManifestSchema1)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("config media type %s, want %s", m.Config.MediaType, types.OCIConfigJSON)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Fatalf("want one %s layer, got %+v", types.OCILayer, m.Layers)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if len(cfg.Config.Env) != 1 || cfg.Config.Env[0] != "PATH=/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("env %q", cfg.Config.Env)
	}
	if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "sh" {
		t.Errorf("cmd %q", cfg.Config.Cmd)
	}
	if !cfg.Created.Equal(imageEpoch) {
		t.Errorf("created %s, want %s", cfg.Created.Time, imageEpoch)
	}

	entries := layerEntries(t, img)
	want := map[string]struct {
		typ  byte
		mode int64
		link string
	}{
		"bin/":        {tar.TypeDir, 0o755, ""},
		"bin/busybox": {tar.TypeReg, 0o755, ""},
		"bin/sh":      {tar.TypeSymlink, 0o777, "busybox"},
		"bin/sleep":   {tar.TypeSymlink, 0o777, "busybox"},
		"bin/echo":    {tar.TypeSymlink, 0o777, "busybox"},
		"etc/passwd":  {tar.TypeReg, 0o644, ""},
		"etc/group":   {tar.TypeReg, 0o644, ""},
		"root/":       {tar.TypeDir, 0o700, ""},
		"tmp/":        {tar.TypeDir, 0o1777, ""},
	}
	for name, w := range want {
		h, ok := entries[name]
		if !ok {
			t.Errorf("layer lacks %s", name)
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Linkname != w.link {
			t.Errorf("%s: type %c mode %o link %q, want type %c mode %o link %q", name, h.Typeflag, h.Mode, h.Linkname, w.typ, w.mode, w.link)
		}
		if !h.ModTime.Equal(imageEpoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %s uid %d gid %d, want epoch and root", name, h.ModTime, h.Uid, h.Gid)
		}
	}
	applets, err := busyboxApplets(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if _, ok := entries["bin/"+a]; !ok {
			t.Errorf("no /bin/%s symlink", a)
		}
	}
	if bin, _ := os.Stat(BusyboxPath); entries["bin/busybox"].Size != bin.Size() {
		t.Errorf("bin/busybox is %d bytes, %s is %d", entries["bin/busybox"].Size, BusyboxPath, bin.Size())
	}
	t.Logf("%d layer entries, %d applets", len(entries), len(applets))
}

// layerEntries reads the headers of the image's single layer.
func layerEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := entries[h.Name]; dup {
			t.Errorf("duplicate layer entry %s", h.Name)
		}
		entries[h.Name] = h
	}
	return entries
}

func TestCheckStaticAMD64RejectsDynamic(t *testing.T) {
	t.Parallel()
	// The test binary itself may be static; /bin/ls never is on Debian.
	if _, err := os.Stat("/bin/ls"); err != nil {
		t.Skip("no /bin/ls")
	}
	if err := checkStaticAMD64("/bin/ls"); err == nil {
		t.Error("/bin/ls accepted as a static binary")
	}
}
