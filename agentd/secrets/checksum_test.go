package secrets

import (
	"strings"
	"testing"
)

func TestChecksum(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	base := map[string][]byte{"username": []byte("admin"), "password": []byte("hunter2")}
	sum := Checksum(key, base)
	if !strings.HasPrefix(sum, ChecksumPrefix) || len(sum) != len(ChecksumPrefix)+64 {
		t.Fatalf("Checksum = %q, want %s and 64 hex digits", sum, ChecksumPrefix)
	}
	if strings.Contains(sum, "hunter2") {
		t.Fatal("checksum contains the value")
	}
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"deterministic", sum, Checksum(key, map[string][]byte{"username": []byte("admin"), "password": []byte("hunter2")}), true},
		{"order independent", sum, Checksum(key, map[string][]byte{"password": []byte("hunter2"), "username": []byte("admin")}), true},
		{"nil and empty map", Checksum(key, nil), Checksum(key, map[string][]byte{}), true},
		{"different cluster key", sum, Checksum(other, base), false},
		{"different value", sum, Checksum(key, map[string][]byte{"username": []byte("admin"), "password": []byte("hunter3")}), false},
		{"renamed key", sum, Checksum(key, map[string][]byte{"user": []byte("admin"), "password": []byte("hunter2")}), false},
		{"extra key", sum, Checksum(key, map[string][]byte{"username": []byte("admin"), "password": []byte("hunter2"), "x": nil}), false},
		{"key/value boundary", Checksum(key, map[string][]byte{"ab": []byte("c")}), Checksum(key, map[string][]byte{"a": []byte("bc")}), false},
		{"entry boundary", Checksum(key, map[string][]byte{"a": []byte("b"), "c": []byte("d")}), Checksum(key, map[string][]byte{"a": []byte("bcd")}), false},
		{"empty value vs no entry", Checksum(key, map[string][]byte{"a": nil}), Checksum(key, nil), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.a == tc.b) != tc.same {
				t.Errorf("%s vs %s: equal = %v, want %v", tc.a, tc.b, tc.a == tc.b, tc.same)
			}
		})
	}
}

func TestChecksumEmptyKeyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Checksum with an empty cluster key did not panic")
		}
	}()
	Checksum(nil, map[string][]byte{"a": []byte("b")})
}
