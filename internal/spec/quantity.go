package spec

import (
	"fmt"
	"math/big"
	"strings"
)

// ParseCPU parses a CPU quantity ("500m", "0.5", "2") into millicores.
// Like Kubernetes, a CPU cannot be finer than one millicore.
func ParseCPU(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty CPU quantity")
	}
	var r *big.Rat
	if num, ok := strings.CutSuffix(s, "m"); ok {
		v, err := parseDecimal(num)
		if err != nil {
			return 0, fmt.Errorf("invalid CPU quantity %q: want e.g. \"500m\", \"0.5\" or \"2\"", s)
		}
		r = v
	} else {
		v, err := parseDecimal(s)
		if err != nil {
			return 0, fmt.Errorf("invalid CPU quantity %q: want e.g. \"500m\", \"0.5\" or \"2\"", s)
		}
		r = new(big.Rat).Mul(v, big.NewRat(1000, 1))
	}
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid CPU quantity %q: finer than one millicore", s)
	}
	if r.Sign() <= 0 {
		return 0, fmt.Errorf("invalid CPU quantity %q: must be greater than zero", s)
	}
	if !r.Num().IsInt64() || r.Num().Int64() > 1<<40 {
		return 0, fmt.Errorf("invalid CPU quantity %q: too large", s)
	}
	return r.Num().Int64(), nil
}

var memorySuffixes = []struct {
	suffix string
	factor int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
}

// ParseMemory parses a memory quantity ("512Mi", "1G", "1.5Gi", "1048576")
// into bytes.
func ParseMemory(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty memory quantity")
	}
	num, factor := s, int64(1)
	for _, sf := range memorySuffixes {
		if n, ok := strings.CutSuffix(s, sf.suffix); ok {
			num, factor = n, sf.factor
			break
		}
	}
	v, err := parseDecimal(num)
	if err != nil {
		return 0, fmt.Errorf("invalid memory quantity %q: want e.g. \"512Mi\", \"1Gi\" or \"1000000\"", s)
	}
	r := new(big.Rat).Mul(v, new(big.Rat).SetInt64(factor))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid memory quantity %q: not a whole number of bytes", s)
	}
	if r.Sign() <= 0 {
		return 0, fmt.Errorf("invalid memory quantity %q: must be greater than zero", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("invalid memory quantity %q: too large", s)
	}
	return r.Num().Int64(), nil
}

// parseDecimal accepts plain decimals only ("12", "0.5"): no signs,
// exponents or spaces, so there is one way to write a quantity.
func parseDecimal(s string) (*big.Rat, error) {
	if s == "" || s == "." {
		return nil, fmt.Errorf("empty number")
	}
	dots := 0
	for _, c := range s {
		switch {
		case c == '.':
			dots++
		case c < '0' || c > '9':
			return nil, fmt.Errorf("invalid character %q", c)
		}
	}
	if dots > 1 {
		return nil, fmt.Errorf("more than one decimal point")
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("invalid number")
	}
	return r, nil
}
