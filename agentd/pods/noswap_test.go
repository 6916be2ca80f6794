package pods

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A secret tmpfs is mounted with noswap on a kernel that has it (Linux
// 6.4 and later) and without it otherwise; growing it keeps the option.
func TestSecretTmpfsNoswap(t *testing.T) {
	t.Parallel()
	wantNoswap := kernelAtLeast(t, 6, 4)
	dir := filepath.Join(t.TempDir(), "p_0000")
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	v := newSecretVolume(dir, "p_0000")
	v.log = testLogger(t)
	steps := []struct {
		name string
		size int64
		want string // the size mountinfo shows
	}{
		{"mount", 1 << 20, "size=1024k"},
		{"grow", 4 << 20, "size=4096k"},
	}
	for _, st := range steps {
		root, err := v.ensure(st.size)
		if err != nil {
			t.Fatalf("%s: ensure(%d): %v", st.name, st.size, err)
		}
		root.Close()
		opts := mountOptions(t, dir)
		if !opts["tmpfs"] || !opts[st.want] {
			t.Errorf("%s: mount options of %s = %v, want a tmpfs with %s", st.name, dir, opts, st.want)
		}
		if opts["noswap"] != wantNoswap {
			t.Errorf("%s: noswap = %v on kernel %s, want %v (options %v)", st.name, opts["noswap"], kernelRelease(t), wantNoswap, opts)
		}
	}
}

// On a kernel that refuses noswap (EINVAL), the tmpfs is mounted without
// it, and later mounts do not ask for it again.
func TestSecretTmpfsNoswapFallback(t *testing.T) {
	t.Parallel()
	var calls []string
	old := &tmpfsMounter{mount: func(source, target, fstype string, flags uintptr, data string) error {
		calls = append(calls, data)
		if strings.Contains(data, "noswap") {
			return unix.EINVAL // what Linux before 6.4 answers
		}
		return unix.Mount(source, target, fstype, flags, data)
	}}
	base := t.TempDir()
	for i, name := range []string{"a_0000", "b_0000"} {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		if err := old.mountSecret(dir, 1<<20, testLogger(t)); err != nil {
			t.Fatalf("mount %d: %v", i, err)
		}
		opts := mountOptions(t, dir)
		if !opts["tmpfs"] || !opts["size=1024k"] || opts["noswap"] {
			t.Errorf("mount %d: options %v, want a 1 MiB tmpfs without noswap", i, opts)
		}
	}
	want := []string{"mode=0700,size=1048576,noswap", "mode=0700,size=1048576", "mode=0700,size=1048576"}
	if !slices.Equal(calls, want) {
		t.Errorf("mount calls = %q, want %q (noswap tried once)", calls, want)
	}
}

// mountOptions returns the filesystem type, the source and the mount and
// superblock options of the mount at dir, from /proc/self/mountinfo.
func mountOptions(t *testing.T, dir string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ... - type source superopts
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 6 || f[4] != dir {
			continue
		}
		out := map[string]bool{}
		for _, o := range strings.Split(f[5], ",") {
			out[o] = true
		}
		p := strings.Fields(post)
		for i, w := range p {
			if i == 2 {
				for _, o := range strings.Split(w, ",") {
					out[o] = true
				}
			} else {
				out[w] = true
			}
		}
		return out
	}
	t.Fatalf("%s is not in /proc/self/mountinfo", dir)
	return nil
}

func kernelRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast compares the running kernel's major.minor with the given.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	rel := kernelRelease(t)
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		t.Fatalf("kernel release %q: want major.minor", rel)
	}
	maj, err1 := strconv.Atoi(parts[0])
	mnr, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		t.Fatalf("kernel release %q: want major.minor", rel)
	}
	return maj > major || maj == major && mnr >= minor
}
