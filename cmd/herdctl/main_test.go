package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no arguments", args: nil, wantCode: 2, wantStderr: "Commands:"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantStdout: "certs"},
		{name: "--help", args: []string{"--help"}, wantCode: 0, wantStdout: "Usage:"},
		{name: "help certs", args: []string{"help", "certs"}, wantCode: 0, wantStdout: "herdctl certs init"},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
		{name: "usage error", args: []string{"certs", "node", "--dir", dir}, wantCode: 2, wantStderr: "missing NAME"},
		{name: "runtime error", args: []string{"certs", "client", "bob", "--dir", dir}, wantCode: 1, wantStderr: "certs init"},
		{name: "success", args: []string{"certs", "init", "--dir", dir}, wantCode: 0, wantStdout: "wrote " + filepath.Join(dir, "ca.pem")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
