package spec

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"500m", 500, ""},
		{"0.5", 500, ""},
		{"2", 2000, ""},
		{"1.25", 1250, ""},
		{"1m", 1, ""},
		{"1e3", 1_000_000, ""},
		{"1E3", 1_000_000, ""},
		{"+2", 2000, ""},
		{".5", 500, ""},
		{"0.0001", 0, "finer than one millicore"},
		{"1.5m", 0, "finer than one millicore"},
		{"0", 0, "greater than zero"},
		{"0m", 0, "greater than zero"},
		{"-1", 0, `invalid CPU quantity "-1": must be greater than zero`},
		{"-500m", 0, "greater than zero"},
		{"2000000000", 0, "too large"},
		{"1Ei", 0, "too large"},
		{"1e999999999", 0, "exponent beyond"},
		{"1e-999999999", 0, "exponent beyond"},
		{"12Q", 0, "invalid CPU quantity"},
		{"two", 0, `invalid CPU quantity "two": want e.g.`},
		{"", 0, "empty CPU quantity"},
		{" 1", 0, "invalid CPU quantity"},
		{"1 ", 0, "invalid CPU quantity"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCPU(tt.in)
			checkErr(t, err, tt.wantErr)
			if err == nil && got != tt.want {
				t.Fatalf("ParseCPU(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"512Mi", 512 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"1.5Gi", 3 << 29, ""},
		{"1G", 1e9, ""},
		{"100k", 100e3, ""},
		{"1e3", 1000, ""},
		{"1048576", 1 << 20, ""},
		{"4Ei", 1 << 62, ""},
		{"0.5", 0, "whole number of bytes"},
		{"1.5", 0, "whole number of bytes"},
		{"500m", 0, "whole number of bytes"},
		{"-1Mi", 0, `invalid memory quantity "-1Mi": must be greater than zero`},
		{"12Q", 0, "invalid memory quantity"},
		{"Mi", 0, "invalid memory quantity"},
		{"lots", 0, `invalid memory quantity "lots": want e.g.`},
		{"0", 0, "greater than zero"},
		{"8Ei", 0, "too large"},
		{"100Ei", 0, "too large"},
		{"9223372036854775808", 0, "too large"},
		{"1e99", 0, "too large"},
		{"1e100", 0, "exponent beyond"},
		{"", 0, "empty memory quantity"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMemory(tt.in)
			checkErr(t, err, tt.wantErr)
			if err == nil && got != tt.want {
				t.Fatalf("ParseMemory(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// A huge quantity is refused before it is parsed, without being echoed.
func TestQuantityLengthBound(t *testing.T) {
	huge := strings.Repeat("9", 1<<20) + "m"
	for name, parse := range map[string]func(string) (int64, error){"cpu": ParseCPU, "memory": ParseMemory} {
		t.Run(name, func(t *testing.T) {
			for _, in := range []string{huge, strings.Repeat("1", MaxQuantityLength+1)} {
				_, err := parse(in)
				if err == nil || !strings.Contains(err.Error(), "bytes long, at most 64 allowed") {
					t.Fatalf("error %v, want the length message", err)
				}
				if len(err.Error()) > 200 {
					t.Errorf("error echoes the input: %d bytes", len(err.Error()))
				}
			}
			if _, err := parse("1" + strings.Repeat("0", MaxQuantityLength-1)); err != nil && strings.Contains(err.Error(), "bytes long") {
				t.Errorf("a %d-byte quantity was refused for its length: %v", MaxQuantityLength, err)
			}
		})
	}
}

// Whatever herd accepts, it reads as Kubernetes does: the nested cluster
// code hands the same strings to KubeVirt.
func TestQuantitiesAgreeWithKubernetes(t *testing.T) {
	for _, in := range []string{
		"500m", "0.5", "2", "1e3", "1E3", "1.25", "1m", "+3", ".5", "5.", "0.5Gi", "1000000000000m",
		"512Mi", "1.5Gi", "1G", "1Gi", "100k", "1048576", "4Ei", "7Ei", "1e18", "1.5e3", "2Ti", "1.7E9",
	} {
		q, err := resource.ParseQuantity(in)
		if err != nil {
			t.Fatalf("Kubernetes refuses %q: %v", in, err)
		}
		milli, cpuErr := ParseCPU(in)
		if cpuErr == nil && milli != q.MilliValue() {
			t.Errorf("ParseCPU(%q) = %d, Kubernetes %d", in, milli, q.MilliValue())
		}
		b, memErr := ParseMemory(in)
		if memErr == nil && b != q.Value() {
			t.Errorf("ParseMemory(%q) = %d, Kubernetes %d", in, b, q.Value())
		}
		if cpuErr != nil && memErr != nil {
			t.Errorf("herd refuses %q as CPU (%v) and as memory (%v)", in, cpuErr, memErr)
		}
		if mq, err := MemoryQuantity(in); err == nil && mq.Cmp(q) != 0 {
			t.Errorf("MemoryQuantity(%q) = %s, Kubernetes %s", in, mq.String(), q.String())
		}
		if cq, err := CPUQuantity(in); err == nil && cq.Cmp(q) != 0 {
			t.Errorf("CPUQuantity(%q) = %s, Kubernetes %s", in, cq.String(), q.String())
		}
	}
}
