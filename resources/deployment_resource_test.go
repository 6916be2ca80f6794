package resources_test

import (
	"fmt"
	"strings"
	"testing"
)

// deploymentConfig renders a herd_deployment through a node no test can
// reach; body replaces the parts it names (a template, strategy, ...).
func deploymentConfig(body string) string {
	if !strings.Contains(body, "replicas") {
		body += "\n  replicas = 3"
	}
	if !strings.Contains(body, "selector") {
		body += "\n  selector = { app = \"web\" }"
	}
	if !strings.Contains(body, "template {") {
		body += `
  template {
    labels = { app = "web" }
    container {
      name  = "app"
      image = "busybox:1.36"
    }
  }`
	}
	return fmt.Sprintf(`
resource "herd_deployment" "d" {
  node = %q
  name = "web"
%s
}
`, testNodeID, body)
}

func TestDeploymentPlanRefusesBadInput(t *testing.T) {
	cases := []planErrorCase{
		{
			name:   "negative replicas",
			config: deploymentConfig(`  replicas = -1`),
			re:     errRe("Invalid deployment specification", `replicas = -1`, `replicas: must be between 0 and 1000, got -1`),
			errors: 1,
		},
		{
			name:   "name too long",
			config: strings.Replace(deploymentConfig(""), `name = "web"`, `name = "`+strings.Repeat("a", 41)+`"`, 1),
			re:     errRe("Invalid deployment specification", `name: at most 40 characters`),
			errors: 1,
		},
		{
			name:   "max_surge and max_unavailable both 0",
			config: deploymentConfig(`  strategy = { max_surge = 0, max_unavailable = 0 }`),
			re:     errRe("Invalid deployment specification", `strategy.max_surge:`, `must not both be 0`),
			errors: 1,
		},
		{
			name:   "unknown strategy type",
			config: deploymentConfig(`  strategy = { type = "Recreate" }`),
			re:     errRe("Invalid deployment specification", `strategy.type:`, `must be one of RollingUpdate, BlueGreen, got "Recreate"`),
			errors: 1,
		},
		{
			name:   "negative min_ready_seconds",
			config: deploymentConfig(`  strategy = { min_ready_seconds = -5 }`),
			re:     errRe("Invalid deployment specification", `strategy.min_ready_seconds:`, `must be between 0 and 3600, got -5`),
			errors: 1,
		},
		{
			// The default progress deadline (600 s) counts, as in agentd.
			name:   "min_ready_seconds not below the default progress deadline",
			config: deploymentConfig(`  strategy = { min_ready_seconds = 900 }`),
			re:     errRe(`strategy.min_ready_seconds:`, `must be below progress_deadline_seconds (600), got 900`),
			errors: 1,
		},
		{
			name:   "unknown placement strategy",
			config: deploymentConfig(`  placement = { strategy = "random" }`),
			re:     errRe("Invalid deployment specification", `placement.strategy:`, `must be one of bin_pack, spread, got "random"`),
			errors: 1,
		},
		{
			name:   "negative max_per_node",
			config: deploymentConfig(`  placement = { max_per_node = -1 }`),
			re:     errRe(`placement.max_per_node:`, `must be 0 (no limit) or more, got -1`),
			errors: 1,
		},
		{
			name:   "empty selector",
			config: deploymentConfig(`  selector = {}`),
			re:     errRe(`selector:`, `at least one label is required`),
			errors: 1,
		},
		{
			name: "template labels missing a selector label",
			config: deploymentConfig(`  template {
    labels = { app = "api" }
    container {
      name  = "app"
      image = "busybox:1.36"
    }
  }`),
			re:     errRe("Invalid deployment specification", `template.labels:`, `must contain every selector label: missing app=web`),
			errors: 1,
		},
		{
			name: "reserved template label",
			config: deploymentConfig(`  template {
    labels = { app = "web", "herd.io/revision" = "7" }
    container {
      name  = "app"
      image = "busybox:1.36"
    }
  }`),
			re:     errRe(`template.labels["herd.io/revision"]:`, `reserved for herd`),
			errors: 1,
		},
		{
			name: "invalid image in the template",
			config: deploymentConfig(`  template {
    labels = { app = "web" }
    container {
      name  = "app"
      image = "Not A/Valid:Image"
    }
  }`),
			re:     errRe("Invalid container specification", `template.container[0].image:`, `invalid image reference`),
			errors: 1,
		},
		{
			name: "bad port in the template",
			config: deploymentConfig(`  template {
    labels = { app = "web" }
    container {
      name  = "app"
      image = "busybox:1.36"
      port {
        container_port = 70000
      }
    }
  }`),
			re:     errRe(`template.container[0].port[0].container_port:`, `65535`),
			errors: 1,
		},
		{
			name: "request above limit",
			config: deploymentConfig(`  template {
    labels = { app = "web" }
    container {
      name        = "app"
      image       = "busybox:1.36"
      cpu         = "500m"
      cpu_request = "501m"
    }
  }`),
			re:     errRe("Invalid container specification", `template.container[0].cpu_request:`, `501m is above the CPU limit 500m`),
			errors: 1,
		},
		{
			name:   "no template",
			config: strings.Replace(deploymentConfig(`  template {}`), "template {}", "", 1),
			re:     errRe("Invalid deployment specification", `template: a pod template is required`),
			errors: 1,
		},
		{
			name: "invalid restart policy",
			config: deploymentConfig(`  template {
    labels         = { app = "web" }
    restart_policy = "Sometimes"
    container {
      name  = "app"
      image = "busybox:1.36"
    }
  }`),
			re:     errRe(`template.restart_policy`, `Sometimes`),
			errors: 1,
		},
	}
	runPlanErrorCases(t, cases)
}

// A valid deployment plans without a node: the dry run is skipped, with a
// warning that says so.
func TestDeploymentPlanWithoutNode(t *testing.T) {
	expectPlanAccepted(t, `
provider "herd" {
  dial_timeout = "2s"
}
`+deploymentConfig(`  strategy = { type = "BlueGreen", max_surge = 0, max_unavailable = 0 }`))
}
