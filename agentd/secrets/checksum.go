package secrets

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
)

// ChecksumPrefix starts every checksum, naming its algorithm so another can
// follow without ambiguity.
const ChecksumPrefix = "hmac-sha256:"

// checksumDomain separates these HMACs from any other use of the same
// cluster key.
const checksumDomain = "herd-secret-checksum-v1\x00"

// Checksum returns a keyed checksum of a secret's data, for state and plans:
// it changes when any key or value changes, but unlike a bare hash it
// cannot be used to test guesses of a short password by anyone without the
// cluster key. The map is encoded canonically (keys sorted, every key and
// value prefixed by its length), so the order of the map does not matter
// and ("ab", "c") cannot collide with ("a", "bc").
//
// clusterKey must be a random secret of at least 32 bytes shared by the
// cluster. Checksum panics when it is empty: that would silently turn the
// checksum into the bare hash it exists to avoid.
func Checksum(clusterKey []byte, data map[string][]byte) string {
	if len(clusterKey) == 0 {
		panic("secrets.Checksum: empty cluster key")
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte(checksumDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(keys)))
	m.Write(n[:])
	for _, k := range keys {
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		m.Write(n[:])
		m.Write([]byte(k))
		binary.BigEndian.PutUint64(n[:], uint64(len(data[k])))
		m.Write(n[:])
		m.Write(data[k])
	}
	return ChecksumPrefix + hex.EncodeToString(m.Sum(nil))
}
