package resources_test

import (
	"fmt"
	"testing"
)

// secretPodConfig is a herd_pod with one container whose body (after the
// image) is extra, and pod-level attributes podExtra.
func secretPodConfig(podExtra, extra string) string {
	return podConfig(`  name = "web"
` + podExtra + `
  container {
    name  = "app"
    image = "busybox:1.36"
` + extra + `
  }`)
}

// Bad secret mounts, secret env and pull secrets are refused at plan time,
// at the attribute that holds them, with agentd's message.
func TestPodPlanRefusesBadSecrets(t *testing.T) {
	cases := []planErrorCase{
		{
			name:   "secret of another namespace",
			config: secretPodConfig("", `    secret_mount { secret = "prod/db" }`),
			re:     errRe(`container[0].secret_mount[0].secret: secret "prod/db" is in namespace "prod": a pod in`, `namespace "default" may use only secrets of its own namespace`),
			errors: 1,
		},
		{
			name:   "invalid namespace",
			config: secretPodConfig(`  namespace = "Web"`, ``),
			re:     errRe(`Invalid pod specification`, `namespace: "Web" must be a lowercase RFC 1123 label`),
			errors: 1,
		},
		{
			name: "pull secret of another namespace",
			config: secretPodConfig(`  namespace         = "web"
  image_pull_secret = "infra/registry"`, `    secret_mount { secret = "db" }`),
			re:     errRe(`image_pull_secret: secret "infra/registry" is in namespace "infra"`),
			errors: 1,
		},
		{
			name:   "bad secret reference",
			config: secretPodConfig("", `    secret_mount { secret = "DB_pass" }`),
			re:     errRe("Invalid container specification", `container[0].secret_mount[0].secret: invalid secret reference "DB_pass"`),
			errors: 1,
		},
		{
			name:   "reference with two slashes",
			config: secretPodConfig("", `    secret_mount { secret = "prod/db/x" }`),
			re:     errRe(`container[0].secret_mount[0].secret: invalid secret reference "prod/db/x": name`),
			errors: 1,
		},
		{
			name: "relative path",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      path   = "run/db"
    }`),
			re:     errRe(`path   = "run/db"`, `container[0].secret_mount[0].path: must be an absolute path, got "run/db"`),
			errors: 1,
		},
		{
			name: "path that climbs",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      path   = "/run/secrets/../../etc"
    }`),
			re:     errRe(`secret_mount[0].path: must be a clean path`, `use "/etc"`),
			errors: 1,
		},
		{
			name: "path in /proc",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      path   = "/proc/self"
    }`),
			re:     errRe(`secret_mount[0].path: must not be in /proc, got "/proc/self"`),
			errors: 1,
		},
		{
			name: "path hiding resolv.conf",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      path   = "/etc"
    }`),
			re:     errRe(`secret_mount[0].path: must not be /etc/resolv.conf or a directory above it`),
			errors: 1,
		},
		{
			name: "root path",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      path   = "/"
    }`),
			re:     errRe(`secret_mount[0].path: must not be "/"`),
			errors: 1,
		},
		{
			name: "same default path twice",
			config: secretPodConfig("", `    secret_mount { secret = "db" }
    secret_mount { secret = "default/db" }`),
			re:     errRe(`container[0].secret_mount[1].path: /run/secrets/db is also the path of secret_mount[0]`),
			errors: 1,
		},
		{
			name: "nested paths",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      path   = "/run/app"
    }
    secret_mount {
      secret = "tls"
      path   = "/run/app/tls"
    }`),
			re:     errRe(`secret_mount[1].path: /run/app/tls is inside /run/app, the path of secret_mount[0]`),
			errors: 1,
		},
		{
			name: "traversal key",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      keys   = ["password", ".."]
    }`),
			re:     errRe(`container[0].secret_mount[0].keys[1]: key must not be "." or ".."`),
			errors: 1,
		},
		{
			name: "reserved key",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      keys   = ["..data"]
    }`),
			re:     errRe(`secret_mount[0].keys[0]: a mounted key must not start with ".."`),
			errors: 1,
		},
		{
			name: "key with a slash",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      keys   = ["../../etc/shadow"]
    }`),
			re:     errRe(`secret_mount[0].keys[0]: key must consist of letters, digits`),
			errors: 1,
		},
		{
			name: "duplicate key",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      keys   = ["a", "a"]
    }`),
			re:     errRe(`secret_mount[0].keys[1]: duplicate key "a" (also keys[0])`),
			errors: 1,
		},
		{
			name: "mode not octal",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      mode   = "0999"
    }`),
			re:     errRe(`mode   = "0999"`, `secret_mount[0].mode: must be an octal file mode such as "0440", got "0999"`),
			errors: 1,
		},
		{
			name: "mode with the sticky bit",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      mode   = "1777"
    }`),
			re:     errRe(`secret_mount[0].mode: must be at most 0777 (no setuid, setgid or sticky bit), got 01777`),
			errors: 1,
		},
		{
			name: "negative uid",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      uid    = -1
    }`),
			re:     errRe(`secret_mount[0].uid: must be a user id from 0 to 4294967295, got -1`),
			errors: 1,
		},
		{
			name: "gid beyond 32 bits",
			config: secretPodConfig("", `    secret_mount {
      secret = "db"
      gid    = 4294967296
    }`),
			re:     errRe(`secret_mount[0].gid: must be a group id from 0 to 4294967295, got 4294967296`),
			errors: 1,
		},
		{
			name: "bad env name",
			config: secretPodConfig("", `    secret_env {
      name   = "1PASSWORD"
      secret = "db"
      key    = "password"
    }`),
			re:     errRe(`container[0].secret_env[0].name: invalid environment variable name "1PASSWORD"`),
			errors: 1,
		},
		{
			name: "env name also in env",
			config: secretPodConfig("", `    env = { PASSWORD = "x" }
    secret_env {
      name   = "PASSWORD"
      secret = "db"
      key    = "password"
    }`),
			re:     errRe(`secret_env[0].name: variable "PASSWORD" is also set in env`),
			errors: 1,
		},
		{
			name: "duplicate env name",
			config: secretPodConfig("", `    secret_env {
      name   = "PASSWORD"
      secret = "db"
      key    = "password"
    }
    secret_env {
      name   = "PASSWORD"
      secret = "db2"
      key    = "password"
    }`),
			re:     errRe(`secret_env[1].name: duplicate variable "PASSWORD" (also secret_env[0])`),
			errors: 1,
		},
		{
			name: "env key with a slash",
			config: secretPodConfig("", `    secret_env {
      name   = "PASSWORD"
      secret = "db"
      key    = "../password"
    }`),
			re:     errRe(`secret_env[0].key: key must consist of letters, digits`),
			errors: 1,
		},
		{
			name: "env bad secret",
			config: secretPodConfig("", `    secret_env {
      name   = "PASSWORD"
      secret = ""
      key    = "password"
    }`),
			re:     errRe(`secret_env[0].secret: secret reference must not be empty`),
			errors: 1,
		},
		{
			name:   "bad image pull secret",
			config: secretPodConfig(`  image_pull_secret = "Registry"`, ""),
			re:     errRe("Invalid pod specification", `image_pull_secret = "Registry"`, `image_pull_secret: invalid secret reference "Registry"`),
			errors: 1,
		},
		{
			name: "several at once",
			config: secretPodConfig(`  image_pull_secret = "a/b/c"`, `    secret_mount {
      secret = "db"
      path   = "/dev/db"
      mode   = "x"
    }
    secret_env {
      name   = "P"
      secret = "db"
      key    = "."
    }`),
			re:     errRe(`image_pull_secret: invalid`, `secret_mount[0].path: must not be in /dev`, `secret_mount[0].mode: must be an octal`, `secret_env[0].key: key must not be`),
			errors: 4,
		},
	}
	runPlanErrorCases(t, cases)
}

// Valid secret mounts, env and pull secrets plan without a node, and
// values not known yet are not validated.
func TestPodPlanAcceptsSecrets(t *testing.T) {
	expectPlanAccepted(t, fmt.Sprintf(`
resource "herd_node" "n" {
  name    = "node-a"
  address = "127.0.0.1:1"
}

resource "herd_pod" "p" {
  node                     = %q
  name                     = "web"
  namespace                = "prod"
  image_pull_secret        = "registry"
  restart_on_secret_change = true
  container {
    name  = "app"
    image = "busybox:1.36"
    secret_mount {
      secret = "db"
    }
    secret_mount {
      secret = "prod/tls"
      path   = "/etc/app/tls"
      uid    = 1000
      gid    = 1000
      keys   = ["tls.crt", "tls.key"]
      mode   = "0440"
    }
    secret_mount {
      secret = herd_node.n.os
      path   = "/run/${herd_node.n.arch}"
      keys   = [herd_node.n.kernel_version]
    }
    secret_env {
      name   = "DB_PASSWORD"
      secret = "db"
      key    = "password"
    }
    secret_env {
      name   = herd_node.n.os
      secret = herd_node.n.arch
      key    = herd_node.n.kernel_version
    }
  }
}
`, testNodeID))
}
