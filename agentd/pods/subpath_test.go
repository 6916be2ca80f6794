package pods

import (
	"os"
	"path/filepath"
	"testing"
)

// What subDir checked is what gets mounted: once the sub_path is open, a
// writer of the volume that swaps the directory for a symlink to the host
// (the window before runc mounts it) changes nothing, because the pin is
// a bind mount of the opened directory; the pin goes with unpin.
func TestSubPathPinnedAgainstSwap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	vol, outside := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(vol, "app", "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "app", "logs", "mine"), []byte("volume"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "host-secret"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := subDir(vol, "app/logs")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The swap: app/logs becomes a symlink out of the volume.
	if err := os.Rename(filepath.Join(vol, "app", "logs"), filepath.Join(vol, "app", "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(vol, "app", "logs")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "pin")
	if err := pinDir(f, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unpin(target) })
	if got, err := os.ReadFile(filepath.Join(target, "mine")); err != nil || string(got) != "volume" {
		t.Errorf("the pin shows %q, %v; want the volume's own file", got, err)
	}
	if _, err := os.Stat(filepath.Join(target, "host-secret")); err == nil {
		t.Error("the pin shows the host directory the symlink points to")
	}
	// A fresh resolution now refuses the symlink.
	if g, err := subDir(vol, "app/logs"); err == nil {
		g.Close()
		t.Error("subDir accepted a symlink")
	}
	if err := unpin(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "mine")); !os.IsNotExist(err) {
		t.Errorf("after unpin the target still shows the volume: %v", err)
	}
}
