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

// storageTemplate is a template whose container mounts volume (an HCL
// expression) at /data, read-only when ro, beside a memory empty_dir.
func storageTemplate(volume string, ro bool, emptyDir string) string {
	return fmt.Sprintf(`  template {
    labels                   = { app = "web" }
    restart_on_config_change = true
    empty_dir {
%s
    }
    container {
      name  = "app"
      image = "busybox:1.36"
      volume_mount {
        volume    = %s
        path      = "/data"
        read_only = %t
      }
      volume_mount {
        empty_dir = "scratch"
        path      = "/scratch"
      }
    }
  }`, emptyDir, volume, ro)
}

const memoryScratch = `      name       = "scratch"
      medium     = "memory"
      size_limit = "8Mi"`

// A template's volume_mount and empty_dir are checked at plan time, at
// their attributes, as herd_pod's are: a volume id of another namespace
// than the deployment's, an empty_dir's own rules, a mount of an
// empty_dir the template lacks; a template that writes its volume runs
// one replica at most, and never BlueGreen.
func TestDeploymentPlanRefusesBadStorage(t *testing.T) {
	otherNS := `"` + testNodeID + `/other/data"`
	runPlanErrorCases(t, []planErrorCase{
		{
			name:   "volume id of another namespace",
			config: deploymentConfig("  replicas = 1\n" + storageTemplate(otherNS, false, memoryScratch)),
			re: errRe("Invalid container specification", `template.container[0].volume_mount[0].volume:`,
				`volume `+testNodeID+`/other/data is in namespace other`, `namespace default`),
			errors: 1,
		},
		{
			name: "volume id of the default namespace in another",
			config: strings.Replace(deploymentConfig("  replicas = 1\n"+storageTemplate(`"`+testNodeID+`/default/data"`, true, memoryScratch)),
				`name = "web"`, "name = \"web\"\n  namespace = \"prod\"", 1),
			re:     errRe(`template.container[0].volume_mount[0].volume:`, `is in namespace default`, `namespace prod`),
			errors: 1,
		},
		{
			name:   "memory empty_dir without size_limit",
			config: deploymentConfig("  replicas = 1\n" + storageTemplate(`"data"`, true, `      name = "scratch"`+"\n"+`      medium = "memory"`)),
			re:     errRe("Invalid deployment specification", `template.empty_dir[0].size_limit:`, `is required for a memory empty_dir`),
			errors: 1,
		},
		{
			name: "mount of an empty_dir the template lacks",
			config: deploymentConfig("  replicas = 1\n" + strings.Replace(storageTemplate(`"data"`, true, memoryScratch),
				`empty_dir = "scratch"`, `empty_dir = "nope"`, 1)),
			re:     errRe("Invalid container specification", `template.container[0].volume_mount[1].empty_dir:`, `no empty_dir "nope"`),
			errors: 1,
		},
		{
			name:   "two replicas writing a volume",
			config: deploymentConfig("  replicas = 2\n" + storageTemplate(`"data"`, false, memoryScratch)),
			re:     errRe("Invalid deployment specification", `replicas`, `data`),
			errors: 1,
		},
		{
			name: "BlueGreen writing a volume",
			config: deploymentConfig("  replicas = 1\n  strategy = { type = \"BlueGreen\", max_surge = 0, max_unavailable = 0 }\n" +
				storageTemplate(`"data"`, false, memoryScratch)),
			re:     errRe("Invalid deployment specification", `strategy.type:`, `must be RollingUpdate`, `data`),
			errors: 1,
		},
	})
}

// The node of a volume id is no error (replicas go where the volume is),
// and read-only mounts are shared by any number of replicas.
func TestDeploymentPlanAcceptsVolumes(t *testing.T) {
	for name, body := range map[string]string{
		"id of another node": "  replicas = 1\n" + storageTemplate(`"node-z@127.0.0.9:1/default/data"`, false, memoryScratch),
		"read-only by three": "  replicas = 3\n" + storageTemplate(`"data"`, true, memoryScratch),
		"id in namespace prod": "  namespace = \"prod\"\n  replicas = 1\n" +
			storageTemplate(`"`+testNodeID+`/prod/data"`, false, memoryScratch),
	} {
		t.Run(name, func(t *testing.T) {
			expectPlanAccepted(t, `
provider "herd" {
  dial_timeout = "2s"
}
`+deploymentConfig(body))
		})
	}
}
