package nodeclient

import (
	"strings"
	"testing"
)

func TestParseNodeID(t *testing.T) {
	tests := []struct {
		id, name, addr, err string
	}{
		{"node-1@127.0.0.1:7443", "node-1", "127.0.0.1:7443", ""},
		{"n@unix:///run/herd/agentd.sock", "n", "unix:///run/herd/agentd.sock", ""},
		{"n@[::1]:7443", "n", "[::1]:7443", ""},
		{"node-1", "", "", "want NAME@ADDRESS"},
		{"Node@127.0.0.1:1", "", "", "name"},
		{"n@127.0.0.1", "", "", "host:port"},
		{"n@unix://rel/path", "", "", "absolute"},
		{"n@host:1/x", "", "", "host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			name, addr, err := ParseNodeID(tt.id)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("want error containing %q, got %v", tt.err, err)
				}
				return
			}
			if err != nil || name != tt.name || addr != tt.addr {
				t.Fatalf("got %q %q %v", name, addr, err)
			}
			if FormatNodeID(name, addr) != tt.id {
				t.Fatalf("round trip failed")
			}
		})
	}
}

func TestDialNeedsTLSForTCP(t *testing.T) {
	if _, err := Dial("n", "127.0.0.1:1", TLSMaterial{}); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("want a mutual TLS error, got %v", err)
	}
	conn, err := Dial("n", "unix:///nonexistent.sock", TLSMaterial{})
	if err != nil {
		t.Fatalf("unix dial is lazy and needs no TLS: %v", err)
	}
	conn.Close()
}
