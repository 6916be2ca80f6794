// Package secrets keeps secret values encrypted at rest: every secret
// version is sealed with a fresh AES-256-GCM data key (DEK), and the DEK is
// stored wrapped by a key-encryption key (KEK) held behind the KMS
// interface. Plaintext, DEKs and KEKs never appear in errors or logs; only
// key ids (which are HMACs of a KEK and reveal nothing about it) do.
//
// The package is a foundation: it knows nothing about the store, the API or
// the cluster. Callers persist Sealed.Marshal's bytes and keep the KMS.
package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
)

// KMS wraps and unwraps data keys with a key-encryption key it never hands
// out. Implementations must not put key material (the DEK or their own
// keys) into errors, and must keep every key they ever wrapped with
// unwrappable by its keyID until the operator retires it, so that a key
// rotation can re-wrap data keys one by one.
type KMS interface {
	// Wrap encrypts a data key with the current KEK and says which KEK
	// that was.
	Wrap(ctx context.Context, plaintextDEK []byte) (wrapped []byte, keyID string, err error)
	// Unwrap decrypts a data key wrapped by the KEK keyID.
	Unwrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, error)
}

// Errors callers can test for with errors.Is. Their text is fixed, so
// wrapping them never leaks what failed to decrypt.
var (
	// ErrAuthFailed means AES-GCM refused the ciphertext: a wrong key, a
	// wrong binding (additional data) or tampered bytes, indistinguishably.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrUnknownKey means no KEK with the requested id exists.
	ErrUnknownKey = errors.New("unknown key-encryption key")
)

const (
	keySize   = 32 // AES-256, for KEKs and DEKs alike
	nonceSize = 12 // the standard GCM nonce
	// keyIDLabel is what a key id is an HMAC of: a fixed label keyed by
	// the KEK, so the id names the key without revealing any of it.
	keyIDLabel = "herd-kek-id"
	// kekPrefix and currentFile make up FileKMS's directory layout.
	kekPrefix   = "kek-"
	currentFile = "current"
)

// keyIDRe is the only shape of key id FileKMS accepts. Ids come back from
// the store (Sealed.KeyID) and name files, so anything else would be a
// path traversal waiting to happen.
var keyIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)

// keyID names a KEK: the first 8 bytes of HMAC-SHA256(KEK, "herd-kek-id"),
// in hex.
func keyID(kek []byte) string {
	m := hmac.New(sha256.New, kek)
	m.Write([]byte(keyIDLabel))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// FileKMS keeps the node's KEKs as files in one directory:
//
//	<dir>/            0700 (refused if group- or other-writable)
//	<dir>/kek-<id>    0600, the 32 raw bytes of one KEK; <id> is its keyID
//	<dir>/current     0600, "<id>\n": the KEK that Wrap uses
//
// Every file is written to a 0600 temporary file, synced and renamed into
// place, so a crash leaves either the old or the new file, never half of
// one. Rotate adds a kek-<id> file and moves current; older kek files stay
// so that data keys wrapped by them can still be unwrapped (and re-wrapped)
// until Retire deletes them.
//
// A FileKMS is safe for concurrent use within one process; the directory
// belongs to a single agentd (the store's file lock already ensures there is
// only one).
type FileKMS struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	current string            // id of the KEK Wrap uses
	keys    map[string][]byte // KEKs read so far, by id
}

var _ KMS = (*FileKMS)(nil)

// OpenFileKMS opens the key directory dir, creating it and a first KEK
// when there is none yet. It refuses key files that other users could
// read and directories that other users could write.
func OpenFileKMS(dir string, log *slog.Logger) (*FileKMS, error) {
	if log == nil {
		log = slog.Default()
	}
	k := &FileKMS{dir: dir, log: log, keys: map[string][]byte{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open key directory: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	id, err := k.readCurrent()
	if errors.Is(err, fs.ErrNotExist) {
		id, err = k.create()
		if err != nil {
			return nil, fmt.Errorf("create first key-encryption key in %s: %w", dir, err)
		}
		log.Info("created key-encryption key", "dir", dir, "key_id", id)
	} else if err != nil {
		return nil, err
	}
	if _, err := k.key(id); err != nil {
		return nil, err
	}
	k.current = id
	return k, nil
}

// CurrentKeyID returns the id of the KEK Wrap uses now, so a key rotation
// can skip data keys that are already wrapped by it.
func (k *FileKMS) CurrentKeyID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// Wrap encrypts dek with the current KEK: AES-256-GCM with a random nonce
// and the key id as additional data. The result is nonce || ciphertext.
func (k *FileKMS) Wrap(ctx context.Context, dek []byte) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("wrap data key: %w", err)
	}
	id := k.CurrentKeyID()
	kek, err := k.key(id)
	if err != nil {
		return nil, "", fmt.Errorf("wrap data key: %w", err)
	}
	out, err := seal(kek, dek, []byte(id))
	if err != nil {
		return nil, "", fmt.Errorf("wrap data key with key-encryption key %s: %w", id, err)
	}
	return out, id, nil
}

// Unwrap decrypts a data key wrapped by the KEK id, reading that KEK from
// its file the first time it is needed.
func (k *FileKMS) Unwrap(ctx context.Context, wrapped []byte, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	kek, err := k.key(id)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	dek, err := open(kek, wrapped, []byte(id))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key with key-encryption key %s: %w", id, err)
	}
	return dek, nil
}

// Rotate creates a new KEK and makes it current. Data keys wrapped by older
// KEKs stay readable; re-wrap them (see Rewrap) and then Retire the old ids.
// It returns the new key id.
func (k *FileKMS) Rotate(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("rotate key-encryption key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.current
	id, err := k.createLocked()
	if err != nil {
		return "", fmt.Errorf("rotate key-encryption key in %s: %w", k.dir, err)
	}
	k.current = id
	k.log.Info("rotated key-encryption key", "dir", k.dir, "key_id", id, "previous_key_id", old)
	return id, nil
}

// Retire deletes the KEK id for good; whatever it still wraps becomes
// unreadable, so call it only after every data key was re-wrapped. The
// current KEK cannot be retired.
func (k *FileKMS) Retire(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("retire key-encryption key: %w", err)
	}
	if !keyIDRe.MatchString(id) {
		return fmt.Errorf("retire key-encryption key %q: %w", id, ErrUnknownKey)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if id == k.current {
		return fmt.Errorf("retire key-encryption key %s: it is the current key; rotate first", id)
	}
	if err := os.Remove(filepath.Join(k.dir, kekPrefix+id)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("retire key-encryption key %s: %w", id, ErrUnknownKey)
		}
		return fmt.Errorf("retire key-encryption key %s: %w", id, err)
	}
	if kek, ok := k.keys[id]; ok {
		clear(kek)
		delete(k.keys, id)
	}
	if err := syncDir(k.dir); err != nil {
		return fmt.Errorf("retire key-encryption key %s: %w", id, err)
	}
	k.log.Info("retired key-encryption key", "dir", k.dir, "key_id", id)
	return nil
}

// Close zeroes the KEKs held in memory (best effort: the AES key schedules
// derived from them are out of reach). A later Wrap or Unwrap reads them
// from disk again. Do not call it while Wrap or Unwrap may be running.
func (k *FileKMS) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, kek := range k.keys {
		clear(kek)
		delete(k.keys, id)
	}
	return nil
}

// key returns the KEK id, reading and checking its file on first use.
func (k *FileKMS) key(id string) ([]byte, error) {
	if !keyIDRe.MatchString(id) {
		// Quoted: the id came from outside and is not one of ours.
		return nil, fmt.Errorf("key id %q: %w", id, ErrUnknownKey)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if kek, ok := k.keys[id]; ok {
		return kek, nil
	}
	path := filepath.Join(k.dir, kekPrefix+id)
	kek, err := readPrivateFile(path, keySize+1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key id %s: %w (no %s)", id, ErrUnknownKey, path)
	}
	if err != nil {
		return nil, err
	}
	if len(kek) != keySize {
		clear(kek)
		return nil, fmt.Errorf("key file %s: must hold exactly %d bytes", path, keySize)
	}
	// The file name must be the key's own id, or a swapped or corrupted
	// file would wrap data keys under an id that lies about it.
	if keyID(kek) != id {
		clear(kek)
		return nil, fmt.Errorf("key file %s: content does not match its key id (corrupted or replaced)", path)
	}
	k.keys[id] = kek
	return kek, nil
}

func (k *FileKMS) readCurrent() (string, error) {
	path := filepath.Join(k.dir, currentFile)
	b, err := readPrivateFile(path, 64)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !keyIDRe.MatchString(id) {
		return "", fmt.Errorf("key pointer %s: does not hold a key id", path)
	}
	return id, nil
}

func (k *FileKMS) create() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.createLocked()
}

// createLocked writes a new KEK file, then points current at it. A crash
// in between leaves an unused kek file and the old pointer: harmless.
func (k *FileKMS) createLocked() (string, error) {
	kek := make([]byte, keySize)
	if _, err := rand.Read(kek); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	id := keyID(kek)
	if err := writePrivateFile(k.dir, kekPrefix+id, kek); err != nil {
		clear(kek)
		return "", err
	}
	if err := writePrivateFile(k.dir, currentFile, []byte(id+"\n")); err != nil {
		clear(kek)
		return "", err
	}
	k.keys[id] = kek
	return id, nil
}

// checkDir refuses a key directory that others could write to: they could
// swap current for a KEK of their own and read every secret wrapped later.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("open key directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("key directory %s: not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("key directory %s: mode %04o lets group or others write to it; chmod 0700 it", dir, fi.Mode().Perm())
	}
	return nil
}

// readPrivateFile reads at most limit bytes of a regular file that only
// its owner may access. It does not follow a symlink at path, and checks
// the file it actually opened, not the path, so the check cannot be raced.
func readPrivateFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("key file %s: not a regular file (symlink)", path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets group or others access it; refusing to use it (chmod 0600 it, and consider the key exposed)", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	return b, nil
}

// writePrivateFile atomically puts data at dir/name with mode 0600.
func writePrivateFile(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp") // created 0600
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Explicit, whatever the umask and CreateTemp's default.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync key directory: %w", err)
	}
	return nil
}

// seal is AES-256-GCM with a random nonce; the result is nonce || ciphertext.
// Its errors never carry key or plaintext bytes.
func seal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return aead.Seal(out, out[:nonceSize], plaintext, aad), nil
}

// open reverses seal. Every failure to authenticate is ErrAuthFailed: the
// caller cannot and should not learn more.
func open(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < nonceSize+aead.Overhead() {
		return nil, fmt.Errorf("ciphertext too short: %w", ErrAuthFailed)
	}
	pt, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, ErrAuthFailed
	}
	return pt, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		// The length only, never the bytes.
		return nil, fmt.Errorf("key must be %d bytes, got %d", keySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create cipher: %w", err)
	}
	return aead, nil
}
