package resources_test

import (
	"fmt"
	"testing"
)

// volumeConfig renders herd_volume.v on the unreachable test node.
func volumeConfig(body string) string {
	return fmt.Sprintf(`
resource "herd_volume" "v" {
  node = %q
%s
}
`, testNodeID, body)
}

// Every invalid herd_volume is refused at plan time, without a node, at
// the attribute that holds the problem.
func TestVolumePlanRefusesBadInput(t *testing.T) {
	cases := []planErrorCase{
		{
			name: "name not a label",
			config: volumeConfig(`  name = "Data"
  size = "1Gi"`),
			re:     errRe("Invalid volume specification", `name: "Data" must be`),
			errors: 1,
		},
		{
			name: "namespace not a label",
			config: volumeConfig(`  name      = "data"
  namespace = "my_ns"
  size      = "1Gi"`),
			re:     errRe("Invalid volume specification", `namespace: "my_ns" must be`),
			errors: 1,
		},
		{
			name: "empty name",
			config: volumeConfig(`  name = ""
  size = "1Gi"`),
			re:     errRe("Invalid volume specification", `name: must not be empty`),
			errors: 1,
		},
		{
			name: "size not a quantity",
			config: volumeConfig(`  name = "data"
  size = "ten gigs"`),
			re:     errRe("Invalid volume specification", `size: invalid size "ten gigs"`),
			errors: 1,
		},
		{
			name: "size below 1Mi",
			config: volumeConfig(`  name = "data"
  size = "512Ki"`),
			re:     errRe("Invalid volume specification", `size: size "512Ki" is below the minimum of 1Mi`),
			errors: 1,
		},
		{
			name: "size zero",
			config: volumeConfig(`  name = "data"
  size = "0"`),
			re:     errRe("Invalid volume specification", `size:`, `must be greater than zero`),
			errors: 1,
		},
		{
			name: "size above 64Ti",
			config: volumeConfig(`  name = "data"
  size = "65Ti"`),
			re:     errRe("Invalid volume specification", `size: size "65Ti" is above the maximum of 64Ti`),
			errors: 1,
		},
		{
			name: "every error at once",
			config: volumeConfig(`  name      = "-data"
  namespace = "NS"
  size      = "1Ki"`),
			re:     errRe(`name: "-data" must be`, `namespace: "NS" must be`, `size: size "1Ki" is below`),
			errors: 3,
		},
		{
			name: "node not a herd_node id",
			config: `
resource "herd_volume" "v" {
  node = "node-a"
  name = "data"
  size = "1Gi"
}
`,
			re:     errRe("Invalid node id"),
			errors: 1,
		},
		{
			name: "neither node nor node_candidates",
			config: `
resource "herd_volume" "v" {
  name = "data"
  size = "1Gi"
}
`,
			re:     errRe("set node", "or node_candidates for herd to choose one"),
			errors: 1,
		},
		{
			name: "node and node_candidates",
			config: volumeConfig(`  name            = "data"
  size            = "1Gi"
  node_candidates = [` + fmt.Sprintf("%q", testNodeID) + `]`),
			re:     errRe("node_candidates conflicts with node"),
			errors: 1,
		},
		{
			name: "a candidate not a herd_node id",
			config: `
resource "herd_volume" "v" {
  name            = "data"
  size            = "1Gi"
  node_candidates = ["node-a"]
}
`,
			re:     errRe("Invalid node id"),
			errors: 1,
		},
		{
			name: "no candidates",
			config: `
resource "herd_volume" "v" {
  name            = "data"
  size            = "1Gi"
  node_candidates = []
}
`,
			re:     errRe("node_candidates", "at least 1"),
			errors: 1,
		},
	}
	runPlanErrorCases(t, cases)
}

// A valid volume plans without a node, its node and name not known yet;
// a known bad size next to them is still refused.
func TestVolumePlanNeedsNoNode(t *testing.T) {
	const config = unreachableNodeConfig + `

resource "herd_volume" "v" {
  node                = herd_node.n.id
  name                = "data-${herd_node.n.arch}"
  size                = "%s"
  deletion_protection = false
  timeouts {
    create = "1m"
  }
}
`
	expectUnknownsPlan(t, config, "1024Mi", "1Q", errRe(`size: invalid size "1Q"`), nil)
}
