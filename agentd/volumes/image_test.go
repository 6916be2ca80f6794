package volumes

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCreateImageFailureLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing []byte // content of a file already at the path
		size     int64
	}{
		{name: "too small for ext4", size: 4096},
		{name: "path taken", existing: []byte("someone else's"), size: 16 * mi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(testDir(t), "x.img")
			if tc.existing != nil {
				if err := os.WriteFile(img, tc.existing, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := CreateImage(t.Context(), img, tc.size); err == nil {
				t.Fatal("CreateImage succeeded")
			}
			got, err := os.ReadFile(img)
			switch {
			case tc.existing == nil && !os.IsNotExist(err):
				t.Fatalf("image left behind (err %v)", err)
			case tc.existing != nil && !bytes.Equal(got, tc.existing):
				t.Fatalf("existing file changed: %q, %v", got, err)
			}
		})
	}
}

func TestImageMountIdempotent(t *testing.T) {
	dir := testDir(t)
	img, mnt := filepath.Join(dir, "a.img"), filepath.Join(dir, "mnt")
	if err := CreateImage(t.Context(), img, 16*mi); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := Mount(t.Context(), img, mnt); err != nil {
			t.Fatal(err)
		}
	}
	if got := testLoops(t, img); len(got) != 1 {
		t.Fatalf("loop devices of the image: %v, want one", got)
	}
	if n := mountsAt(t, mnt); n != 1 {
		t.Fatalf("%d mounts at the mount point, want 1", n)
	}
	if ok, err := Mounted(mnt); !ok || err != nil {
		t.Fatalf("Mounted = %v, %v", ok, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil || sfs.Type != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("statfs: type %#x, %v; want ext4", sfs.Type, err)
	}
	if err := Unmount(t.Context(), img, mnt); err != nil {
		t.Fatal(err)
	}
	if got := testLoops(t, img); len(got) != 0 {
		t.Fatalf("loop devices after Unmount: %v", got)
	}
	if ok, err := Mounted(mnt); ok || err != nil {
		t.Fatalf("Mounted after Unmount = %v, %v", ok, err)
	}
	// Unmounting what is not mounted is fine.
	if err := Unmount(t.Context(), img, mnt); err != nil {
		t.Fatal(err)
	}
}

// Something else mounted at the mount point is neither replaced nor
// unmounted.
func TestImageForeignMountLeftAlone(t *testing.T) {
	dir := testDir(t)
	img, mnt := filepath.Join(dir, "a.img"), filepath.Join(dir, "mnt")
	if err := CreateImage(t.Context(), img, 16*mi); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("other", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := Mount(t.Context(), img, mnt); err == nil {
		t.Fatal("Mount over a tmpfs succeeded")
	}
	if err := Unmount(t.Context(), img, mnt); err == nil {
		t.Fatal("Unmount of a tmpfs succeeded")
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("the tmpfs is gone: type %#x, %v", sfs.Type, err)
	}
	if got := testLoops(t, img); len(got) != 0 {
		t.Fatalf("loop devices attached: %v", got)
	}
}

func TestImageGrowOffline(t *testing.T) {
	dir := testDir(t)
	img, mnt := filepath.Join(dir, "a.img"), filepath.Join(dir, "mnt")
	if err := CreateImage(t.Context(), img, 16*mi); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Mount(t.Context(), img, mnt); err != nil {
		t.Fatal(err)
	}
	before := capacity(t, mnt)
	data := randomBytes(t, 3*mi)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(t.Context(), img, mnt); err != nil {
		t.Fatal(err)
	}
	if err := Grow(t.Context(), img, mnt, 32*mi); err != nil {
		t.Fatal(err)
	}
	if err := Grow(t.Context(), img, mnt, 16*mi); err == nil {
		t.Fatal("Grow to a smaller size succeeded")
	}
	if err := Mount(t.Context(), img, mnt); err != nil {
		t.Fatal(err)
	}
	if after := capacity(t, mnt); after < before+15*mi {
		t.Fatalf("capacity %d after growing by 16Mi from %d", after, before)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file changed by the grow (err %v)", err)
	}
}

// An image still attached to a loop device (its filesystem may live on in
// another mount namespace) is not grown offline: Grow waits, then refuses;
// once detached, the same Grow finishes.
func TestImageGrowWaitsForDetach(t *testing.T) {
	dir := testDir(t)
	img := filepath.Join(dir, "a.img")
	if err := CreateImage(t.Context(), img, 16*mi); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	detached := false
	t.Cleanup(func() {
		if !detached {
			_ = exec.Command("losetup", "-d", dev).Run()
		}
	})
	prev := detachWait
	detachWait = 300 * time.Millisecond
	t.Cleanup(func() { detachWait = prev })
	err = Grow(t.Context(), img, filepath.Join(dir, "mnt"), 32*mi)
	if err == nil || !strings.Contains(err.Error(), "still attached to "+dev) {
		t.Fatalf("Grow with %s attached: %v, want refused naming it", dev, err)
	}
	if err := exec.Command("losetup", "-d", dev).Run(); err != nil {
		t.Fatal(err)
	}
	detached = true
	if err := Grow(t.Context(), img, filepath.Join(dir, "mnt"), 32*mi); err != nil {
		t.Fatalf("Grow after detach: %v", err)
	}
}
