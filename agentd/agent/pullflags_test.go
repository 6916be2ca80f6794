package agent_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/agent"
)

func TestImagePullFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want map[string]any
	}{
		{"defaults", nil, map[string]any{"ImagePullTimeout": 5 * time.Minute, "ImagePullStallTimeout": time.Minute}},
		{"set", []string{"--image-pull-timeout", "20m", "--image-pull-stall-timeout", "90s"},
			map[string]any{"ImagePullTimeout": 20 * time.Minute, "ImagePullStallTimeout": 90 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := agent.ParseCommandLine(tc.args, noEnv, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			checkFields(t, c.Config, tc.want)
		})
	}
	for _, tc := range []struct {
		name   string
		mutate func(*agent.Config)
		want   string
	}{
		{"negative timeout", func(c *agent.Config) { c.ImagePullTimeout = -time.Second }, "--image-pull-timeout"},
		{"negative stall timeout", func(c *agent.Config) { c.ImagePullStallTimeout = -time.Second }, "--image-pull-stall-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := agent.Config{Name: "n1", Socket: "/run/herd/agentd.sock", StateDir: "/tmp/x"}
			tc.mutate(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
}
