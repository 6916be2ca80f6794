package nodeid

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := []struct{ id, name, addr string }{
		{"node-a@10.0.0.5:7443", "node-a", "10.0.0.5:7443"},
		{"n1@[fd00::5]:7443", "n1", "[fd00::5]:7443"},
		{"n1@node1.example.com:1", "n1", "node1.example.com:1"},
		{"n1@unix:///run/herd/agentd.sock", "n1", "unix:///run/herd/agentd.sock"},
		{"n1@unix:///tmp/a@b/agentd.sock", "n1", "unix:///tmp/a@b/agentd.sock"},
	}
	for _, g := range good {
		name, addr, err := Parse(g.id)
		if err != nil || name != g.name || addr != g.addr {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", g.id, name, addr, err, g.name, g.addr)
		}
		if got := Format(name, addr); got != g.id {
			t.Errorf("Format(%q, %q) = %q, want %q", name, addr, got, g.id)
		}
	}
	bad := []struct{ id, want string }{
		{"", "want NAME@ADDRESS"},
		{"node-a", "want NAME@ADDRESS"},
		{"@10.0.0.5:7443", "node name must not be empty"},
		{"Node_A@10.0.0.5:7443", "RFC 1123"},
		{"node-a@", "address must not be empty"},
		{"node-a@10.0.0.5", `want "host:port"`},
		{"node-a@10.0.0.5:0", "port must be a number between 1 and 65535"},
		{"node-a@10.0.0.5:65536", "port must be"},
		{"node-a@10.0.0.5:http", "port must be"},
		{"node-a@:7443", "missing or invalid host"},
		{"node-a@tcp://10.0.0.5:7443", "no scheme"},
		{"node-a@unix://run/agentd.sock", "clean absolute path"},
		{"node-a@unix:///", "clean absolute path"},
		{"node-a@unix:///run/../agentd.sock", "clean absolute path"},
	}
	for _, b := range bad {
		_, _, err := Parse(b.id)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", b.id, err, b.want)
		}
	}
}

func TestParsePod(t *testing.T) {
	good := []struct{ id, node, pod string }{
		{"node-a@10.0.0.5:7443/web", "node-a@10.0.0.5:7443", "web"},
		{"node-a@unix:///run/herd/agentd.sock/web", "node-a@unix:///run/herd/agentd.sock", "web"},
	}
	for _, g := range good {
		node, pod, err := ParsePod(g.id)
		if err != nil || node != g.node || pod != g.pod {
			t.Errorf("ParsePod(%q) = %q, %q, %v; want %q, %q", g.id, node, pod, err, g.node, g.pod)
		}
		if got := FormatPod(node, pod); got != g.id {
			t.Errorf("FormatPod = %q, want %q", got, g.id)
		}
	}
	bad := []struct{ id, want string }{
		{"web", "want NODEID/NAME"},
		{"node-a@10.0.0.5:7443/", "pod name must not be empty"},
		{"node-a@10.0.0.5:7443/Web", "RFC 1123"},
		{"node-a/web", "want NAME@ADDRESS"},
		{"node-a@unix:///run/herd/agentd.sock", "pod name"},
	}
	for _, b := range bad {
		_, _, err := ParsePod(b.id)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParsePod(%q) error = %v, want it to contain %q", b.id, err, b.want)
		}
	}
}
