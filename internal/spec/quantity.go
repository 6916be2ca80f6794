package spec

import (
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/api/resource"
)

// MaxQuantityLength bounds a CPU or memory quantity before it is parsed:
// every sensible quantity is a few characters long, and refusing longer
// ones at once keeps a hostile plan or request from making the parser
// (and every error message) work through megabytes.
const MaxQuantityLength = 64

// maxExponent bounds a quantity's decimal exponent ("1e3"): Kubernetes'
// parser and comparisons take time exponential in its number of digits
// (1e-999999999 does not finish), and no CPU or memory needs more than
// two.
const maxExponent = 99

// maxMillicores is the largest CPU herd accepts: about a billion cores,
// far beyond any node, and small enough that millicores*1024 (cpu.shares)
// cannot overflow.
const maxMillicores = 1 << 40

// CPUQuantity parses a CPU quantity as Kubernetes does ("500m", "0.5",
// "2", "1e3"), then applies herd's rules: greater than zero, whole
// millicores (Kubernetes, too, cannot express less than one millicore),
// at most about a billion cores.
func CPUQuantity(s string) (resource.Quantity, error) {
	q, err := parseQuantity("CPU", s, `"500m", "0.5" or "2"`)
	if err != nil {
		return resource.Quantity{}, err
	}
	if q.Cmp(*resource.NewMilliQuantity(maxMillicores, resource.DecimalSI)) > 0 {
		return resource.Quantity{}, fmt.Errorf("invalid CPU quantity %q: too large", s)
	}
	// MilliValue rounds up, so a quantity finer than 1m differs from it.
	if q.Cmp(*resource.NewMilliQuantity(q.MilliValue(), resource.DecimalSI)) != 0 {
		return resource.Quantity{}, fmt.Errorf("invalid CPU quantity %q: finer than one millicore", s)
	}
	return q, nil
}

// ParseCPU parses a CPU quantity (see CPUQuantity) into millicores.
func ParseCPU(s string) (int64, error) {
	q, err := CPUQuantity(s)
	if err != nil {
		return 0, err
	}
	return q.MilliValue(), nil
}

// MemoryQuantity parses a memory (or disk) quantity as Kubernetes does
// ("512Mi", "1.5Gi", "1G", "1048576"), then applies herd's rules: greater
// than zero, a whole number of bytes, less than 2^63-1 bytes. Lower
// bounds depend on what the quantity sizes and are the callers' (e.g.
// MinMemoryBytes for a container).
func MemoryQuantity(s string) (resource.Quantity, error) {
	q, err := parseQuantity("memory", s, `"512Mi", "1Gi" or "1000000"`)
	if err != nil {
		return resource.Quantity{}, err
	}
	// Kubernetes caps binary-suffixed quantities at 2^63-1 ("100Ei" parses
	// as that), so the cap itself may stand for anything larger.
	if q.Cmp(*resource.NewQuantity(math.MaxInt64, resource.BinarySI)) >= 0 {
		return resource.Quantity{}, fmt.Errorf("invalid memory quantity %q: too large", s)
	}
	// Value rounds up, so a fractional number of bytes differs from it.
	if q.Cmp(*resource.NewQuantity(q.Value(), resource.BinarySI)) != 0 {
		return resource.Quantity{}, fmt.Errorf("invalid memory quantity %q: not a whole number of bytes", s)
	}
	return q, nil
}

// ParseMemory parses a memory quantity (see MemoryQuantity) into bytes.
func ParseMemory(s string) (int64, error) {
	q, err := MemoryQuantity(s)
	if err != nil {
		return 0, err
	}
	return q.Value(), nil
}

// parseQuantity bounds s, parses it with Kubernetes' parser and refuses
// zero and negative quantities. kind names the quantity in errors,
// examples says what a valid one looks like.
func parseQuantity(kind, s, examples string) (resource.Quantity, error) {
	switch {
	case s == "":
		return resource.Quantity{}, fmt.Errorf("empty %s quantity", kind)
	case len(s) > MaxQuantityLength:
		// Never echo the input: it may be megabytes long.
		return resource.Quantity{}, fmt.Errorf("invalid %s quantity: %d bytes long, at most %d allowed", kind, len(s), MaxQuantityLength)
	}
	if exponentOutOfRange(s) {
		return resource.Quantity{}, fmt.Errorf("invalid %s quantity %q: exponent beyond ±%d", kind, s, maxExponent)
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return resource.Quantity{}, fmt.Errorf("invalid %s quantity %q: want e.g. %s", kind, s, examples)
	}
	if q.Sign() <= 0 {
		return resource.Quantity{}, fmt.Errorf("invalid %s quantity %q: must be greater than zero", kind, s)
	}
	return q, nil
}

// exponentOutOfRange reports whether s, read as Kubernetes reads a
// quantity (a signed decimal, then a suffix that may be a decimal exponent
// "e<n>" or "E<n>"), has an exponent beyond ±maxExponent. Anything else
// is left to resource.ParseQuantity.
func exponentOutOfRange(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && (s[i] == '.' || isDigit(s[i])) {
		i++
	}
	if i == len(s) || (s[i] != 'e' && s[i] != 'E') {
		return false
	}
	exp := s[i+1:]
	if exp != "" && (exp[0] == '+' || exp[0] == '-') {
		exp = exp[1:]
	}
	if exp == "" {
		return false // "1E" is the exa suffix
	}
	for j := range len(exp) {
		if !isDigit(exp[j]) {
			return false // "1Ei" and the like: not an exponent
		}
	}
	n := 0
	for j := range len(exp) {
		n = n*10 + int(exp[j]-'0')
		if n > maxExponent {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
