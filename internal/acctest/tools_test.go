package acctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTool(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pulumi")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(t.TempDir(), "pulumi")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()

	tests := []struct {
		name, tool  string
		env         map[string]string
		want        string // exact path, or "" when an error is expected
		wantErrPart string
	}{
		{name: "override", tool: "pulumi", env: map[string]string{"HERD_PULUMI_CLI": bin}, want: bin},
		{name: "override not executable", tool: "pulumi", env: map[string]string{"HERD_PULUMI_CLI": notExec}, wantErrPart: "HERD_PULUMI_CLI"},
		{name: "not cached", tool: "pulumi", env: map[string]string{"HERD_PULUMI_CLI": "", "HERD_TOOLS_CACHE": cache}, wantErrPart: "set HERD_PULUMI_CLI or build it with `scripts/tool.sh pulumi`"},
		{name: "not cached, no override", tool: "tofu", env: map[string]string{"HERD_TOOLS_CACHE": cache}, wantErrPart: "build it with `scripts/tool.sh tofu`"},
		{name: "unknown", tool: "nope", wantErrPart: "unknown tool nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := Tool(tt.tool)
			if tt.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrPart) {
					t.Fatalf("Tool(%q) = %q, %v; want error containing %q", tt.tool, got, err, tt.wantErrPart)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Tool(%q) = %q, %v; want %q", tt.tool, got, err, tt.want)
			}
		})
	}

	// A cached binary is found at the version tools/tofu/go.mod pins.
	t.Run("cached", func(t *testing.T) {
		t.Setenv("HERD_TOOLS_CACHE", cache)
		root, err := ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		mod, err := os.ReadFile(filepath.Join(root, "tools", "tofu", "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		var ver string
		for _, line := range strings.Split(string(mod), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/opentofu/opentofu" {
				ver = f[1]
			}
		}
		if ver == "" {
			t.Fatal("tools/tofu/go.mod pins no github.com/opentofu/opentofu")
		}
		tofu := filepath.Join(cache, "tofu-"+ver, "tofu")
		if err := os.MkdirAll(filepath.Dir(tofu), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tofu, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		got, err := Tool("tofu")
		if err != nil || got != tofu {
			t.Fatalf("Tool(tofu) = %q, %v; want %q", got, err, tofu)
		}
	})
}
