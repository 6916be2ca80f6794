package secrets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/store"
)

// kekCase prepares a state dir (a store and a key directory) and breaks
// it the way one row of the decision table says.
type kekCase struct {
	name string
	// prepare stores what the node held and damages the key directory.
	prepare func(t *testing.T, ctx context.Context, st *store.Store, dir string)
	// refused: OpenNodeKMS without --new-kek must refuse, naming this
	// file (relative to the key directory).
	refused string
	// lost: with --new-kek, these secrets are discarded (and recovery
	// starts); the others still open.
	lost []string
}

var kekSecretValue = []byte("kek-test-value-never-in-errors")

// storeSecret seals one secret into st with the KMS of dir.
func storeSecret(t *testing.T, ctx context.Context, st *store.Store, dir, name string) {
	t.Helper()
	kms, err := OpenFileKMS(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kms.Close()
	rec := Record{Namespace: "default", Name: name, Version: 1, Writer: "n1", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if _, err := NewVault(st, kms).Put(ctx, rec, map[string][]byte{"v": kekSecretValue}); err != nil {
		t.Fatal(err)
	}
}

func currentID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, currentFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestOpenNodeKMSDecisions(t *testing.T) {
	ctx := context.Background()
	cases := []kekCase{
		{
			name:    "fresh state dir: a key is created",
			prepare: func(*testing.T, context.Context, *store.Store, string) {},
		},
		{
			name: "key directory gone but only tombstones stored: a key is created",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				kms, err := OpenFileKMS(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				rec := Record{Namespace: "default", Name: "gone", Version: 2, Writer: "n1"}
				if _, err := NewVault(st, kms).Tombstone(rec); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "existing secrets, key intact: opened",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "a")
			},
		},
		{
			name: "existing secrets, only the current pointer lost: its key is still there, nothing is lost",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "a")
				if err := os.Remove(filepath.Join(dir, currentFile)); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "existing secrets, key file deleted: refused",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "a")
				storeSecret(t, ctx, st, dir, "b")
				if err := os.Remove(filepath.Join(dir, kekPrefix+currentID(t, dir))); err != nil {
					t.Fatal(err)
				}
			},
			refused: "kek-*", lost: []string{"default/a", "default/b"},
		},
		{
			name: "existing secrets, whole key directory deleted: refused",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "a")
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			},
			refused: "kek-*", lost: []string{"default/a"},
		},
		{
			name: "existing secrets, key file corrupt: refused",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "a")
				if err := os.WriteFile(filepath.Join(dir, kekPrefix+currentID(t, dir)), make([]byte, keySize), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			refused: "kek-*", lost: []string{"default/a"},
		},
		{
			name: "existing secrets, current pointer corrupt: refused",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "a")
				if err := os.WriteFile(filepath.Join(dir, currentFile), []byte("garbage\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			// The key the secret needs is intact: nothing is discarded.
			refused: currentFile,
		},
		{
			name: "no secrets, key file corrupt: refused (a damaged key is never replaced silently)",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				kms, err := OpenFileKMS(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				kms.Close()
				if err := os.WriteFile(filepath.Join(dir, kekPrefix+currentID(t, dir)), []byte("short"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			refused: "kek-*",
		},
		{
			name: "secret sealed with an older key that was deleted: refused",
			prepare: func(t *testing.T, ctx context.Context, st *store.Store, dir string) {
				storeSecret(t, ctx, st, dir, "old")
				oldID := currentID(t, dir)
				kms, err := OpenFileKMS(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kms.Rotate(ctx); err != nil {
					t.Fatal(err)
				}
				kms.Close()
				storeSecret(t, ctx, st, dir, "new")
				if err := os.Remove(filepath.Join(dir, kekPrefix+oldID)); err != nil {
					t.Fatal(err)
				}
			},
			refused: "kek-*", lost: []string{"default/old"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "keys")
			st, err := store.Open(filepath.Join(base, "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			tc.prepare(t, ctx, st, dir)
			before, err := NewVault(st, nil).List()
			if err != nil {
				t.Fatal(err)
			}

			kms, rc, err := OpenNodeKMS(ctx, dir, st, false, nil)
			if tc.refused != "" {
				var lost *KEKLostError
				if !errors.As(err, &lost) {
					t.Fatalf("want a KEKLostError, got kms=%v err=%v", kms != nil, err)
				}
				msg := err.Error()
				if ok, _ := filepath.Match(filepath.Join(dir, tc.refused), lost.Path); !ok {
					t.Errorf("names %s, want %s", lost.Path, tc.refused)
				}
				for _, want := range []string{lost.Path, "--new-kek", "restore", dir} {
					if !strings.Contains(msg, want) {
						t.Errorf("message lacks %q: %s", want, msg)
					}
				}
				if strings.Contains(msg, string(kekSecretValue)) {
					t.Error("message holds a secret value")
				}
				if lost.Secrets != len(tc.lost) {
					t.Errorf("counts %d secrets, want %d", lost.Secrets, len(tc.lost))
				}
				// Refusing changes nothing on disk.
				if after, _ := NewVault(st, nil).List(); len(after) != len(before) {
					t.Errorf("refusal changed the store: %d records, had %d", len(after), len(before))
				}
				kms, rc, err = OpenNodeKMS(ctx, dir, st, true, nil)
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer kms.Close()
			if got, want := rc.Pending(), tc.refused != ""; got != want {
				t.Errorf("recovery pending = %v, want %v", got, want)
			}
			if _, _, err := kms.Wrap(ctx, make([]byte, keySize)); err != nil {
				t.Errorf("the opened key does not wrap: %v", err)
			}
			v := NewVault(st, kms)
			for _, rec := range before {
				_, have, err := v.Get(rec.Key())
				if err != nil {
					t.Fatal(err)
				}
				isLost := false
				for _, k := range tc.lost {
					isLost = isLost || k == rec.Key()
				}
				switch {
				case isLost && have:
					t.Errorf("%s: still held although its key is lost", rec.Key())
				case !isLost && !have:
					t.Errorf("%s: discarded although it was readable", rec.Key())
				case !isLost && !rec.Deleted:
					if _, data, err := v.Open(ctx, rec.Key()); err != nil || string(data["v"]) != string(kekSecretValue) {
						t.Errorf("%s: does not open: %v", rec.Key(), err)
					}
				}
			}
			// A second start needs no flag, and resumes an unfinished
			// recovery.
			kms2, rc2, err := OpenNodeKMS(ctx, dir, st, false, nil)
			if err != nil {
				t.Fatalf("reopen without --new-kek: %v", err)
			}
			kms2.Close()
			if rc2.Pending() != rc.Pending() {
				t.Errorf("recovery pending after a restart = %v, want %v", rc2.Pending(), rc.Pending())
			}
			if rc.Pending() {
				if err := rc.finish(); err != nil {
					t.Fatal(err)
				}
				if _, rc3, err := OpenNodeKMS(ctx, dir, st, false, nil); err != nil || rc3.Pending() {
					t.Errorf("after recovery finished: pending=%v err=%v", rc3.Pending(), err)
				}
			}
		})
	}
}
