package spec

import (
	"bytes"
	"strings"
	"testing"
)

// secretMarker is in every value, so the tests can check that no error
// message ever carries one.
const secretMarker = "hunter2-PLAINTEXT-MARKER"

func val(s string) []byte { return []byte(secretMarker + s) }

func TestValidateSecretKey(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"password", ""},
		{"tls.crt", ""},
		{".dockerconfigjson", ""},
		{"a-b_c.D9", ""},
		{"...", ""},
		{"..x", ""},
		{strings.Repeat("k", MaxSecretKeyLength), ""},
		{"", "must not be empty"},
		{".", `must not be "." or ".."`},
		{"..", `must not be "." or ".."`},
		{"../x", "no '/'"},
		{"a/b", "no '/'"},
		{"/etc", "no '/'"},
		{`a\b`, "letters, digits"},
		{"a b", "letters, digits"},
		{"a\x00b", "letters, digits"},
		{"ключ", "letters, digits"},
		{strings.Repeat("k", MaxSecretKeyLength+1), "at most 253 characters, got 254"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			checkErr(t, ValidateSecretKey(tt.key), tt.want)
		})
	}
}

// Each case must produce an error at wantPath containing wantMsg (or none
// when wantPath is empty), and no error may contain a value.
func TestValidateSecret(t *testing.T) {
	tests := []struct {
		name     string
		typ      string
		data     map[string][]byte
		wantPath string
		wantMsg  string
	}{
		{"opaque by default", "", map[string][]byte{"a": val("1")}, "", ""},
		{"opaque", SecretTypeOpaque, map[string][]byte{"a": val("1"), "b.c": nil}, "", ""},
		{"exactly 1 MiB", "", map[string][]byte{"k": bytes.Repeat([]byte{'x'}, MaxSecretBytes-1)}, "", ""},
		{"tls", SecretTypeTLS, map[string][]byte{"tls.crt": val("c"), "tls.key": val("k"), "ca.crt": val("ca")}, "", ""},
		{"basic-auth", SecretTypeBasicAuth, map[string][]byte{"username": val("u"), "password": val("p")}, "", ""},
		{"registry", SecretTypeRegistry, map[string][]byte{"registry": val("r"), "username": val("u"), "password": val("p")}, "", ""},

		{"no data", "", nil, "data", "at least one key is required"},
		{"empty data", "", map[string][]byte{}, "data", "at least one key is required"},
		{"1 MiB + 1", "", map[string][]byte{"k": append(val(""), bytes.Repeat([]byte{'x'}, MaxSecretBytes-len(secretMarker))...)}, "data", "1048577 bytes, more than the limit of 1048576"},
		{"keys count toward the size", "", map[string][]byte{strings.Repeat("k", 200): bytes.Repeat([]byte{'x'}, MaxSecretBytes-199)}, "data", "more than the limit"},
		{"path traversal", "", map[string][]byte{"../x": val("")}, `data["../x"]`, "no '/'"},
		{"slash", "", map[string][]byte{"a/b": val("")}, `data["a/b"]`, "no '/'"},
		{"dot", "", map[string][]byte{".": val("")}, `data["."]`, `"." or ".."`},
		{"dot dot", "", map[string][]byte{"..": val("")}, `data[".."]`, `"." or ".."`},
		{"empty key", "", map[string][]byte{"": val("")}, `data[""]`, "must not be empty"},
		{"long key", "", map[string][]byte{strings.Repeat("k", 254): val("")}, `data["` + strings.Repeat("k", 254) + `"]`, "at most 253"},
		{"bad type", "Opaque", map[string][]byte{"a": val("")}, "type", `invalid secret type "Opaque"`},
		{"unknown type", "kubernetes.io/tls", map[string][]byte{"a": val("")}, "type", "must be one of opaque, tls, basic-auth, registry"},
		{"tls without key", SecretTypeTLS, map[string][]byte{"tls.crt": val("c")}, "data", `type "tls" requires key "tls.key"`},
		{"tls without cert", SecretTypeTLS, map[string][]byte{"tls.key": val("k")}, "data", `requires key "tls.crt"`},
		{"tls empty key", SecretTypeTLS, map[string][]byte{"tls.crt": val("c"), "tls.key": {}}, `data["tls.key"]`, `must not be empty for type "tls"`},
		{"basic-auth without password", SecretTypeBasicAuth, map[string][]byte{"username": val("u")}, "data", `type "basic-auth" requires key "password"`},
		{"registry without registry", SecretTypeRegistry, map[string][]byte{"username": val("u"), "password": val("p")}, "data", `type "registry" requires key "registry"`},
		{"registry empty password", SecretTypeRegistry, map[string][]byte{"registry": val("r"), "username": val("u"), "password": nil}, `data["password"]`, "must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidateSecret(tt.typ, tt.data)
			for _, e := range errs {
				if strings.Contains(e.Error(), secretMarker) || strings.Contains(e.Error(), "hunter2") {
					t.Errorf("error %q contains a value", e)
				}
			}
			if strings.Contains(errs.Error(), secretMarker) {
				t.Errorf("joined errors %q contain a value", errs)
			}
			wantFieldError(t, errs, tt.wantPath, tt.wantMsg, false)
		})
	}
}

// ValidateSecretData reports at the path it is given, every bad key at once.
func TestValidateSecretDataPathAndAllErrors(t *testing.T) {
	p := Path{}.Field("spec").Field("data")
	errs := ValidateSecretData(p, map[string][]byte{"../a": val("1"), "ok": val("2"), "..": val("3")})
	var got []string
	for _, e := range errs {
		got = append(got, e.Path.String())
	}
	if want := []string{`spec.data[".."]`, `spec.data["../a"]`}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("error paths %v, want %v", got, want)
	}
}

func TestValidateSecretType(t *testing.T) {
	for _, typ := range append([]string{""}, SecretTypes...) {
		checkErr(t, ValidateSecretType(typ), "")
	}
	checkErr(t, ValidateSecretType("TLS"), `invalid secret type "TLS"`)
	if got := RequiredSecretKeys(SecretTypeTLS); strings.Join(got, ",") != "tls.crt,tls.key" {
		t.Errorf("RequiredSecretKeys(tls) = %v", got)
	}
	if got := RequiredSecretKeys(SecretTypeOpaque); len(got) != 0 {
		t.Errorf("RequiredSecretKeys(opaque) = %v, want none", got)
	}
}
