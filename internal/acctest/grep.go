package acctest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// GrepFiles lists the files under dir (tmpfs mounts skipped: that is where
// pods' secret files live, by design) whose bytes contain needle: the
// check that a secret's value is nowhere on disk in plaintext.
func GrepFiles(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			var st unix.Statfs_t
			if unix.Statfs(p, &st) == nil && st.Type == unix.TMPFS_MAGIC {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil //nolint:nilerr // sockets and vanished files hold no secret
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
