package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/agent"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := func() agent.Config {
		return agent.Config{Name: "n1", Listen: "127.0.0.1:7443", CACert: "ca", Cert: "c", Key: "k", StateDir: "/tmp/x", Socket: "/run/herd/agentd.sock"}
	}
	if c := valid(); c.Validate() != nil {
		t.Fatalf("valid config refused: %v", c.Validate())
	}
	socketOnly := agent.Config{Name: "n1", Socket: "/run/herd/agentd.sock", StateDir: "/tmp/x"}
	if err := socketOnly.Validate(); err != nil {
		t.Errorf("socket-only config refused: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*agent.Config)
		want   string
	}{
		{"bad name", func(c *agent.Config) { c.Name = "Node_1" }, "--name"},
		{"no listener", func(c *agent.Config) { c.Listen, c.Socket = "", "" }, "--listen or --socket"},
		{"TCP without certificates", func(c *agent.Config) { c.Key = "" }, "mutual TLS"},
		{"no state dir", func(c *agent.Config) { c.StateDir = "" }, "--state-dir"},
		{"bad reserved cpu", func(c *agent.Config) { c.ReservedCPU = "12Q" }, "--reserved-cpu"},
		{"bad reserved memory", func(c *agent.Config) { c.ReservedMemory = "-1Mi" }, "--reserved-memory"},
		{"socket path too long", func(c *agent.Config) { c.Socket = "/" + strings.Repeat("s", 120) }, "--socket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// agentd refuses to serve with a certificate that does not carry its
// name: clients verify exactly that, so it could never be reached.
func TestRefusesCertificateOfAnotherNode(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	cert, key, err := env.Certs.Node("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := acctest.ShortTempDir("herd-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := env.AgentOptions("wrong-cert")
	o.Dir = dir
	o.ExtraArgs = []string{"--cert", cert, "--key", key} // later flags win
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := acctest.StartAgent(ctx, o)
	if err == nil {
		a.Stop()
		t.Fatal("agentd started with the certificate of another node")
	}
	if msg := err.Error(); !strings.Contains(msg, "--cert does not carry the node name") || !strings.Contains(msg, "valid for someone-else, not wrong-cert") {
		t.Errorf("StartAgent: %v\nwant agentd to say the certificate lacks its name", err)
	}
}
