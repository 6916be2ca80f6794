package resources_test

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/tfversion"
)

// secretConfig renders herd_secret.s on the unreachable test node.
func secretConfig(body string) string {
	return fmt.Sprintf(`
resource "herd_secret" "s" {
  node = %q
%s
}
`, testNodeID, body)
}

// writeOnlyCLI skips a test on CLIs without write-only attributes (before
// OpenTofu and Terraform 1.11); both CLIs of the test matrix have them.
var writeOnlyCLI = []tfversion.TerraformVersionCheck{tfversion.SkipBelow(tfversion.Version1_11_0)}

// A value longer than 1 MiB, written by the CLI itself.
const bigValue = `format("%01048577d", 0)`

// Every invalid herd_secret is refused at plan time, without a node, at
// the attribute that holds the problem (internal/spec's messages never hold
// a value: they name the key and at most a size).
func TestSecretPlanRefusesBadInput(t *testing.T) {
	const secretValue = "hunter2-do-not-echo"
	cases := []planErrorCase{
		{
			name: "traversal key .. in data_wo",
			config: secretConfig(`  name = "db"
  data_wo = { ".." = "` + secretValue + `" }
  data_wo_version = 1`),
			re:     errRe("Invalid secret specification", `data_wo[".."]: key must not be "." or ".."`),
			errors: 1,
			checks: writeOnlyCLI,
		},
		{
			name: "traversal key . in data",
			config: secretConfig(`  name = "db"
  data = { "." = "` + secretValue + `", ok = "x" }`),
			re:     errRe("Invalid secret specification", `data["."]: key must not be "." or ".."`),
			errors: 1,
		},
		{
			name: "key with a slash",
			config: secretConfig(`  name = "db"
  data_wo = { "../etc/passwd" = "` + secretValue + `" }
  data_wo_version = 1`),
			re:     errRe(`data_wo["../etc/passwd"]: key must consist of letters, digits`, `no '/': a key becomes a file name`),
			errors: 1,
			checks: writeOnlyCLI,
		},
		{
			name: "empty key",
			config: secretConfig(`  name = "db"
  data = { "" = "` + secretValue + `" }`),
			re:     errRe(`data[""]: key must not be empty`),
			errors: 1,
		},
		{
			name: "key too long",
			config: secretConfig(`  name = "db"
  data = { "${format("%0254d", 0)}" = "x" }`),
			re:     errRe(`key must be at most 253 characters, got 254`),
			errors: 1,
		},
		{
			name: "more than 1 MiB in data_wo",
			config: secretConfig(`  name = "db"
  data_wo = { big = ` + bigValue + ` }
  data_wo_version = 1`),
			re:     errRe("Invalid secret specification", `data_wo: keys and values total 1048580 bytes, more than the limit of 1048576 (1 MiB)`),
			errors: 1,
			checks: writeOnlyCLI,
		},
		{
			name: "more than 1 MiB in data",
			config: secretConfig(`  name = "db"
  data = { big = ` + bigValue + ` }`),
			re:     errRe(`data: keys and values total 1048580 bytes, more than the limit`),
			errors: 1,
		},
		{
			name: "empty data",
			config: secretConfig(`  name = "db"
  data = {}`),
			re:     errRe(`data: at least one key is required`),
			errors: 1,
		},
		{
			name: "tls without tls.key",
			config: secretConfig(`  name = "cert"
  type = "tls"
  data_wo = { "tls.crt" = "` + secretValue + `" }
  data_wo_version = 1`),
			re:     errRe(`data_wo: type "tls" requires key "tls.key"`),
			errors: 1,
			checks: writeOnlyCLI,
		},
		{
			name: "basic-auth with an empty password",
			config: secretConfig(`  name = "web-auth"
  type = "basic-auth"
  data = { username = "admin", password = "" }`),
			re:     errRe(`data["password"]: must not be empty for type "basic-auth"`),
			errors: 1,
		},
		{
			name: "registry without its keys",
			config: secretConfig(`  name = "pull"
  type = "registry"
  data = { username = "bot" }`),
			re:     errRe(`type "registry" requires key "registry"`, `type "registry" requires key "password"`),
			errors: 2,
		},
		{
			name: "unknown type",
			config: secretConfig(`  name = "db"
  type = "docker-config"
  data = { a = "b" }`),
			re:     errRe(`type: invalid secret type "docker-config": must be one of opaque, tls, basic-auth, registry`),
			errors: 1,
		},
		{
			name: "data and data_wo both set",
			config: secretConfig(`  name = "db"
  data    = { a = "b" }
  data_wo = { a = "b" }
  data_wo_version = 1`),
			re:     errRe("Conflicting secret data", `data_wo and data are both set`),
			errors: 1,
			checks: writeOnlyCLI,
		},
		{
			name:   "neither data nor data_wo",
			config: secretConfig(`  name = "db"`),
			re:     errRe("Missing secret data", `set data_wo together with data_wo_version`, `or data`),
			errors: 1,
		},
		{
			name: "data_wo without data_wo_version",
			config: secretConfig(`  name = "db"
  data_wo = { a = "b" }`),
			re:     errRe("Missing data_wo_version", `data_wo requires data_wo_version`),
			errors: 1,
			checks: writeOnlyCLI,
		},
		{
			name: "data_wo_version without data_wo",
			config: secretConfig(`  name = "db"
  data = { a = "b" }
  data_wo_version = 2`),
			re:     errRe("data_wo_version without data_wo", `data_wo_version = 2`),
			errors: 1,
		},
		{
			name: "invalid name",
			config: secretConfig(`  name = "DB_password"
  data = { a = "b" }`),
			re:     errRe(`name = "DB_password"`, `name: "DB_password" must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name: "invalid namespace",
			config: secretConfig(`  name = "db"
  namespace = "Prod"
  data = { a = "b" }`),
			re:     errRe(`namespace: "Prod" must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name: "invalid node selector",
			config: secretConfig(`  name = "db"
  node_selector = { "bad key!" = "x" }
  data = { a = "b" }`),
			re:     errRe(`node_selector["bad key!"]:`, `label key "bad key!"`),
			errors: 1,
		},
		{
			name: "bad node id",
			config: `
resource "herd_secret" "s" {
  node = "node-a"
  name = "db"
  data = { a = "b" }
}
`,
			re:     errRe("Invalid node id", `want NAME@ADDRESS`),
			errors: 1,
		},
		{
			name: "several problems at once",
			config: secretConfig(`  name = "Db"
  type = "tls"
  data_wo = { "tls.crt" = "x", ".." = "y" }
  data_wo_version = 1`),
			re:     errRe(`name: "Db" must be`, `data_wo: type "tls" requires key "tls.key"`, `data_wo[".."]: key must not be`),
			errors: 3,
			checks: writeOnlyCLI,
		},
	}
	runPlanErrorCases(t, cases)
}

// Valid secrets plan without a node, in both styles; values not known at
// plan time are not validated, and a known bad key next to them still is.
func TestSecretPlanNeedsNoNode(t *testing.T) {
	const config = unreachableNodeConfig + `

resource "herd_secret" "wo" {
  node            = herd_node.n.id
  name            = "db"
  data_wo         = { password = "s3cret", %s = herd_node.n.arch }
  data_wo_version = 1
  node_selector   = { disk = "ssd" }
  immutable       = true
}

resource "herd_secret" "tls" {
  node = herd_node.n.id
  name = "web-tls"
  type = "tls"
  data = { "tls.crt" = herd_node.n.os, "tls.key" = "k" }
}
`
	expectUnknownsPlan(t, config, "arch", `"a/b"`, errRe(`data_wo["a/b"]: key must consist of letters`), writeOnlyCLI)
}

// On a CLI without write-only attributes (Terraform before 1.11), data_wo is
// refused with a clear error. Neither CLI of the test matrix is that old, so
// it runs only with TF_ACC_TERRAFORM_PATH pointing at an older Terraform.
func TestSecretWriteOnlyNeedsNewCLI(t *testing.T) {
	expectPlanErrorsOn(t, secretConfig(`  name = "db"
  data_wo = { a = "b" }
  data_wo_version = 1`),
		errRe("WriteOnly Attribute Not Allowed", `Write-only attributes are only supported in Terraform 1.11 and later`), 1,
		[]tfversion.TerraformVersionCheck{tfversion.SkipAbove(tfversion.Version1_10_0)})
}
