package volumes

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// entry is what a test compares of one file in a volume.
type entry struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    time.Time
	link     string
	data     []byte
}

// snapshot reads the tree under dir (without lost+found), by path.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == lostFound {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, mtime: fi.ModTime()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.link, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			e.data, err = os.ReadFile(p)
		}
		out[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupRestore(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	apply(t, m, "src", "32Mi", false)
	apply(t, m, "dst", "32Mi", false)
	src, dst := mountPath(t, m, "src"), mountPath(t, m, "dst")

	old := time.Date(2020, 5, 6, 7, 8, 9, 123456789, time.UTC)
	type file struct {
		path     string
		mode     fs.FileMode // a dir when ModeDir is set
		data     []byte
		link     string
		uid, gid int
	}
	for _, f := range []file{
		{path: "hello.txt", mode: 0o644, data: []byte("hello\n")},
		{path: "secret", mode: 0o600, data: []byte("s3cret"), uid: 1234, gid: 5678},
		{path: "empty", mode: 0o640},
		{path: "dir", mode: fs.ModeDir | 0o750, uid: 1000, gid: 1000},
		{path: "dir/sub", mode: fs.ModeDir | 0o755},
		{path: "dir/sub/big.bin", mode: 0o640, data: randomBytes(t, 3*mi)},
		{path: "dir/run.sh", mode: 0o755, data: []byte("#!/bin/sh\necho hi\n")},
		{path: "dir/setgid", mode: fs.ModeDir | fs.ModeSetgid | 0o2775},
		{path: "ro", mode: fs.ModeDir | 0o555},
		{path: "link", link: "dir/sub/big.bin"},
		{path: "abs", link: "/etc/passwd", uid: 42, gid: 43},
		{path: "dangling", link: "nowhere"},
	} {
		p := filepath.Join(src, f.path)
		var err error
		switch {
		case f.link != "":
			err = os.Symlink(f.link, p)
		case f.mode.IsDir():
			err = os.Mkdir(p, 0o700)
		default:
			err = os.WriteFile(p, f.data, 0o600)
		}
		if err == nil {
			err = os.Lchown(p, f.uid, f.gid)
		}
		if err == nil && f.link == "" {
			err = os.Chmod(p, f.mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(src, "hello.txt"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(src, 1000, 2000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o770); err != nil {
		t.Fatal(err)
	}
	// Something to be replaced in the destination.
	if err := os.WriteFile(filepath.Join(dst, "junk"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, src)

	var buf bytes.Buffer
	if err := m.Backup(t.Context(), "", "src", &buf); err != nil {
		t.Fatal(err)
	}
	n, files, err := m.Restore(t.Context(), "", "dst", bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if wantBytes := int64(3*mi + len("hello\n") + len("s3cret") + len("#!/bin/sh\necho hi\n")); n != wantBytes {
		t.Errorf("restored %d bytes, want %d", n, wantBytes)
	}
	if files != int64(len(want)-1) { // all but the root
		t.Errorf("restored %d entries, want %d", files, len(want)-1)
	}
	got := snapshot(t, dst)
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s: missing", p)
		} else if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got mode %v uid %d gid %d mtime %v link %q (%d bytes), want mode %v uid %d gid %d mtime %v link %q (%d bytes)",
				p, g.mode, g.uid, g.gid, g.mtime, g.link, len(g.data), w.mode, w.uid, w.gid, w.mtime, w.link, len(w.data))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: in the restored volume only", p)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dst, lostFound)); err != nil || !fi.IsDir() {
		t.Errorf("lost+found: %v", err)
	}
}

func TestBackupRestoreRefusedInUse(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	var users fakeUsers
	m.SetUsers(users.users)
	apply(t, m, "data", "16Mi", false)
	mnt := mountPath(t, m, "data")
	if err := os.WriteFile(filepath.Join(mnt, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	var empty bytes.Buffer
	tw := tar.NewWriter(&empty)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                  string
		rw                    string
		ro                    []string
		backupErr, restoreErr error
	}{
		{name: "read-write", rw: "web", backupErr: ErrInUse, restoreErr: ErrInUse},
		{name: "read-only", ro: []string{"reader"}, restoreErr: ErrInUse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users.set("default", "data", tc.rw, tc.ro...)
			if err := m.Backup(t.Context(), "", "data", io.Discard); !errors.Is(err, tc.backupErr) {
				t.Errorf("Backup: %v, want %v", err, tc.backupErr)
			}
			if _, _, err := m.Restore(t.Context(), "", "data", bytes.NewReader(empty.Bytes())); !errors.Is(err, tc.restoreErr) {
				t.Errorf("Restore: %v, want %v", err, tc.restoreErr)
			}
			if got, err := os.ReadFile(filepath.Join(mnt, "keep")); err != nil || string(got) != "keep" {
				t.Errorf("the volume's file: %q, %v", got, err)
			}
		})
	}
	if err := m.Backup(t.Context(), "", "nope", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Errorf("Backup of a missing volume: %v", err)
	}
}

// While a restore runs, pods cannot mount the volume and it cannot be
// deleted.
func TestRestoreBlocksMounts(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	apply(t, m, "data", "16Mi", false)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, _, err := m.Restore(t.Context(), "", "data", pr)
		done <- err
	}()
	// The restore reads the stream once it has emptied the volume: by then
	// MountPath refuses the volume.
	tw := tar.NewWriter(pw)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.MountPath(t.Context(), "", "data"); !errors.Is(err, ErrInUse) {
		t.Fatalf("MountPath during a restore: %v, want ErrInUse", err)
	}
	if _, err := m.Delete(t.Context(), "", "data", ""); !errors.Is(err, ErrInUse) {
		t.Fatalf("Delete during a restore: %v, want ErrInUse", err)
	}
	pw.CloseWithError(errors.New("client went away"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "client went away") {
		t.Fatalf("Restore: %v", err)
	}
	if _, err := m.MountPath(t.Context(), "", "data"); err != nil {
		t.Fatalf("MountPath after the restore: %v", err)
	}
}

type tarEntry struct {
	name string
	typ  byte
	link string
	data string
}

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.data))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Nothing in an archive writes outside the volume, nor through a symlink.
func TestRestoreUnsafeNames(t *testing.T) {
	dir := testDir(t)
	m := startManager(t, dir, nil)
	apply(t, m, "data", "16Mi", false)
	mnt := mountPath(t, m, "data")
	outside := t.TempDir()
	evil := filepath.Join(outside, "evil")

	for _, tc := range []struct {
		name    string
		entries []tarEntry
		wantErr string
	}{
		{name: "dot-dot", entries: []tarEntry{{name: "../evil", typ: tar.TypeReg, data: "x"}}, wantErr: `".."`},
		{name: "dot-dot inside", entries: []tarEntry{{name: "a/../../evil", typ: tar.TypeReg, data: "x"}}, wantErr: `".."`},
		{name: "absolute", entries: []tarEntry{{name: evil, typ: tar.TypeReg, data: "x"}}, wantErr: "absolute"},
		{name: "through an absolute symlink", entries: []tarEntry{
			{name: "out", typ: tar.TypeSymlink, link: outside},
			{name: "out/evil", typ: tar.TypeReg, data: "x"},
		}, wantErr: "not a directory"},
		{name: "through a relative symlink", entries: []tarEntry{
			{name: "up", typ: tar.TypeSymlink, link: "../../.."},
			{name: "up/evil", typ: tar.TypeReg, data: "x"},
		}, wantErr: "not a directory"},
		{name: "through a symlink inside", entries: []tarEntry{
			{name: "d", typ: tar.TypeDir},
			{name: "l", typ: tar.TypeSymlink, link: "d"},
			{name: "l/evil", typ: tar.TypeReg, data: "x"},
		}, wantErr: "not a directory"},
		{name: "hard link", entries: []tarEntry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, wantErr: "not supported"},
		// A file replacing a symlink replaces the link, not its target.
		{name: "file over a symlink", entries: []tarEntry{
			{name: "f", typ: tar.TypeSymlink, link: evil},
			{name: "f", typ: tar.TypeReg, data: "inside"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := m.Restore(t.Context(), "", "data", bytes.NewReader(makeTar(t, tc.entries...)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Restore: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Restore: %v, want an error with %q", err, tc.wantErr)
			}
			if ents, err := os.ReadDir(outside); err != nil || len(ents) != 0 {
				t.Fatalf("written outside: %v, %v", ents, err)
			}
			for _, p := range []string{filepath.Dir(mnt), dir, filepath.Dir(dir)} {
				if _, err := os.Lstat(filepath.Join(p, "evil")); !os.IsNotExist(err) {
					t.Fatalf("%s/evil exists (%v)", p, err)
				}
			}
			if tc.wantErr == "" {
				if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "inside" {
					t.Fatalf("f: %q, %v", got, err)
				}
			}
		})
	}
}

func TestRestoreFull(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	apply(t, m, "small", "16Mi", false)
	mnt := mountPath(t, m, "small")
	big := strings.Repeat("x", 24*mi)
	_, _, err := m.Restore(t.Context(), "", "small", bytes.NewReader(makeTar(t, tarEntry{name: "big", typ: tar.TypeReg, data: big})))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "default/small") {
		t.Fatalf("Restore of 24Mi into 16Mi: %v; want ENOSPC naming the volume", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil || sfs.Type != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("the volume is no longer mounted: %v", err)
	}
}

// While a backup runs no new writer is admitted (CheckWrite refuses it),
// readers are; once it is done writers are again.
func TestBackupHoldsOffWriters(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	apply(t, m, "data", "16Mi", false)
	if err := os.WriteFile(filepath.Join(mountPath(t, m, "data"), "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckWrite("", "data"); err != nil {
		t.Fatalf("CheckWrite before the backup: %v", err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := m.Backup(t.Context(), "", "data", pw)
		pw.CloseWithError(err)
		done <- err
	}()
	// The backup blocks on its first write until the pipe is read.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := m.CheckWrite("", "data")
		if errors.Is(err, ErrInUse) && strings.Contains(err.Error(), "being backed up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CheckWrite during the backup: %v, want ErrInUse", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := m.MountPath(t.Context(), "", "data"); err != nil {
		t.Errorf("a reader's MountPath during the backup: %v", err)
	}
	if _, err := io.Copy(io.Discard, pr); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := m.CheckWrite("", "data"); err != nil {
		t.Errorf("CheckWrite after the backup: %v", err)
	}
	if err := m.CheckWrite("", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("CheckWrite of a missing volume: %v", err)
	}
}
