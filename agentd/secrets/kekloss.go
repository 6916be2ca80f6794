package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"
)

// No silent loss of the key-encryption key. Without its KEK a node's stored
// secrets are noise; creating a fresh KEK over them (what a first start
// does) would hide that until a pod fails to start. So OpenNodeKMS decides:
//
//   - every KEK file it needs is there and sound: open it;
//   - no KEK yet, and no stored secret is sealed with one (a fresh state
//     dir, or only tombstones): create one, as at a first start;
//   - a KEK file is unreadable or corrupt, or a stored secret is sealed
//     with a KEK that is not there: refuse (KEKLostError), unless the
//     operator said --new-kek. Then the broken files are set aside, a new
//     KEK is created, the secrets it can no longer open are discarded (so
//     the node never reports holding them) and the replicator fetches them
//     again from the other holders (Recovery).

// recoveryMarker, in the key directory, says that secrets were discarded
// and not all fetched back yet: recovery survives a restart.
const recoveryMarker = "recovering"

// KEKLostError is OpenNodeKMS's refusal. It names files and counts, never
// key material.
type KEKLostError struct {
	Dir    string // the key directory
	Path   string // the file that is missing or unreadable
	Reason string // why, e.g. "is missing"
	// Secrets is how many stored secrets are sealed with a key that
	// cannot be loaded.
	Secrets int
}

func (e *KEKLostError) Error() string {
	msg := fmt.Sprintf("key-encryption key %s %s", e.Path, e.Reason)
	if e.Secrets > 0 {
		msg += fmt.Sprintf("; %d stored secret(s) are sealed with a key-encryption key that cannot be loaded", e.Secrets)
	}
	return msg + "; refusing to start rather than lose secrets silently. Either restore the key directory " + e.Dir +
		" from a backup of this node's state directory, or start agentd once with --new-kek: it creates a new key-encryption key," +
		" discards the secrets it can no longer decrypt and fetches them again from the other members that hold them"
}

// Recovery tracks the fetching back of secrets discarded with a lost KEK.
// A nil *Recovery has nothing to recover.
type Recovery struct {
	marker string
	done   atomic.Bool
}

// Pending reports whether some discarded secrets may still be missing.
func (rc *Recovery) Pending() bool { return rc != nil && !rc.done.Load() }

func (rc *Recovery) finish() error {
	if err := os.Remove(rc.marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("end secret recovery: %w", err)
	}
	rc.done.Store(true)
	return nil
}

// kekStatus is what loading the current KEK found.
type kekStatus struct {
	missing bool   // no current pointer, or the file it names is gone
	path    string // the file at fault, if any
	reason  string // why it cannot be used ("" when usable)
}

// loadCurrent reads the current pointer and its KEK without creating
// anything, and says what is wrong if it cannot.
func (k *FileKMS) loadCurrent() kekStatus {
	ptr := filepath.Join(k.dir, currentFile)
	id, err := k.readCurrent()
	if errors.Is(err, fs.ErrNotExist) {
		return kekStatus{missing: true, path: ptr, reason: "is missing"}
	}
	if err != nil {
		return kekStatus{path: ptr, reason: "is unreadable (" + err.Error() + ")"}
	}
	if st := k.loadKey(id); st.reason != "" {
		return st
	}
	k.current = id
	return kekStatus{}
}

// loadKey loads the KEK id and says what is wrong if it cannot.
func (k *FileKMS) loadKey(id string) kekStatus {
	path := filepath.Join(k.dir, kekPrefix+id)
	_, err := k.key(id)
	switch {
	case err == nil:
		return kekStatus{}
	case errors.Is(err, ErrUnknownKey):
		return kekStatus{missing: true, path: path, reason: "is missing"}
	default:
		return kekStatus{path: path, reason: "is unreadable or corrupt (" + err.Error() + ")"}
	}
}

// sealedKeyIDs maps each KEK id that stored secrets are sealed with to
// those secrets (tombstones hold no data and need no key). A sealed blob
// that does not parse counts under the id "".
func sealedKeyIDs(be Backend) (map[string][]string, error) {
	out := map[string][]string{}
	err := be.ListSecrets(func(key string, b []byte) error {
		var s stored
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("decode secret record %s: %w", key, err)
		}
		if s.Deleted || len(s.Sealed) == 0 {
			return nil
		}
		id := ""
		if sealed, err := Unmarshal(s.Sealed); err == nil {
			id = sealed.KeyID
		}
		out[id] = append(out[id], key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list stored secrets: %w", err)
	}
	return out, nil
}

// OpenNodeKMS opens the node's key directory dir for the secrets stored in
// be, refusing (KEKLostError) when a KEK they need is missing or broken
// unless newKEK; see the top of this file. The Recovery is non-nil when
// secrets were discarded and must be fetched back (now or at an earlier
// start that did not finish).
func OpenNodeKMS(ctx context.Context, dir string, be Backend, newKEK bool, log *slog.Logger) (*FileKMS, *Recovery, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("open key directory: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, nil, err
	}
	sealedBy, err := sealedKeyIDs(be)
	if err != nil {
		return nil, nil, err
	}
	k := &FileKMS{dir: dir, log: log, keys: map[string][]byte{}}
	cur := k.loadCurrent()
	// The KEKs of stored secrets that cannot be loaded, and the first
	// problem found (sorted, so the message is stable).
	var lostIDs []string
	lostSecrets := 0
	fault := cur
	if cur.missing {
		fault = kekStatus{}
	}
	for _, id := range slices.Sorted(maps.Keys(sealedBy)) {
		if k.current != "" && id == k.current {
			continue
		}
		st := k.loadKey(id)
		if st.reason == "" {
			continue
		}
		if id == "" {
			st = kekStatus{path: "of " + sealedBy[id][0], reason: "cannot be named (its sealed data is malformed)"}
		}
		lostIDs = append(lostIDs, id)
		lostSecrets += len(sealedBy[id])
		if fault.reason == "" {
			fault = st
		}
	}
	if fault.reason == "" {
		// Nothing a stored secret needs is missing or broken.
		if cur.missing {
			id, err := k.create()
			if err != nil {
				return nil, nil, fmt.Errorf("create key-encryption key in %s: %w", dir, err)
			}
			k.current = id
			log.Info("created key-encryption key", "dir", dir, "key_id", id)
		} else if newKEK {
			log.Warn("--new-kek given, but the key-encryption key and every stored secret's key are intact: keeping them", "dir", dir)
		}
		return k, resumeRecovery(dir), nil
	}
	if !newKEK {
		return nil, nil, &KEKLostError{Dir: dir, Path: fault.path, Reason: fault.reason, Secrets: lostSecrets}
	}
	return k.replaceLost(ctx, be, cur, lostIDs)
}

// replaceLost is --new-kek: set the broken key files aside, create a new
// current KEK, and discard the secrets that no longer open.
func (k *FileKMS) replaceLost(ctx context.Context, be Backend, cur kekStatus, lostIDs []string) (*FileKMS, *Recovery, error) {
	stamp := time.Now().UTC().Format("20060102T150405Z")
	var aside []string
	if cur.reason != "" && !cur.missing {
		aside = append(aside, cur.path) // an unreadable pointer, or the broken key it names
	}
	for _, id := range lostIDs {
		if keyIDRe.MatchString(id) {
			aside = append(aside, filepath.Join(k.dir, kekPrefix+id))
		}
	}
	for _, p := range aside {
		// Kept, not deleted: a key file that only lost its mode or got
		// damaged may still help a forensic look or a manual restore.
		err := os.Rename(p, p+".lost-"+stamp)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("set aside broken key file %s: %w", p, err)
		}
		if err == nil {
			k.log.Warn("set aside unusable key-encryption key file", "file", p, "now", p+".lost-"+stamp)
		}
	}
	// Mark first: a crash while discarding still ends in recovery.
	if err := writePrivateFile(k.dir, recoveryMarker, []byte(stamp+"\n")); err != nil {
		return nil, nil, fmt.Errorf("start secret recovery: %w", err)
	}
	id, err := k.create()
	if err != nil {
		return nil, nil, fmt.Errorf("create key-encryption key in %s: %w", k.dir, err)
	}
	k.current = id
	k.log.Warn("created a new key-encryption key (--new-kek); secrets sealed with the lost one are discarded and fetched again from the other holders", "dir", k.dir, "key_id", id)
	n, err := discardUnopenable(ctx, NewVault(be, k), k.log)
	if err != nil {
		return nil, nil, err
	}
	k.log.Warn("discarded secrets this node can no longer decrypt", "count", n)
	return k, &Recovery{marker: filepath.Join(k.dir, recoveryMarker)}, nil
}

// discardUnopenable forgets every live secret the vault cannot open, so
// that the node neither serves nor reports it and accepts it again from a
// holder. Tombstones stay: they need no key.
func discardUnopenable(ctx context.Context, v *Vault, log *slog.Logger) (int, error) {
	all, err := v.List()
	if err != nil {
		return 0, fmt.Errorf("list stored secrets: %w", err)
	}
	n := 0
	for _, rec := range all {
		if rec.Deleted {
			continue
		}
		_, data, err := v.Open(ctx, rec.Key())
		clear(data)
		if err == nil {
			continue
		}
		if err := v.Forget(rec.Key()); err != nil {
			return n, fmt.Errorf("discard secret %s: %w", rec.Key(), err)
		}
		log.Warn("secret discarded: sealed with a lost key-encryption key; it will be fetched again from another holder", "secret", rec.Key(), "version", rec.Version)
		n++
	}
	return n, nil
}

// resumeRecovery returns the Recovery an earlier --new-kek start left
// unfinished, or nil.
func resumeRecovery(dir string) *Recovery {
	marker := filepath.Join(dir, recoveryMarker)
	if _, err := os.Lstat(marker); err != nil {
		return nil
	}
	return &Recovery{marker: marker}
}
