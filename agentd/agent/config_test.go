package agent_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
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
	clustered := func(c *agent.Config) {
		c.ClusterCIDR, c.NodeCIDRBits, c.ServiceCIDR = "10.244.0.0/16", 24, "10.96.0.0/16"
		c.GossipListen, c.GossipKeyFile = "127.0.0.1:7946", "gossip.key"
	}
	withCluster := valid()
	clustered(&withCluster)
	if err := withCluster.Validate(); err != nil {
		t.Errorf("clustered config refused: %v", err)
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
		{"negative max pods", func(c *agent.Config) { c.MaxPods = -1 }, "--max-pods"},
		{"socket path too long", func(c *agent.Config) { c.Socket = "/" + strings.Repeat("s", 120) }, "--socket"},
		{"cluster without a TCP listener", func(c *agent.Config) { clustered(c); c.Listen = "" }, "--cluster-cidr needs --listen"},
		{"cluster without certificates", func(c *agent.Config) { clustered(c); c.Listen, c.CACert, c.Cert, c.Key = "", "", "", "" }, "--cluster-cidr needs --listen, --ca-cert, --cert and --key"},
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
	dir := agentDir(t)
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

// writeConfig writes a --config file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func noEnv(string) string { return "" }

// A --config file sets any flag by name; flags on the command line win, a
// repeated one replacing the file's whole list; the file wins over the
// defaults, the environment's included.
func TestParseCommandLineConfigFile(t *testing.T) {
	t.Parallel()
	const file = `
name: from-file
state-dir: /var/lib/herd-file
pod-cidr: 10.1.0.0/24
node-cidr-bits: 26
max-pods: 40
join: [10.0.0.5:7946, 10.0.0.6:7946]
insecure-registry: 127.0.0.1:5000
nested-host-cidrs: ["10.0.0.0/8,172.16.0.0/12", 192.168.0.0/16]
service-resync: 2m
container-log-max-size: 1Mi
log-level: debug
ca-cert: /etc/herd/ca.pem
`
	env := func(k string) string {
		if k == "HERD_CA_CERT" {
			return "/from/env/ca.pem"
		}
		return ""
	}
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, c agent.Command)
	}{
		{"file only", nil, func(t *testing.T, c agent.Command) {
			want := map[string]any{
				"Name": "from-file", "StateDir": "/var/lib/herd-file", "PodCIDR": "10.1.0.0/24", "NodeCIDRBits": 26, "MaxPods": 40,
				"Join":               []string{"10.0.0.5:7946", "10.0.0.6:7946"},
				"InsecureRegistries": []string{"127.0.0.1:5000"},
				"NestedHostCIDRs":    []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"},
				"ServiceResync":      2 * time.Minute, "LogMaxBytes": int64(1 << 20),
				"CACert":    "/etc/herd/ca.pem", // the file wins over HERD_CA_CERT
				"Namespace": "herd",             // untouched default
			}
			checkFields(t, c.Config, want)
			if c.LogLevel.String() != "DEBUG" {
				t.Errorf("LogLevel = %s, want DEBUG", c.LogLevel)
			}
		}},
		{"flags win", []string{"--name", "from-flag", "--node-cidr-bits=25", "--max-pods", "0", "--join", "10.0.0.9:7946", "--log-level", "warn"}, func(t *testing.T, c agent.Command) {
			checkFields(t, c.Config, map[string]any{
				"Name": "from-flag", "NodeCIDRBits": 25, "MaxPods": 0,
				"Join":     []string{"10.0.0.9:7946"}, // replaces the file's list
				"StateDir": "/var/lib/herd-file",      // still from the file
			})
			if c.LogLevel.String() != "WARN" {
				t.Errorf("LogLevel = %s, want WARN", c.LogLevel)
			}
		}},
		{"flag set to its default still wins", []string{"--state-dir", "/var/lib/herd"}, func(t *testing.T, c agent.Command) {
			checkFields(t, c.Config, map[string]any{"StateDir": "/var/lib/herd"})
		}},
	}
	path := writeConfig(t, file)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, form := range [][]string{{"--config", path}, {"--config=" + path}} {
				c, err := agent.ParseCommandLine(append(form, tc.args...), env, io.Discard)
				if err != nil {
					t.Fatalf("ParseCommandLine(%v): %v", form, err)
				}
				tc.check(t, c)
			}
		})
	}
}

// Without flags or a file, the limits have their documented defaults.
func TestParseCommandLineDefaults(t *testing.T) {
	t.Parallel()
	c, err := agent.ParseCommandLine(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, c.Config, map[string]any{"MaxPods": 250})
	if err := (&agent.Config{Name: "n1", Socket: "/run/herd/agentd.sock", StateDir: "/tmp/x", MaxPods: 0}).Validate(); err != nil {
		t.Errorf("--max-pods 0 (no limit) refused: %v", err)
	}
}

// checkFields compares the named fields of cfg.
func checkFields(t *testing.T, cfg agent.Config, want map[string]any) {
	t.Helper()
	v := reflect.ValueOf(cfg)
	for name, w := range want {
		if got := v.FieldByName(name).Interface(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", name, got, w)
		}
	}
}

// A bad --config file is refused with the key, what was wrong and the
// file's name, and never echoes a string value (it may be a PEM key).
func TestParseCommandLineConfigFileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", "pod_cidr: 10.1.0.0/24\n", []string{`unknown key "pod_cidr"`, `did you mean "pod-cidr"?`}},
		{"config inside config", "config: other.yaml\n", []string{`unknown key "config"`}},
		{"integer flag with a word", "node-cidr-bits: many\n", []string{`key "node-cidr-bits"`, "want an integer, got a string"}},
		{"integer flag with a fraction", "node-cidr-bits: 24.5\n", []string{`key "node-cidr-bits"`, "want an integer, got 24.5"}},
		{"duration without unit", "service-resync: 30\n", []string{`key "service-resync"`, "want a duration with its unit"}},
		{"bad duration", "restart-backoff: soon\n", []string{`key "restart-backoff"`, "want a duration"}},
		{"list for a string flag", "name: [a, b]\n", []string{`key "name"`, "want a string, got a list"}},
		{"boolean for a string flag", "namespace: no\n", []string{`key "namespace"`, "got a boolean", "quote"}},
		{"mapping for a repeated flag", "join: {a: b}\n", []string{`key "join"`, "want a list of strings, got a mapping"}},
		{"nested list for a repeated flag", "join: [[a]]\n", []string{`key "join"`, "got a list at index 0"}},
		{"no value", "pod-cidr:\n", []string{`key "pod-cidr"`, "has no value"}},
		{"duplicate key", "name: a\nname: b\n", []string{"name"}},
		{"not a mapping", "- state-dir\n", []string{"want a mapping of flag names"}},
		{"every bad key at once", "pod_cidr: x\nnode-cidr-bits: x\n", []string{`unknown key "pod_cidr"`, `key "node-cidr-bits"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml)
			_, err := agent.ParseCommandLine([]string{"--config", path}, noEnv, io.Discard)
			if err == nil {
				t.Fatalf("ParseCommandLine accepted %q", tc.yaml)
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "absent.yaml")
		_, err := agent.ParseCommandLine([]string{"--config", path}, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error = %v, want one naming %s as missing", err, path)
		}
	})
	t.Run("string values are never echoed", func(t *testing.T) {
		path := writeConfig(t, "key: [\"-----BEGIN EC PRIVATE KEY-----\"]\n")
		_, err := agent.ParseCommandLine([]string{"--config", path}, noEnv, io.Discard)
		if err == nil || strings.Contains(err.Error(), "PRIVATE") {
			t.Errorf("error = %v, want a refusal without the value", err)
		}
	})
}

// agentd exits with its own status when its listen address is taken, so
// that a supervisor (here the test harness) can tell without its log.
func TestExitStatusListenAddressInUse(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := agentDir(t)
	o := env.AgentOptions("addr-in-use")
	o.Dir = dir
	o.Listen = taken.Addr().String() // fixed: the harness must not pick another
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := acctest.StartAgent(ctx, o)
	if err == nil {
		a.Stop()
		t.Fatal("agentd started on a taken address")
	}
	if !errors.Is(err, acctest.ErrListenInUse) {
		t.Errorf("StartAgent: %v\nwant agentd to exit with the status for an address in use", err)
	}
}
