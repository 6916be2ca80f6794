package secrets

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const marker = "hunter2-PLAINTEXT-MARKER"

// spyKMS records every data key it wraps or unwraps, so tests can look
// for them where they must not be.
type spyKMS struct {
	KMS
	deks [][]byte
}

func (s *spyKMS) Wrap(ctx context.Context, dek []byte) ([]byte, string, error) {
	s.deks = append(s.deks, bytes.Clone(dek))
	return s.KMS.Wrap(ctx, dek)
}

func (s *spyKMS) Unwrap(ctx context.Context, wrapped []byte, id string) ([]byte, error) {
	dek, err := s.KMS.Unwrap(ctx, wrapped, id)
	if err == nil {
		s.deks = append(s.deks, bytes.Clone(dek))
	}
	return dek, err
}

type failingKMS struct{}

func (failingKMS) Wrap(context.Context, []byte) ([]byte, string, error) {
	return nil, "", errors.New("kms unavailable")
}

func (failingKMS) Unwrap(context.Context, []byte, string) ([]byte, error) {
	return nil, errors.New("kms unavailable")
}

func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	kms := openKMS(t, t.TempDir())
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"small", []byte(marker), []byte("shop/db/1")},
		{"empty payload", nil, []byte("shop/db/2")},
		{"no aad", []byte("x"), nil},
		{"1 MiB", bytes.Repeat([]byte{0xA5}, 1<<20), []byte("shop/big/1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Seal(ctx, kms, tc.plaintext, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyID != kms.CurrentKeyID() {
				t.Errorf("KeyID %s, want the current %s", s.KeyID, kms.CurrentKeyID())
			}
			b, err := s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			s2, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(ctx, kms, s2, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Open returned %d bytes, want the %d sealed", len(got), len(tc.plaintext))
			}
		})
	}
}

// Two versions of the same value share neither data key nor ciphertext.
func TestSealFreshDataKey(t *testing.T) {
	ctx := context.Background()
	spy := &spyKMS{KMS: openKMS(t, t.TempDir())}
	a, err := Seal(ctx, spy, []byte(marker), []byte("ns/n/1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seal(ctx, spy, []byte(marker), []byte("ns/n/1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(spy.deks[0], spy.deks[1]) {
		t.Error("two seals used the same data key")
	}
	if bytes.Equal(a.Nonce, b.Nonce) || bytes.Equal(a.Ciphertext, b.Ciphertext) || bytes.Equal(a.WrappedDEK, b.WrappedDEK) {
		t.Error("two seals of the same value produced shared nonce, ciphertext or wrapped key")
	}
}

func TestRewrap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kms := openKMS(t, dir)
	aad := []byte("shop/db/3")
	s, err := Seal(ctx, kms, []byte(marker), aad)
	if err != nil {
		t.Fatal(err)
	}
	oldID := s.KeyID
	newID, err := kms.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Rewrap(ctx, kms, s)
	if err != nil {
		t.Fatal(err)
	}
	if r.KeyID != newID {
		t.Errorf("re-wrapped KeyID %s, want %s", r.KeyID, newID)
	}
	if !bytes.Equal(r.Ciphertext, s.Ciphertext) || !bytes.Equal(r.Nonce, s.Nonce) {
		t.Error("Rewrap changed the payload")
	}
	if bytes.Equal(r.WrappedDEK, s.WrappedDEK) {
		t.Error("Rewrap kept the old wrapped data key")
	}
	if err := kms.Retire(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, kms, s, aad); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open under a retired key: %v, want ErrUnknownKey", err)
	}
	got, err := Open(ctx, openKMS(t, dir), r, aad)
	if err != nil || string(got) != marker {
		t.Fatalf("Open after rewrap and restart = %q, %v", got, err)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	kms := openKMS(t, t.TempDir())
	s, err := Seal(context.Background(), kms, []byte(marker), nil)
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	badVersion := bytes.Clone(good)
	badVersion[4] = 2
	hugeLen := bytes.Clone(good)
	copy(hugeLen[5:9], []byte{0xff, 0xff, 0xff, 0xff})
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "bad header"},
		{"bad magic", append([]byte("XXXX"), good[4:]...), "bad header"},
		{"newer version", badVersion, "format version 2"},
		{"huge length", hugeLen, "truncated"},
		{"trailing bytes", append(bytes.Clone(good), 0), "1 trailing bytes"},
	}
	// Every proper prefix is truncated.
	for n := range len(good) {
		tests = append(tests, struct {
			name string
			b    []byte
			want string
		}{"prefix", good[:n], ""})
	}
	for _, tc := range tests {
		_, err := Unmarshal(tc.b)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s (%d bytes): Unmarshal = %v, want ErrMalformed", tc.name, len(tc.b), err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestSealKMSFailure(t *testing.T) {
	ctx := context.Background()
	if _, err := Seal(ctx, failingKMS{}, []byte(marker), nil); err == nil || !strings.Contains(err.Error(), "kms unavailable") {
		t.Fatalf("Seal with a failing KMS = %v", err)
	}
	s, err := Seal(ctx, openKMS(t, t.TempDir()), []byte(marker), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, failingKMS{}, s, nil); err == nil || !strings.Contains(err.Error(), "kms unavailable") {
		t.Fatalf("Open with a failing KMS = %v", err)
	}
	if _, err := Rewrap(ctx, failingKMS{}, s); err == nil || !strings.Contains(err.Error(), "kms unavailable") {
		t.Fatalf("Rewrap with a failing KMS = %v", err)
	}
}

// TestNoPlaintextLeaks drives a known plaintext through every failure and
// checks that neither it nor any key shows up in an error, in the
// persisted bytes or in the key directory.
func TestNoPlaintextLeaks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	spy := &spyKMS{KMS: openKMS(t, dir)}
	aad := []byte("shop/db/7")
	s, err := Seal(ctx, spy, []byte(marker), aad)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(marker)) {
		t.Fatal("marshaled Sealed contains the plaintext")
	}

	otherKMS := openKMS(t, t.TempDir())
	mutate := func(f func(*Sealed)) *Sealed {
		c := &Sealed{KeyID: s.KeyID, WrappedDEK: bytes.Clone(s.WrappedDEK), Nonce: bytes.Clone(s.Nonce), Ciphertext: bytes.Clone(s.Ciphertext)}
		f(c)
		return c
	}
	var errs []error
	add := func(_ any, err error) {
		if err == nil {
			t.Fatalf("failure case %d succeeded", len(errs))
		}
		errs = append(errs, err)
	}
	add(Open(ctx, spy, s, []byte("shop/db/8")))                                               // wrong aad
	add(Open(ctx, spy, s, nil))                                                               // missing aad
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.Ciphertext[0] ^= 1 }), aad))                // tampered payload
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.Ciphertext[len(c.Ciphertext)-1]++ }), aad)) // tampered tag
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.Nonce[0] ^= 1 }), aad))                     // tampered nonce
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.WrappedDEK[20] ^= 1 }), aad))               // tampered wrapped key
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.KeyID = "../current" }), aad))              // forged key id
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.Ciphertext = c.Ciphertext[:5] }), aad))     // truncated payload
	add(Open(ctx, otherKMS, s, aad))                                                          // wrong KEK
	add(Rewrap(ctx, otherKMS, s))
	add(Rewrap(ctx, spy, mutate(func(c *Sealed) { c.WrappedDEK = c.WrappedDEK[:10] })))
	for n := range len(b) {
		add(Unmarshal(b[:n])) // truncated Sealed
	}
	// A Sealed spliced from the wrapped key of one secret and the payload
	// of another must not open either.
	s2, err := Seal(ctx, spy, []byte(marker+"-2"), aad)
	if err != nil {
		t.Fatal(err)
	}
	add(Open(ctx, spy, mutate(func(c *Sealed) { c.WrappedDEK = s2.WrappedDEK }), aad))

	if !errors.Is(errs[0], ErrAuthFailed) || errs[0].Error() != "decrypt secret: authentication failed" {
		t.Errorf("wrong aad: %q, want exactly \"decrypt secret: authentication failed\"", errs[0])
	}
	kekFiles, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var keks [][]byte
	for _, e := range kekFiles {
		c, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(c, []byte(marker)) {
			t.Errorf("key directory file %s contains the plaintext", e.Name())
		}
		if strings.HasPrefix(e.Name(), kekPrefix) {
			keks = append(keks, c)
		}
	}
	for _, err := range errs {
		msg := err.Error()
		if strings.Contains(msg, marker) || strings.Contains(msg, "hunter2") {
			t.Errorf("error %q contains the plaintext", msg)
		}
		for _, k := range append(keks, spy.deks...) {
			assertNoKeyBytes(t, msg, k)
		}
	}
}
