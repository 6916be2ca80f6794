package secrets

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openKMS(t *testing.T, dir string) *FileKMS {
	t.Helper()
	k, err := OpenFileKMS(dir, quietLog())
	if err != nil {
		t.Fatalf("OpenFileKMS: %v", err)
	}
	return k
}

// dirFiles lists the names in dir, sorted.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func TestFileKMSLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // OpenFileKMS creates it
	k := openKMS(t, dir)
	id := k.CurrentKeyID()
	if !keyIDRe.MatchString(id) {
		t.Fatalf("key id %q: want 16 hex digits", id)
	}
	if got, want := dirFiles(t, dir), []string{"current", "kek-" + id}; !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v (no temporary files left)", got, want)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %04o, want 0700", fi.Mode().Perm())
	}
	for _, name := range []string{"current", "kek-" + id} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a regular file 0600", name, fi.Mode())
		}
	}
	cur, _ := os.ReadFile(filepath.Join(dir, "current"))
	if string(cur) != id+"\n" {
		t.Errorf("current = %q, want %q", cur, id+"\n")
	}
	kek, _ := os.ReadFile(filepath.Join(dir, "kek-"+id))
	if len(kek) != keySize || keyID(kek) != id {
		t.Errorf("kek file: %d bytes, id %s; want %d bytes with id %s", len(kek), keyID(kek), keySize, id)
	}

	// A second start uses the same key and can unwrap what the first wrapped.
	ctx := context.Background()
	dek := bytes.Repeat([]byte{7}, keySize)
	wrapped, wid, err := k.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	k2 := openKMS(t, dir)
	if k2.CurrentKeyID() != id {
		t.Fatalf("reopened key id %s, want %s", k2.CurrentKeyID(), id)
	}
	got, err := k2.Unwrap(ctx, wrapped, wid)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap after reopen = %x, %v", got, err)
	}
	if got := dirFiles(t, dir); len(got) != 2 {
		t.Errorf("reopening changed the files: %v", got)
	}
}

// Each case spoils the key directory after a first start; the second start
// must refuse it with a clear error that carries no key bytes.
func TestFileKMSRefuses(t *testing.T) {
	tests := []struct {
		name    string
		spoil   func(t *testing.T, dir, id string)
		wantErr string
	}{
		{"group-readable key", func(t *testing.T, dir, id string) {
			chmod(t, filepath.Join(dir, "kek-"+id), 0o640)
		}, "mode 0640 lets group or others access it"},
		{"world-readable key", func(t *testing.T, dir, id string) {
			chmod(t, filepath.Join(dir, "kek-"+id), 0o604)
		}, "mode 0604 lets group or others access it"},
		{"group-readable pointer", func(t *testing.T, dir, id string) {
			chmod(t, filepath.Join(dir, "current"), 0o644)
		}, "mode 0644 lets group or others access it"},
		{"key is a symlink", func(t *testing.T, dir, id string) {
			p := filepath.Join(dir, "kek-"+id)
			other := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.Rename(p, other); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, p); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"key is a directory", func(t *testing.T, dir, id string) {
			p := filepath.Join(dir, "kek-"+id)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"key too short", func(t *testing.T, dir, id string) {
			writeFile(t, filepath.Join(dir, "kek-"+id), make([]byte, keySize-1))
		}, "must hold exactly 32 bytes"},
		{"key too long", func(t *testing.T, dir, id string) {
			writeFile(t, filepath.Join(dir, "kek-"+id), make([]byte, keySize+1))
		}, "must hold exactly 32 bytes"},
		{"key replaced", func(t *testing.T, dir, id string) {
			writeFile(t, filepath.Join(dir, "kek-"+id), bytes.Repeat([]byte{1}, keySize))
		}, "does not match its key id"},
		{"key missing", func(t *testing.T, dir, id string) {
			if err := os.Remove(filepath.Join(dir, "kek-"+id)); err != nil {
				t.Fatal(err)
			}
		}, "unknown key-encryption key"},
		{"pointer garbage", func(t *testing.T, dir, id string) {
			writeFile(t, filepath.Join(dir, "current"), []byte("../../etc/passwd\n"))
		}, "does not hold a key id"},
		{"directory writable by others", func(t *testing.T, dir, id string) {
			chmod(t, dir, 0o777)
		}, "lets group or others write to it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			k := openKMS(t, dir)
			id := k.CurrentKeyID()
			kek, err := os.ReadFile(filepath.Join(dir, "kek-"+id))
			if err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, dir, id)
			_, err = OpenFileKMS(dir, quietLog())
			if err == nil {
				t.Fatalf("OpenFileKMS accepted the directory, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}
			assertNoKeyBytes(t, err.Error(), kek)
		})
	}
}

func TestFileKMSUnwrapErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := openKMS(t, dir)
	dek := bytes.Repeat([]byte{9}, keySize)
	wrapped, id, err := k.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	kek, _ := os.ReadFile(filepath.Join(dir, "kek-"+id))
	tampered := bytes.Clone(wrapped)
	tampered[len(tampered)-1] ^= 1
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		wrapped []byte
		id      string
		wantIs  error
	}{
		{"path traversal id", ctx, wrapped, "../current", ErrUnknownKey},
		{"empty id", ctx, wrapped, "", ErrUnknownKey},
		{"uppercase id", ctx, wrapped, strings.ToUpper(id), ErrUnknownKey},
		{"absent key", ctx, wrapped, "0123456789abcdef", ErrUnknownKey},
		{"tampered", ctx, tampered, id, ErrAuthFailed},
		{"truncated", ctx, wrapped[:nonceSize+3], id, ErrAuthFailed},
		{"empty", ctx, nil, id, ErrAuthFailed},
		{"canceled", canceled, wrapped, id, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Unwrap(tc.ctx, tc.wrapped, tc.id)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("Unwrap = %x, %v; want %v", got, err, tc.wantIs)
			}
			assertNoKeyBytes(t, err.Error(), kek)
			assertNoKeyBytes(t, err.Error(), dek)
		})
	}
}

func TestFileKMSRotateAndRetire(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := openKMS(t, dir)
	oldID := k.CurrentKeyID()
	dek := bytes.Repeat([]byte{3}, keySize)
	wrappedOld, _, err := k.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}

	newID, err := k.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID || k.CurrentKeyID() != newID {
		t.Fatalf("Rotate = %s (current %s), old %s: want a new current id", newID, k.CurrentKeyID(), oldID)
	}
	if got, want := dirFiles(t, dir), sorted("current", "kek-"+oldID, "kek-"+newID); !slices.Equal(got, want) {
		t.Fatalf("files after rotate = %v, want %v", got, want)
	}
	if _, id, err := k.Wrap(ctx, dek); err != nil || id != newID {
		t.Fatalf("Wrap after rotate used %s, %v; want %s", id, err, newID)
	}
	// The old key still unwraps, in this process and after a restart.
	for _, kk := range []*FileKMS{k, openKMS(t, dir)} {
		got, err := kk.Unwrap(ctx, wrappedOld, oldID)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("Unwrap with the rotated-out key = %x, %v", got, err)
		}
	}
	if k2 := openKMS(t, dir); k2.CurrentKeyID() != newID {
		t.Fatalf("restart after rotate: current %s, want %s", k2.CurrentKeyID(), newID)
	}

	if err := k.Retire(ctx, newID); err == nil || !strings.Contains(err.Error(), "current key") {
		t.Fatalf("Retire(current) = %v, want a refusal", err)
	}
	if err := k.Retire(ctx, "../current"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Retire(../current) = %v, want ErrUnknownKey", err)
	}
	if err := k.Retire(ctx, oldID); err != nil {
		t.Fatalf("Retire(old): %v", err)
	}
	if _, err := k.Unwrap(ctx, wrappedOld, oldID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Unwrap with a retired key: %v, want ErrUnknownKey", err)
	}
	if err := k.Retire(ctx, oldID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Retire twice = %v, want ErrUnknownKey", err)
	}
	if got, want := dirFiles(t, dir), sorted("current", "kek-"+newID); !slices.Equal(got, want) {
		t.Fatalf("files after retire = %v, want %v", got, want)
	}
}

func TestFileKMSClose(t *testing.T) {
	ctx := context.Background()
	k := openKMS(t, t.TempDir())
	dek := bytes.Repeat([]byte{5}, keySize)
	wrapped, id, err := k.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	kek := k.keys[id]
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kek, make([]byte, keySize)) {
		t.Error("Close left the key-encryption key in memory")
	}
	// Used again, it reads the key from disk.
	if got, err := k.Unwrap(ctx, wrapped, id); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap after Close = %x, %v", got, err)
	}
}

// assertNoKeyBytes fails if s holds key, raw or in hex.
func assertNoKeyBytes(t *testing.T, s string, key []byte) {
	t.Helper()
	if len(key) == 0 {
		return
	}
	if strings.Contains(s, string(key)) || strings.Contains(strings.ToLower(s), hex.EncodeToString(key)) {
		t.Errorf("error %q contains key bytes", s)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// writeFile replaces a key file's content, keeping mode 0600.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
