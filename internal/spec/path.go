// Package spec is herd's one set of validation rules and defaults, shared by
// the provider (at plan time), herdctl and agentd (again on every request:
// agentd never trusts its client), so all of them refuse exactly the same
// input with the same field path. It covers pods (containers, ports, resource
// quantities, restart policy, secret mounts and env), probes, services,
// secrets and nested clusters, and hashes pod specs for drift detection.
package spec

import (
	"fmt"
	"strconv"
	"strings"
)

// StepKind says what a path step addresses.
type StepKind int

const (
	FieldStep StepKind = iota // a named field
	IndexStep                 // a list element
	KeyStep                   // a map entry
)

// Step is one element of a field path.
type Step struct {
	Kind  StepKind
	Field string
	Index int
	Key   string
}

// Path locates a field inside a spec, e.g. containers[1].image.
type Path []Step

// Field returns the path extended by a named field.
func (p Path) Field(name string) Path { return p.with(Step{Kind: FieldStep, Field: name}) }

// Index returns the path extended by a list index.
func (p Path) Index(i int) Path { return p.with(Step{Kind: IndexStep, Index: i}) }

// Key returns the path extended by a map key.
func (p Path) Key(k string) Path { return p.with(Step{Kind: KeyStep, Key: k}) }

func (p Path) with(s Step) Path {
	out := make(Path, len(p), len(p)+1)
	copy(out, p)
	return append(out, s)
}

// String renders the path the way gRPC error messages carry it.
func (p Path) String() string {
	var b strings.Builder
	for i, s := range p {
		switch s.Kind {
		case FieldStep:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.Field)
		case IndexStep:
			b.WriteString("[" + strconv.Itoa(s.Index) + "]")
		case KeyStep:
			b.WriteString("[" + strconv.Quote(s.Key) + "]")
		}
	}
	return b.String()
}

// FieldError is one problem with one field.
type FieldError struct {
	Path Path
	Msg  string
}

func (e FieldError) Error() string { return e.Path.String() + ": " + e.Msg }

// FieldErrors collects every problem found, so a user fixes them in one go.
type FieldErrors []FieldError

func (e FieldErrors) Error() string {
	msgs := make([]string, len(e))
	for i, fe := range e {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

// Err returns nil when there are no errors, so callers can `return errs.Err()`.
func (e FieldErrors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func (e *FieldErrors) add(p Path, format string, args ...any) {
	*e = append(*e, FieldError{Path: p, Msg: fmt.Sprintf(format, args...)})
}
