package resources_test

import (
	"fmt"
	"strings"
	"testing"
)

// serviceConfig renders a herd_service on the unreachable test node, with
// a valid selector and port unless the body brings its own.
func serviceConfig(body string) string {
	if !strings.Contains(body, "selector") {
		body += `
  selector = { app = "web" }`
	}
	if !strings.Contains(body, "port {") && !strings.Contains(body, `dynamic "port"`) {
		body += `
  port {
    port = 80
  }`
	}
	return fmt.Sprintf(`
resource "herd_service" "s" {
  node = %q
%s
}
`, testNodeID, body)
}

// Every invalid input is refused at plan time, without a node, at the
// attribute that holds it, with agentd's message (one error each).
func TestPlanServiceRefusesBadInput(t *testing.T) {
	twoPorts := func(second string) string {
		return `  name = "web"
  port {
    name = "http"
    port = 80
  }
  port {
` + second + `
  }`
	}
	cases := []planErrorCase{
		{
			name: "invalid namespace",
			config: serviceConfig(`  name = "web"
  namespace = "Shop"`),
			re:     errRe("Invalid service specification", `namespace = "Shop"`, `namespace: "Shop" must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name:   "invalid name",
			config: serviceConfig(`  name = "web_1"`),
			re:     errRe("Invalid service specification", `name = "web_1"`, `name: "web_1" must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name: "empty selector",
			config: serviceConfig(`  name = "web"
  selector = {}`),
			re:     errRe(`selector = {}`, `selector: at least one selector label is required: herd has no manual endpoints`),
			errors: 1,
		},
		{
			name:   "no selector",
			config: strings.Replace(serviceConfig(`  name = "web"`), `selector = { app = "web" }`, "", 1),
			re:     errRe(`The argument "selector" is required`),
			errors: 1,
		},
		{
			name: "bad selector key",
			config: serviceConfig(`  name = "web"
  selector = { "bad key!" = "x", app = "web" }`),
			re:     errRe(`selector["bad key!"]:`, `label key "bad key!"`),
			errors: 1,
		},
		{
			name: "bad selector value",
			config: serviceConfig(`  name = "web"
  selector = { app = "-web-" }`),
			re:     errRe(`selector["app"]:`, `label value "-web-"`),
			errors: 1,
		},
		{
			name: "unknown type",
			config: serviceConfig(`  name = "web"
  type = "LoadBalancer"`),
			re:     errRe(`type = "LoadBalancer"`, `type: invalid service type "LoadBalancer": must be one of ClusterIP, NodePort, Headless`),
			errors: 1,
		},
		{
			name: "unknown session affinity",
			config: serviceConfig(`  name = "web"
  session_affinity = "Sticky"`),
			re:     errRe(`session_affinity = "Sticky"`, `session_affinity: invalid session affinity "Sticky": must be one of None, ClientIP`),
			errors: 1,
		},
		{
			name: "headless with client IP affinity",
			config: serviceConfig(`  name = "web"
  type = "Headless"
  session_affinity = "ClientIP"`),
			re:     errRe(`session_affinity = "ClientIP"`, `session_affinity: Headless services have no cluster IP`),
			errors: 1,
		},
		{
			name: "no port",
			config: fmt.Sprintf(`
resource "herd_service" "s" {
  node     = %q
  name     = "web"
  selector = { app = "web" }
}
`, testNodeID),
			re:     errRe(`port: at least one port is required`),
			errors: 1,
		},
		{
			name: "too many ports",
			config: serviceConfig(`  name = "web"
  dynamic "port" {
    for_each = range(101)
    content {
      name = "p${port.value}"
      port = 1000 + port.value
    }
  }`),
			re:     errRe(`port: at most 100 ports, got 101`),
			errors: 1,
		},
		{
			name: "port zero",
			config: serviceConfig(`  name = "web"
  port {
    port = 0
  }`),
			re:     errRe(`port = 0`, `port[0].port: must be between 1 and 65535, got 0`),
			errors: 1,
		},
		{
			name: "port too large",
			config: serviceConfig(`  name = "web"
  port {
    port = 65536
  }`),
			re:     errRe(`port = 65536`, `port[0].port: must be between 1 and 65535, got 65536`),
			errors: 1,
		},
		{
			name: "port beyond 32 bits",
			config: serviceConfig(`  name = "web"
  port {
    port = 4294967376
  }`),
			re:     errRe(`port[0].port: must be between 1 and 65535, got 4294967376`),
			errors: 1,
		},
		{
			name: "unknown protocol",
			config: serviceConfig(twoPorts(`    name     = "sctp"
    port     = 132
    protocol = "SCTP"`)),
			re:     errRe(`protocol = "SCTP"`, `port[1].protocol: invalid protocol "SCTP": must be TCP or UDP`),
			errors: 1,
		},
		{
			name: "duplicate port and protocol",
			config: serviceConfig(twoPorts(`    name     = "http2"
    port     = 80
    protocol = "TCP"`)),
			re:     errRe(`port[1].port: duplicate port 80/TCP (also port[0])`),
			errors: 1,
		},
		{
			name: "bad port name",
			config: serviceConfig(twoPorts(`    name = "Metrics_Port"
    port = 9090`)),
			re:     errRe(`name = "Metrics_Port"`, `port[1].name: invalid port name "Metrics_Port"`),
			errors: 1,
		},
		{
			name: "duplicate port name",
			config: serviceConfig(twoPorts(`    name = "http"
    port = 8080`)),
			re:     errRe(`port[1].name: duplicate port name "http" (also port[0])`),
			errors: 1,
		},
		{
			name:   "unnamed port among several",
			config: serviceConfig(twoPorts(`    port = 8080`)),
			re:     errRe(`port[1].name: a name is required when the service has more than one port`),
			errors: 1,
		},
		{
			name: "target port too large",
			config: serviceConfig(`  name = "web"
  port {
    port        = 80
    target_port = 70000
  }`),
			re:     errRe(`target_port = 70000`, `port[0].target_port: must be between 1 and 65535`),
			errors: 1,
		},
		{
			name: "target port zero",
			config: serviceConfig(`  name = "web"
  port {
    port        = 80
    target_port = 0
  }`),
			re:     errRe(`target_port = 0`, `port[0].target_port: 0 is not a port: omit target_port`),
			errors: 1,
		},
		{
			name: "bad target port name",
			config: serviceConfig(`  name = "web"
  port {
    port             = 80
    target_port_name = "HTTP"
  }`),
			re:     errRe(`target_port_name = "HTTP"`, `port[0].target_port_name: invalid port name "HTTP"`),
			errors: 1,
		},
		{
			name: "both target port and name",
			config: serviceConfig(`  name = "web"
  port {
    port             = 80
    target_port      = 8080
    target_port_name = "http"
  }`),
			re:     errRe(`port[0].target_port_name: set either target_port (a number) or target_port_name`, `not both`),
			errors: 1,
		},
		{
			name: "node port for a ClusterIP service",
			config: serviceConfig(`  name = "web"
  port {
    port      = 80
    node_port = 30080
  }`),
			re:     errRe(`node_port = 30080`, `port[0].node_port: node ports are only allowed for type NodePort, not ClusterIP`),
			errors: 1,
		},
		{
			name: "node port for a Headless service",
			config: serviceConfig(`  name = "web"
  type = "Headless"
  port {
    port      = 80
    node_port = 30080
  }`),
			re:     errRe(`port[0].node_port: node ports are only allowed for type NodePort, not Headless`),
			errors: 1,
		},
		{
			name: "node port out of range",
			config: serviceConfig(`  name = "web"
  type = "NodePort"
  port {
    port      = 80
    node_port = 8080
  }`),
			re:     errRe(`node_port = 8080`, `port[0].node_port: must be between 30000 and 32767`),
			errors: 1,
		},
		{
			name: "node port zero",
			config: serviceConfig(`  name = "web"
  type = "NodePort"
  port {
    port      = 80
    node_port = 0
  }`),
			re:     errRe(`node_port = 0`, `port[0].node_port: 0 is not a node port: omit node_port to have agentd allocate one`),
			errors: 1,
		},
		{
			name: "duplicate node port",
			config: serviceConfig(`  name = "web"
  type = "NodePort"
  port {
    name      = "http"
    port      = 80
    node_port = 30080
  }
  port {
    name      = "alt"
    port      = 8080
    node_port = 30080
  }`),
			re:     errRe(`port[1].node_port: duplicate node port 30080/TCP (also port[0])`),
			errors: 1,
		},
		{
			name: "bad node id",
			config: `
resource "herd_service" "s" {
  node     = "node-a"
  name     = "web"
  selector = { app = "web" }
  port {
    port = 80
  }
}
`,
			re:     errRe("Invalid node id", `node     = "node-a"`, `want NAME@ADDRESS`),
			errors: 1,
		},
		{
			name: "several problems at once",
			config: serviceConfig(`  name = "Web"
  selector = {}
  port {
    port = 0
  }`),
			re:     errRe(`name: "Web" must be`, `selector: at least one selector label`, `port[0].port: must be between`),
			errors: 3,
		},
	}
	runPlanErrorCases(t, cases)
}

// A valid service plans without any node, values not known yet are not
// validated (an unknown type allows node ports), and a known bad value
// next to unknown ones is still refused.
func TestPlanServiceNeedsNoNode(t *testing.T) {
	const config = unreachableNodeConfig + `

resource "herd_service" "s" {
  node     = herd_node.n.id
  name     = "web-${herd_node.n.arch}"
  type     = herd_node.n.ready ? "NodePort" : "ClusterIP"
  selector = { app = "web", arch = herd_node.n.arch }
  port {
    name      = herd_node.n.os
    port      = 80
    node_port = 30080
  }
  port {
    name             = "dns"
    port             = %s
    protocol         = "UDP"
    target_port_name = herd_node.n.os
  }
  timeouts {
    create = "1m"
  }
}
`
	expectUnknownsPlan(t, config, "53", "0", errRe(`port[1].port: must be between 1 and 65535, got 0`), nil)
}
