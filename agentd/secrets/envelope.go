package secrets

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sealed is one secret version encrypted at rest: the payload under its
// own data key, and that data key wrapped by the KMS.
type Sealed struct {
	// KeyID names the KEK that wrapped the data key.
	KeyID string
	// WrappedDEK is the data key as the KMS wrapped it.
	WrappedDEK []byte
	// Nonce is the AES-GCM nonce of the payload.
	Nonce []byte
	// Ciphertext is the AES-256-GCM ciphertext of the payload, tag included.
	Ciphertext []byte
}

// Seal encrypts plaintext with a fresh data key and wraps that key via kms.
// aad binds the ciphertext to where it belongs (e.g.
// "namespace/name/version"): Open with any other aad fails, so a ciphertext
// copied onto another secret or version in the store does not decrypt.
// Every call uses a new data key, so one is never reused across versions.
func Seal(ctx context.Context, kms KMS, plaintext, aad []byte) (*Sealed, error) {
	dek := make([]byte, keySize)
	// Zero the data key once it is wrapped (best effort: the AES key
	// schedule derived from it is out of reach).
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("seal secret: generate data key: %w", err)
	}
	ct, err := seal(dek, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("seal secret: encrypt: %w", err)
	}
	wrapped, id, err := kms.Wrap(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("seal secret: %w", err)
	}
	return &Sealed{
		KeyID:      id,
		WrappedDEK: wrapped,
		Nonce:      ct[:nonceSize:nonceSize],
		Ciphertext: ct[nonceSize:],
	}, nil
}

// Open decrypts s, which must have been sealed with the same aad. A wrong
// key, a wrong aad and tampered bytes all fail with ErrAuthFailed and say
// nothing more.
func Open(ctx context.Context, kms KMS, s *Sealed, aad []byte) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("decrypt secret: %w", err)
	}
	dek, err := kms.Unwrap(ctx, s.WrappedDEK, s.KeyID)
	if err != nil {
		return nil, fmt.Errorf("decrypt secret: %w", err)
	}
	defer clear(dek)
	buf := make([]byte, 0, len(s.Nonce)+len(s.Ciphertext))
	buf = append(append(buf, s.Nonce...), s.Ciphertext...)
	pt, err := open(dek, buf, aad)
	if err != nil {
		return nil, fmt.Errorf("decrypt secret: %w", err)
	}
	return pt, nil
}

// Rewrap returns s with its data key re-wrapped under the KMS's current
// KEK, for a key rotation. The payload is not decrypted, so the result
// shares Nonce and Ciphertext with s; a tampered payload stays detectably
// tampered.
func Rewrap(ctx context.Context, kms KMS, s *Sealed) (*Sealed, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("re-wrap data key: %w", err)
	}
	dek, err := kms.Unwrap(ctx, s.WrappedDEK, s.KeyID)
	if err != nil {
		return nil, fmt.Errorf("re-wrap data key: %w", err)
	}
	defer clear(dek)
	wrapped, id, err := kms.Wrap(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("re-wrap data key: %w", err)
	}
	return &Sealed{KeyID: id, WrappedDEK: wrapped, Nonce: s.Nonce, Ciphertext: s.Ciphertext}, nil
}

// The encoding of a Sealed (all integers big-endian):
//
//	magic     "HRDS"
//	version   1 byte, sealedVersion
//	4 fields  uint32 length + bytes each: KeyID, WrappedDEK, Nonce, Ciphertext
//
// A new layout gets a new version; Unmarshal refuses versions it does not
// know rather than misreading them.
const (
	sealedMagic   = "HRDS"
	sealedVersion = 1
	// Bounds Unmarshal enforces on what it reads from disk.
	maxKeyIDLen      = 1024
	maxWrappedDEKLen = 4096
)

// ErrMalformed means bytes given to Unmarshal are not a Sealed.
var ErrMalformed = errors.New("malformed sealed secret")

// Marshal encodes s in the stable layout above.
func (s *Sealed) Marshal() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("encode sealed secret: %w", err)
	}
	fields := [][]byte{[]byte(s.KeyID), s.WrappedDEK, s.Nonce, s.Ciphertext}
	n := len(sealedMagic) + 1
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	out = append(out, sealedMagic...)
	out = append(out, sealedVersion)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out, nil
}

// Unmarshal decodes what Marshal produced. The result does not alias b.
func Unmarshal(b []byte) (*Sealed, error) {
	if len(b) < len(sealedMagic)+1 || !bytes.Equal(b[:len(sealedMagic)], []byte(sealedMagic)) {
		return nil, fmt.Errorf("decode sealed secret: %w: bad header", ErrMalformed)
	}
	if v := b[len(sealedMagic)]; v != sealedVersion {
		return nil, fmt.Errorf("decode sealed secret: %w: format version %d is not %d (written by a newer agentd?)", ErrMalformed, v, sealedVersion)
	}
	rest := b[len(sealedMagic)+1:]
	var fields [4][]byte
	for i := range fields {
		if len(rest) < 4 {
			return nil, fmt.Errorf("decode sealed secret: %w: truncated", ErrMalformed)
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return nil, fmt.Errorf("decode sealed secret: %w: truncated", ErrMalformed)
		}
		fields[i] = bytes.Clone(rest[:n])
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("decode sealed secret: %w: %d trailing bytes", ErrMalformed, len(rest))
	}
	s := &Sealed{KeyID: string(fields[0]), WrappedDEK: fields[1], Nonce: fields[2], Ciphertext: fields[3]}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("decode sealed secret: %w", err)
	}
	return s, nil
}

// check rejects a Sealed that cannot be valid, before any key is used.
func (s *Sealed) check() error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil", ErrMalformed)
	case s.KeyID == "" || len(s.KeyID) > maxKeyIDLen:
		return fmt.Errorf("%w: key id must be 1 to %d bytes", ErrMalformed, maxKeyIDLen)
	case len(s.WrappedDEK) == 0 || len(s.WrappedDEK) > maxWrappedDEKLen:
		return fmt.Errorf("%w: wrapped data key must be 1 to %d bytes", ErrMalformed, maxWrappedDEKLen)
	case len(s.Nonce) != nonceSize:
		return fmt.Errorf("%w: nonce must be %d bytes", ErrMalformed, nonceSize)
	case len(s.Ciphertext) < gcmTagSize:
		return fmt.Errorf("%w: ciphertext shorter than its tag", ErrMalformed)
	}
	return nil
}

const gcmTagSize = 16
