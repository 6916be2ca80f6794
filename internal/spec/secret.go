package spec

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Secret limits. Values are never part of an error message: a message
// names the offending key (keys are not secret) and at most a size.
const (
	// MaxSecretBytes bounds a secret's keys and values together, so one
	// secret cannot bloat the store, the gossip or a pod's tmpfs.
	MaxSecretBytes = 1 << 20
	// MaxSecretKeyLength is the longest key, a DNS subdomain's length, as
	// in Kubernetes.
	MaxSecretKeyLength = 253
)

// Secret types.
const (
	SecretTypeOpaque    = "opaque" // any keys; the default ("")
	SecretTypeTLS       = "tls"    // tls.crt and tls.key
	SecretTypeBasicAuth = "basic-auth"
	// SecretTypeRegistry is a registry credential in herd's own terms
	// (registry, username, password), the shape agentd's registry config
	// already uses, rather than a .dockerconfigjson blob that would need
	// parsing, and so could echo a value in a parse error.
	SecretTypeRegistry = "registry"
)

// SecretTypes lists the valid secret types.
var SecretTypes = []string{SecretTypeOpaque, SecretTypeTLS, SecretTypeBasicAuth, SecretTypeRegistry}

var requiredSecretKeys = map[string][]string{
	SecretTypeTLS:       {"tls.crt", "tls.key"},
	SecretTypeBasicAuth: {"username", "password"},
	SecretTypeRegistry:  {"registry", "username", "password"},
}

// A key becomes a file name when a secret is mounted, so it has no '/'
// and is never "." or "..": it cannot leave the secret's directory.
var secretKeyRe = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// ValidateSecretKey checks one data key. The error does not repeat the key:
// callers report it at the key's path, which names it.
func ValidateSecretKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("key must not be empty")
	case len(k) > MaxSecretKeyLength:
		return fmt.Errorf("key must be at most %d characters, got %d", MaxSecretKeyLength, len(k))
	case k == "." || k == "..":
		return fmt.Errorf(`key must not be "." or ".."`)
	case !secretKeyRe.MatchString(k):
		return fmt.Errorf("key must consist of letters, digits, '-', '_' and '.' (no '/': a key becomes a file name)")
	}
	return nil
}

// ValidateSecretData checks a secret's data map at path p: at least one
// key, every key valid, and keys and values together at most
// MaxSecretBytes.
func ValidateSecretData(p Path, data map[string][]byte) FieldErrors {
	var errs FieldErrors
	if len(data) == 0 {
		errs.add(p, "at least one key is required")
		return errs
	}
	total := 0
	for _, k := range slices.Sorted(maps.Keys(data)) {
		total += len(k) + len(data[k])
		if err := ValidateSecretKey(k); err != nil {
			errs.add(p.Key(k), "%v", err)
		}
	}
	if total > MaxSecretBytes {
		errs.add(p, "keys and values total %d bytes, more than the limit of %d (1 MiB)", total, MaxSecretBytes)
	}
	return errs
}

// ValidateSecretType accepts "" (opaque) and the SecretTypes.
func ValidateSecretType(t string) error {
	if t == "" || slices.Contains(SecretTypes, t) {
		return nil
	}
	return fmt.Errorf("invalid secret type %q: must be one of %s", t, strings.Join(SecretTypes, ", "))
}

// RequiredSecretKeys returns the keys a secret of type t must have, each
// with a non-empty value.
func RequiredSecretKeys(t string) []string {
	return slices.Clone(requiredSecretKeys[t])
}

// ValidateSecret checks a secret's type and data together. Paths are
// relative to the spec ("type", "data"), like ValidatePod's.
func ValidateSecret(typ string, data map[string][]byte) FieldErrors {
	var errs FieldErrors
	if err := ValidateSecretType(typ); err != nil {
		errs.add(Path{}.Field("type"), "%v", err)
	}
	dp := Path{}.Field("data")
	errs = append(errs, ValidateSecretData(dp, data)...)
	for _, k := range requiredSecretKeys[typ] {
		v, ok := data[k]
		switch {
		case !ok:
			errs.add(dp, "type %q requires key %q", typ, k)
		case len(v) == 0:
			errs.add(dp.Key(k), "must not be empty for type %q", typ)
		}
	}
	return errs
}

// ValidateSecretSpec checks a whole secret as a client applies it: names,
// type and data, and the node selector. Messages never contain a value.
func ValidateSecretSpec(s *herdv1.SecretSpec) FieldErrors {
	var errs FieldErrors
	if ns := s.GetNamespace(); ns != "" {
		if err := ValidateName(ns); err != nil {
			errs.add(Path{}.Field("namespace"), "%v", err)
		}
	}
	if err := ValidateName(s.GetName()); err != nil {
		errs.add(Path{}.Field("name"), "%v", err)
	}
	errs = append(errs, ValidateSecret(DefaultSecretType(s.GetType()), s.GetData())...)
	errs = append(errs, ValidateLabels(Path{}.Field("node_selector"), s.GetNodeSelector())...)
	return errs
}

// DefaultSecretType returns t, or opaque when t is empty.
func DefaultSecretType(t string) string {
	if t == "" {
		return SecretTypeOpaque
	}
	return t
}
