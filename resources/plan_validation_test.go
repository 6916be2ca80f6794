package resources_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/tfversion"
)

// A node no test can reach: plan-time validation must not need one.
const testNodeID = "node-a@127.0.0.1:1"

// podConfig renders a herd_pod with one valid container unless the body
// brings its own container blocks.
func podConfig(body string) string {
	if !strings.Contains(body, "container {") {
		body += `
  container {
    name  = "app"
    image = "busybox:1.36"
  }`
	}
	return fmt.Sprintf(`
resource "herd_pod" "p" {
  node = %q
%s
}
`, testNodeID, body)
}

// planErrorCase is a configuration that `plan` must refuse with exactly
// errors errors, the output matching re; checks, when set, skip it on CLIs
// that cannot run it.
type planErrorCase struct {
	name   string
	config string
	re     *regexp.Regexp
	errors int
	checks []tfversion.TerraformVersionCheck
}

// runPlanErrorCases runs each case as a subtest.
func runPlanErrorCases(t *testing.T, cases []planErrorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectPlanErrorsOn(t, tc.config, tc.re, tc.errors, tc.checks)
		})
	}
}

// expectPlanErrors runs `plan` on config and requires it to fail with
// exactly wantErrors errors, the output matching re.
func expectPlanErrors(t *testing.T, config string, re *regexp.Regexp, wantErrors int) {
	t.Helper()
	expectPlanErrorsOn(t, config, re, wantErrors, nil)
}

// expectPlanErrorsOn is expectPlanErrors with CLI version checks.
func expectPlanErrorsOn(t *testing.T, config string, re *regexp.Regexp, wantErrors int, checks []tfversion.TerraformVersionCheck) {
	t.Helper()
	needCLI(t)
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		TerraformVersionChecks:   checks,
		// ExpectError cannot count errors; ErrorCheck sees the whole
		// output when ExpectError is unset.
		ErrorCheck: func(err error) error {
			if err == nil {
				return errors.New("expected the plan to fail")
			}
			out := err.Error()
			if !re.MatchString(out) {
				return fmt.Errorf("output does not match %s:\n%s", re, out)
			}
			if n := strings.Count(out, "Error: "); n != wantErrors {
				return fmt.Errorf("want %d error(s), got %d:\n%s", wantErrors, n, out)
			}
			return nil
		},
		Steps: []resource.TestStep{{
			Config:   config,
			PlanOnly: true,
		}},
	})
}

// expectPlanAccepted runs `plan` on config and requires it to succeed
// with changes to make, without any node.
func expectPlanAccepted(t *testing.T, config string) {
	t.Helper()
	needCLI(t)
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		Steps: []resource.TestStep{{
			Config:             config,
			PlanOnly:           true,
			ExpectNonEmptyPlan: true,
		}},
	})
}

// unreachableNodeConfig is a provider that gives up quickly and a
// herd_node n no test can reach, whose computed attributes stay unknown
// at plan time.
const unreachableNodeConfig = `
provider "herd" {
  dial_timeout = "2s"
}

resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
}
`

// expectUnknownsPlan plans config (a format with one %s) twice without a
// node: with good it must succeed, with bad fail matching re.
func expectUnknownsPlan(t *testing.T, config, good, bad string, re *regexp.Regexp, checks []tfversion.TerraformVersionCheck) {
	t.Helper()
	needCLI(t)
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		TerraformVersionChecks:   checks,
		Steps: []resource.TestStep{
			{
				Config:             fmt.Sprintf(config, good),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config:      fmt.Sprintf(config, bad),
				PlanOnly:    true,
				ExpectError: re,
			},
		},
	})
}

func TestPodPlanRefusesBadInput(t *testing.T) {
	cases := []planErrorCase{
		{
			name:   "invalid pod name",
			config: podConfig(`  name = "Bad_Name"`),
			re:     errRe("Invalid pod specification", `name = "Bad_Name"`, `must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name: "invalid container name",
			config: podConfig(`  name = "web"
  container {
    name  = "App"
    image = "busybox"
  }`),
			re:     errRe("Invalid container specification", `name  = "App"`, `container[0].name:`, `"App" must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name: "duplicate container names",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
  }
  container {
    name  = "app"
    image = "busybox"
    args  = ["second"]
  }`),
			re:     errRe("Invalid container specification", `container[1].name:`, `duplicate container name "app" (also container[0])`),
			errors: 1,
		},
		{
			name: "invalid image reference",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "Not A/Valid:Image"
  }`),
			re:     errRe("Invalid container specification", `image = "Not A/Valid:Image"`, `container[0].image:`, `invalid image reference`),
			errors: 1,
		},
		{
			name: "cpu with unknown unit",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    cpu   = "12Q"
  }`),
			re:     errRe(`cpu   = "12Q"`, `container[0].cpu:`, `invalid CPU quantity "12Q"`),
			errors: 1,
		},
		{
			name: "cpu finer than a millicore",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    cpu   = "0.0001"
  }`),
			re:     errRe(`container[0].cpu:`, `invalid CPU quantity "0.0001": finer than one millicore`),
			errors: 1,
		},
		{
			name: "negative memory",
			config: podConfig(`  name = "web"
  container {
    name   = "app"
    image  = "busybox"
    memory = "-1Mi"
  }`),
			re:     errRe(`memory = "-1Mi"`, `container[0].memory:`, `invalid memory quantity "-1Mi"`),
			errors: 1,
		},
		{
			name: "memory below the minimum",
			config: podConfig(`  name = "web"
  container {
    name   = "app"
    image  = "busybox"
    memory = "1Mi"
  }`),
			re:     errRe(`container[0].memory:`, `below the minimum of 6Mi`),
			errors: 1,
		},
		{
			name: "memory request above the limit",
			config: podConfig(`  name = "web"
  container {
    name           = "app"
    image          = "busybox"
    memory         = "256Mi"
    memory_request = "512Mi"
  }`),
			re:     errRe(`memory_request = "512Mi"`, `container[0].memory_request:`, `512Mi is above the memory limit 256Mi`),
			errors: 1,
		},
		{
			name: "cpu request above the limit",
			config: podConfig(`  name = "web"
  container {
    name        = "app"
    image       = "busybox"
    cpu         = "500m"
    cpu_request = "2"
  }`),
			re:     errRe(`container[0].cpu_request:`, `2 is above the CPU limit 500m`),
			errors: 1,
		},
		{
			name: "invalid memory request",
			config: podConfig(`  name = "web"
  container {
    name           = "app"
    image          = "busybox"
    memory_request = "lots"
  }`),
			re:     errRe(`container[0].memory_request:`, `invalid memory quantity "lots"`),
			errors: 1,
		},
		{
			name: "second container's bad field",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
  }
  container {
    name        = "side"
    image       = "busybox"
    working_dir = "relative/dir"
  }`),
			re:     errRe(`working_dir = "relative/dir"`, `container[1].working_dir:`, `must be an absolute path`),
			errors: 1,
		},
		{
			name: "bad environment variable name",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    env   = { "1BAD" = "x", GOOD = "y" }
  }`),
			re:     errRe(`container[0].env["1BAD"]:`, `invalid environment variable name "1BAD"`),
			errors: 1,
		},
		{
			name: "bad restart policy",
			config: podConfig(`  name = "web"
  restart_policy = "Sometimes"`),
			re:     errRe(`restart_policy = "Sometimes"`, `value must be one of`, `"Always"`, `"OnFailure"`, `"Never"`, `got: "Sometimes"`),
			errors: 1,
		},
		{
			name: "grace period too long",
			config: podConfig(`  name = "web"
  termination_grace_period_seconds = 3601`),
			re:     errRe(`termination_grace_period_seconds = 3601`, `must be between 0 and 3600, got: 3601`),
			errors: 1,
		},
		{
			name: "negative grace period",
			config: podConfig(`  name = "web"
  termination_grace_period_seconds = -1`),
			re:     errRe(`must be between 0 and 3600, got: -1`),
			errors: 1,
		},
		{
			name: "bad label key",
			config: podConfig(`  name = "web"
  labels = { "bad key!" = "x", app = "web" }`),
			re:     errRe("Invalid pod specification", `labels["bad key!"]:`, `label key "bad key!"`),
			errors: 1,
		},
		{
			name: "bad label value",
			config: podConfig(`  name = "web"
  labels = { app = "-web-" }`),
			re:     errRe(`labels["app"]:`, `label value "-web-"`),
			errors: 1,
		},
		{
			name: "no container",
			config: fmt.Sprintf(`
resource "herd_pod" "p" {
  node = %q
  name = "web"
}
`, testNodeID),
			re:     errRe(`container: at least one container is required`),
			errors: 1,
		},
		{
			name: "bad node id",
			config: `
resource "herd_pod" "p" {
  node = "node-a"
  name = "web"
  container {
    name  = "app"
    image = "busybox"
  }
}
`,
			re:     errRe("Invalid node id", `node = "node-a"`, `want NAME@ADDRESS`),
			errors: 1,
		},
		{
			name: "node id with a bad address",
			config: `
resource "herd_pod" "p" {
  node = "node-a@10.0.0.5"
  name = "web"
  container {
    name  = "app"
    image = "busybox"
  }
}
`,
			re:     errRe("Invalid node id", `invalid address "10.0.0.5"`),
			errors: 1,
		},
		{
			name: "bad port name",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      container_port = 8080
    }
    port {
      name           = "Http_Port"
      container_port = 8081
    }
  }`),
			re:     errRe("Invalid container specification", `name           = "Http_Port"`, `container[0].port[1].name:`, `invalid port name "Http_Port"`),
			errors: 1,
		},
		{
			name: "port zero",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      container_port = 0
    }
  }`),
			re:     errRe(`container_port = 0`, `container[0].port[0].container_port:`, `must be between 1 and 65535, got 0`),
			errors: 1,
		},
		{
			name: "port too large",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      container_port = 70000
    }
  }`),
			re:     errRe(`container_port = 70000`, `container[0].port[0].container_port:`, `must be between 1 and 65535, got 70000`),
			errors: 1,
		},
		{
			name: "port beyond 32 bits",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      container_port = 4294967376
    }
  }`),
			re:     errRe(`container[0].port[0].container_port:`, `must be between 1 and 65535, got 4294967376`),
			errors: 1,
		},
		{
			name: "unknown protocol",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      container_port = 132
      protocol       = "SCTP"
    }
  }`),
			re:     errRe(`protocol       = "SCTP"`, `container[0].port[0].protocol:`, `invalid protocol "SCTP": must be TCP or UDP`),
			errors: 1,
		},
		{
			name: "same port in two containers",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      container_port = 8080
    }
  }
  container {
    name  = "side"
    image = "busybox"
    port {
      container_port = 53
      protocol       = "UDP"
    }
    port {
      container_port = 8080
      protocol       = "TCP"
    }
  }`),
			re:     errRe(`container[1].port[1].container_port:`, `duplicate port 8080/TCP in the pod`),
			errors: 1,
		},
		{
			name: "duplicate port name",
			config: podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      name           = "http"
      container_port = 8080
    }
    port {
      name           = "http"
      container_port = 8081
    }
  }`),
			re:     errRe(`container[0].port[1].name:`, `duplicate port name "http" in the pod`),
			errors: 1,
		},
		{
			name: "several problems at once",
			config: podConfig(`  name = "Web"
  container {
    name  = "app"
    image = "busybox"
    cpu   = "12Q"
  }`),
			re:     errRe(`name: "Web" must be`, `invalid CPU quantity "12Q"`),
			errors: 2,
		},
	}
	runPlanErrorCases(t, cases)
}

func TestNodePlanRefusesBadInput(t *testing.T) {
	cases := []struct {
		name   string
		config string
		re     *regexp.Regexp
	}{
		{
			name: "invalid node name",
			config: `
resource "herd_node" "n" {
  name    = "Node_A"
  address = "127.0.0.1:7443"
}
`,
			re: errRe("Invalid node name", `name    = "Node_A"`, `"Node_A" must be a lowercase RFC 1123 label`),
		},
		{
			name: "address without port",
			config: `
resource "herd_node" "n" {
  name    = "node-a"
  address = "10.0.0.5"
}
`,
			re: errRe("Invalid node address", `address = "10.0.0.5"`, `want "host:port"`),
		},
		{
			name: "relative unix socket",
			config: `
resource "herd_node" "n" {
  name    = "node-a"
  address = "unix://run/agentd.sock"
}
`,
			re: errRe("Invalid node address", `clean absolute path`),
		},
		{
			name: "bad label key",
			config: `
resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:7443"
  labels  = { "-zone" = "a" }
}
`,
			re: errRe("Invalid label", `label key "-zone"`),
		},
		{
			name: "data source with a bad node id",
			config: `
data "herd_pods" "all" {
  node = "node-a@"
}
`,
			re: errRe("Invalid node id", `address must not be empty`),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectPlanErrors(t, tc.config, tc.re, 1)
		})
	}
}

// A valid configuration plans without any node: the provider makes no
// network call at plan time, values not known yet are not validated, and
// known bad values next to unknown ones are still refused.
func TestPlanNeedsNoNode(t *testing.T) {
	const nodeAndPod = `
provider "herd" {
  dial_timeout = "2s"
}

resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
  labels  = { zone = "a" }
}

resource "herd_pod" "p" {
  node   = herd_node.n.id
  name   = "web-${herd_node.n.arch}"
  labels = { app = "web", arch = herd_node.n.arch }
  container {
    name    = "app"
    image   = "busybox:${herd_node.n.agent_version}"
    command = ["/bin/sh", "-c", herd_node.n.kernel_version]
    env     = { ARCH = herd_node.n.arch }
    cpu     = "%s"
    memory  = "64Mi"
  }
  container {
    name           = herd_node.n.os
    image          = "busybox"
    cpu_request    = "100m"
    memory_request = "32Mi"
  }
  timeouts {
    create = "1m"
  }
}
`
	expectUnknownsPlan(t, nodeAndPod, "250m", "12Q", errRe(`container[0].cpu:`, `invalid CPU quantity "12Q"`), nil)
}

// probeConfig renders a pod whose container "app" (with an "http" port)
// has the given probe blocks.
func probeConfig(probes string) string {
	return podConfig(`  name = "web"
  container {
    name  = "app"
    image = "busybox"
    port {
      name           = "http"
      container_port = 8080
    }
` + probes + `
  }`)
}

func TestPodPlanRefusesBadProbes(t *testing.T) {
	cases := []planErrorCase{
		{
			name: "no handler",
			config: probeConfig(`    readiness_probe {
      period_seconds = 5
    }`),
			re:     errRe("Invalid container specification", `container[0].readiness_probe:`, `exactly one of http_get, tcp_socket and exec must be set, got 0`),
			errors: 1,
		},
		{
			name: "two handlers",
			config: probeConfig(`    liveness_probe {
      tcp_socket {
        port = 8080
      }
      exec {
        command = ["true"]
      }
    }`),
			re:     errRe(`container[0].liveness_probe:`, `got 2`),
			errors: 1,
		},
		{
			name: "port out of range",
			config: probeConfig(`    readiness_probe {
      http_get {
        path = "/healthz"
        port = 70000
      }
    }`),
			re:     errRe(`port = 70000`, `container[0].readiness_probe.http_get.port:`, `must be between 1 and 65535`),
			errors: 1,
		},
		{
			name: "port and port_name",
			config: probeConfig(`    readiness_probe {
      tcp_socket {
        port      = 8080
        port_name = "http"
      }
    }`),
			re:     errRe(`container[0].readiness_probe.tcp_socket.port:`, `set either port or port_name, not both`),
			errors: 1,
		},
		{
			name: "unknown port name",
			config: probeConfig(`    startup_probe {
      tcp_socket {
        port_name = "admin"
      }
    }`),
			re:     errRe(`port_name = "admin"`, `container[0].startup_probe.tcp_socket.port_name:`, `"admin" is not the name of one of the container's ports`),
			errors: 1,
		},
		{
			name: "relative path",
			config: probeConfig(`    readiness_probe {
      http_get {
        path      = "healthz"
        port_name = "http"
      }
    }`),
			re:     errRe(`container[0].readiness_probe.http_get.path:`, `must start with "/"`),
			errors: 1,
		},
		{
			name: "empty exec command",
			config: probeConfig(`    readiness_probe {
      exec {
        command = []
      }
    }`),
			re:     errRe(`container[0].readiness_probe.exec.command:`, `must not be empty`),
			errors: 1,
		},
		{
			name: "zero period",
			config: probeConfig(`    readiness_probe {
      exec {
        command = ["true"]
      }
      period_seconds = 0
    }`),
			re:     errRe(`period_seconds = 0`, `container[0].readiness_probe.period_seconds:`, `must be at least 1, got 0`),
			errors: 1,
		},
		{
			name: "liveness success threshold",
			config: probeConfig(`    liveness_probe {
      exec {
        command = ["true"]
      }
      success_threshold = 2
    }`),
			re:     errRe(`container[0].liveness_probe.success_threshold:`, `must be 1 for a liveness probe, got 2`),
			errors: 1,
		},
		{
			name: "problems in two probes",
			config: probeConfig(`    readiness_probe {
      exec {
        command = ["true"]
      }
      initial_delay_seconds = -1
    }
    startup_probe {
      http_get {
        port = 0
      }
      failure_threshold = 0
    }`),
			re: errRe(`container[0].readiness_probe.initial_delay_seconds:`, `must be at least 0`,
				`container[0].startup_probe`),
			errors: 3,
		},
	}
	runPlanErrorCases(t, cases)
}

// A valid probe plans without a node, and one whose port is not known yet
// is not judged.
func TestPodPlanAcceptsProbes(t *testing.T) {
	expectPlanAccepted(t, `
resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
}
`+strings.Replace(probeConfig(`    readiness_probe {
      http_get {
        path      = "/healthz"
        port_name = "http"
      }
      period_seconds    = 2
      success_threshold = 2
    }
    liveness_probe {
      tcp_socket {
        port = length(herd_node.n.kernel_version)
      }
    }
    startup_probe {
      exec {
        command = ["test", "-f", herd_node.n.os]
      }
      failure_threshold = 30
    }`), fmt.Sprintf("%q", testNodeID), "herd_node.n.id", 1))
}
