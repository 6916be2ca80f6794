package resources_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// secretNode is a node of a secret test cluster, with its secrets client.
type secretNode struct {
	*accNode
	cn      *acctest.ClusterNode
	secrets herdv1.SecretServiceClient
}

// startSecretCluster starts a cluster (secrets need one: they are sealed
// and replicated with keys derived from the gossip key) of the named
// nodes in a lab. The harness's client certificate is an admin one, which
// the secrets API requires.
func startSecretCluster(t *testing.T, subnet string, names ...string) []*secretNode {
	t.Helper()
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{Names: names, Subnet: netip.MustParsePrefix(subnet)})
	var out []*secretNode
	for _, cn := range c.Nodes {
		sn := &secretNode{
			accNode: &accNode{env: env, agent: cn.Agent, conn: cn.Conn, pods: cn.Pods, nodes: cn.Nodes},
			cn:      cn,
			secrets: herdv1.NewSecretServiceClient(cn.Conn),
		}
		out = append(out, sn)
	}
	needSecretService(t, out[0].secrets)
	return out
}

// needSecretService skips the test ONLY when the agentd under test does
// not implement SecretService (codes.Unimplemented).
func needSecretService(t *testing.T, sc herdv1.SecretServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := sc.GetSecret(ctx, &herdv1.GetSecretRequest{Namespace: "default", Name: "gate-probe"})
	switch status.Code(err) {
	case codes.Unimplemented:
		t.Skipf("agentd does not implement SecretService yet: %v", err)
	case codes.NotFound:
	default:
		t.Fatalf("GetSecret of a missing secret: %v, want NotFound", err)
	}
}

// randomValue is a secret value no file could hold by chance.
func randomValue(t *testing.T, prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// writeValueFile writes a secret value to a file outside every working
// directory of the CLI: the configuration reads it with file(), so the
// value is in no configuration, variable or plan file by construction.
func writeValueFile(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cliWorkFiles lists the files terraform-plugin-testing's working
// directories hold (configuration, state, state backup, saved plan), for
// every test running now: a value that must never be written anywhere
// must be in none of them.
func cliWorkFiles() ([]string, error) {
	base := os.Getenv("TF_ACC_TEMP_DIR")
	if base == "" {
		base = os.TempDir()
	}
	var out []string
	for _, pat := range []string{"tfplan", "terraform.tfstate", "terraform.tfstate.backup", "*.tf", "*.json"} {
		m, err := filepath.Glob(filepath.Join(base, "plugintest*", "work*", pat))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// fileContents returns a file's bytes, and for a saved plan (a zip) the
// bytes of each of its entries, uncompressed.
func fileContents(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := [][]byte{b}
	if filepath.Base(path) == "tfplan" {
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			e, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// valuesAbsent checks that no CLI file holds any of values (raw or
// base64), and that at least one file of kind (e.g. "tfplan") holds
// marker, which proves the right files were looked at.
func valuesAbsent(kind, marker string, values ...string) error {
	files, err := cliWorkFiles()
	if err != nil {
		return err
	}
	seen := false
	for _, f := range files {
		parts, err := fileContents(f)
		if os.IsNotExist(err) {
			continue // another test's step moved on
		}
		if err != nil {
			return err
		}
		for _, p := range parts {
			if filepath.Base(f) == kind && bytes.Contains(p, []byte(marker)) {
				seen = true
			}
			for _, v := range values {
				if bytes.Contains(p, []byte(v)) || bytes.Contains(p, []byte(base64.StdEncoding.EncodeToString([]byte(v)))) {
					return fmt.Errorf("%s holds a secret value", f)
				}
			}
		}
	}
	if !seen {
		return fmt.Errorf("no %s file mentions %q among %d CLI files: the check looked in the wrong place", kind, marker, len(files))
	}
	return nil
}

// noValuesInPlan is a plan check: neither the plan as `show -json` renders
// it nor the saved plan file (every entry of the zip) holds the values.
type noValuesInPlan struct {
	marker string
	values []string
}

func (c noValuesInPlan) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	b, err := json.Marshal(req.Plan)
	if err != nil {
		resp.Error = err
		return
	}
	for _, v := range c.values {
		if bytes.Contains(b, []byte(v)) {
			resp.Error = fmt.Errorf("the JSON plan holds a secret value")
			return
		}
	}
	resp.Error = valuesAbsent("tfplan", c.marker, c.values...)
}

// noValuesInState is a check that no state file holds the values.
func noValuesInState(marker string, values ...*string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		var vs []string
		for _, v := range values {
			vs = append(vs, *v)
		}
		return valuesAbsent("terraform.tfstate", marker, vs...)
	}
}

// woHCL is one node, herd_secret.s ("db") with write-only data read from
// valueFile, a pod that prints the mounted file every 300 ms ("watcher")
// and a pod with restart_on_secret_change that prints it (file and
// secret_env variable) once at start ("restarter"); extra is appended.
func woHCL(n *secretNode, valueFile string, version int, extra string) string {
	return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_secret" "s" {
  node            = herd_node.n.id
  name            = "db"
  data_wo         = { password = file(%[1]q) }
  data_wo_version = %[2]d
}

resource "herd_pod" "watcher" {
  node = herd_node.n.id
  name = "watcher"
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %[3]q
    command = ["sh", "-c", "while true; do echo \"pw=$(cat /run/secrets/db/password)\"; sleep 0.3; done"]
    secret_mount {
      secret = herd_secret.s.name
    }
  }
}

resource "herd_pod" "restarter" {
  node                     = herd_node.n.id
  name                     = "restarter"
  restart_on_secret_change = true
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %[3]q
    command = ["sh", "-c", "echo \"start=$(cat /etc/app/password) env=$PW\"; exec sleep 3600"]
    secret_mount {
      secret = herd_secret.s.id
      path   = "/etc/app"
      keys   = ["password"]
      mode   = "0440"
    }
    secret_env {
      name   = "PW"
      secret = "db"
      key    = "password"
    }
  }
}
%[4]s
`, valueFile, version, n.env.Image, extra)
}

// The ephemeral herd_secret reads db's values and feeds them, write-only,
// to another secret.
const ephemeralCopyHCL = `
ephemeral "herd_secret" "src" {
  node = herd_node.n.id
  name = herd_secret.s.name
}

resource "herd_secret" "copy" {
  node            = herd_node.n.id
  name            = "db-copy"
  data_wo         = ephemeral.herd_secret.src.data
  data_wo_version = 1
}
`

// podPID is the host PID of a pod's only container.
func (n *secretNode) podPID(t *testing.T, pod string) (uint32, error) {
	p, err := n.pods.GetPod(ctx(t), &herdv1.GetPodRequest{Name: pod})
	if err != nil {
		return 0, err
	}
	cs := p.GetStatus().GetContainers()
	if len(cs) != 1 {
		return 0, fmt.Errorf("pod %s has %d containers", pod, len(cs))
	}
	return cs[0].GetPid(), nil
}

// A write-only secret on a real one-node cluster: its value reaches a pod's
// files and never a plan or state file; a version bump pushes a new value
// (files updated in place, the restart_on_secret_change pod restarted, as
// the plan's restarts said); import by NAMESPACE/NAME@NODEID; a change
// behind Terraform's back is planned as an update that writes the data
// again; the ephemeral resource copies the values into another secret
// (same checksum); a secret deleted behind Terraform's back is recreated.
func TestAccSecretWriteOnly(t *testing.T) {
	t.Parallel()
	nodes := startSecretCluster(t, "10.86.0.0/24", "sec-wo")
	n := nodes[0]
	valueFile := filepath.Join(t.TempDir(), "password")
	v1, v2, v3 := randomValue(t, "one"), randomValue(t, "two"), randomValue(t, "drift")
	marker := n.agent.Name // in every plan and state: the node's id
	var checksum1, checksum2, pid1 string
	restarterRef := n.agent.Name + "/restarter"

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		TerraformVersionChecks:   writeOnlyCLI,
		CheckDestroy: func(*terraform.State) error {
			for _, name := range []string{"db", "db-copy"} {
				_, err := n.secrets.GetSecret(context.Background(), &herdv1.GetSecretRequest{Namespace: "default", Name: name})
				if status.Code(err) != codes.NotFound {
					return fmt.Errorf("GetSecret %s after destroy: %v, want NotFound", name, err)
				}
			}
			return n.nothingLeft(t)
		},
		Steps: []resource.TestStep{
			// 1. Created; the pods read the value from their files; no
			// plan or state file holds it.
			{
				PreConfig: func() { writeValueFile(t, valueFile, v1) },
				Config:    woHCL(n, valueFile, 1, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						noValuesInPlan{marker: marker, values: []string{v1}},
						plancheck.ExpectKnownValue("herd_secret.s", tfjsonpath.New("restarts"), knownvalue.ListExact(nil)),
						plancheck.ExpectKnownValue("herd_secret.s", tfjsonpath.New("keys"),
							knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("password")})),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_secret.s", "id", "default/db"),
					resource.TestCheckResourceAttr("herd_secret.s", "type", "opaque"),
					resource.TestCheckResourceAttr("herd_secret.s", "data_wo_version", "1"),
					resource.TestCheckNoResourceAttr("herd_secret.s", "data_wo"),
					resource.TestCheckNoResourceAttr("herd_secret.s", "data"),
					resource.TestCheckResourceAttr("herd_secret.s", "keys.#", "1"),
					resource.TestCheckResourceAttr("herd_secret.s", "synced", "true"),
					resource.TestCheckResourceAttr("herd_secret.s", "holders.#", "1"),
					resource.TestCheckResourceAttr("herd_secret.s", "holders.0.node", n.agent.Name),
					resource.TestCheckResourceAttr("herd_secret.s", "restarts.#", "0"),
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", hasPrefixCheck("hmac-sha256:")),
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", record(&checksum1)),
					resource.TestCheckResourceAttrWith("herd_secret.s", "version", atLeast(1)),
					resource.TestCheckResourceAttr("herd_pod.restarter", "container.0.secret_mount.0.mode", "0440"),
					noValuesInState(marker, &v1),
					func(*terraform.State) error { return n.waitLogs(t, "watcher", "app", "pw="+v1) },
					func(*terraform.State) error { return n.waitLogs(t, "restarter", "app", "start="+v1+" env="+v1) },
					func(*terraform.State) error {
						sec, err := n.secrets.GetSecret(ctx(t), &herdv1.GetSecretRequest{Namespace: "default", Name: "db"})
						if err != nil {
							return err
						}
						if sec.GetStatus().GetChecksum() != checksum1 {
							return fmt.Errorf("agentd has checksum %s, state %s", sec.GetStatus().GetChecksum(), checksum1)
						}
						pid, err := n.podPID(t, "restarter")
						pid1 = fmt.Sprint(pid)
						return err
					},
				),
			},
			// 2. A version bump pushes a new value: the plan lists the
			// restart; the watcher's file changes in place (no restart),
			// the restarter is restarted and reads the new value.
			{
				PreConfig: func() { writeValueFile(t, valueFile, v2) },
				Config:    woHCL(n, valueFile, 2, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.watcher", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("herd_pod.restarter", plancheck.ResourceActionNoop),
						plancheck.ExpectKnownValue("herd_secret.s", tfjsonpath.New("restarts"),
							knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact(restarterRef)})),
						plancheck.ExpectUnknownValue("herd_secret.s", tfjsonpath.New("checksum")),
						noValuesInPlan{marker: marker, values: []string{v1, v2}},
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_secret.s", "restarts.#", "1"),
					resource.TestCheckResourceAttr("herd_secret.s", "restarts.0", restarterRef),
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", differs(&checksum1)),
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", record(&checksum2)),
					noValuesInState(marker, &v1, &v2),
					func(*terraform.State) error { return n.waitLogs(t, "watcher", "app", "pw="+v2) },
					func(*terraform.State) error { return n.waitLogs(t, "restarter", "app", "start="+v2+" env="+v2) },
					func(*terraform.State) error {
						p, err := n.pods.GetPod(ctx(t), &herdv1.GetPodRequest{Name: "watcher"})
						if err != nil {
							return err
						}
						if rc := p.GetStatus().GetContainers()[0].GetRestartCount(); rc != 0 {
							return fmt.Errorf("watcher restarted %d times: its file should change in place", rc)
						}
						pid, err := n.podPID(t, "restarter")
						if err != nil {
							return err
						}
						if fmt.Sprint(pid) == pid1 {
							return fmt.Errorf("restarter still runs pid %d: not restarted", pid)
						}
						return nil
					},
				),
			},
			// 3. Refresh, then nothing to do.
			{
				Config:   woHCL(n, valueFile, 2, ""),
				PlanOnly: true,
			},
			// 4. Import by NAMESPACE/NAME@NODEID: everything but the
			// write-only data and its version (never imported).
			{
				ResourceName:            "herd_secret.s",
				ImportState:             true,
				ImportStateId:           "default/db@" + n.agent.ID(),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"data_wo_version", "restarts", "timeouts"},
			},
			// 5. New data written behind Terraform's back: the checksum
			// shows it, the plan writes the configured data again (and
			// restarts the restarter for it).
			{
				PreConfig: func() {
					_, err := n.secrets.ApplySecret(ctx(t), &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
						Namespace: "default", Name: "db", Type: "opaque", Data: map[string][]byte{"password": []byte(v3)},
					}})
					if err != nil {
						t.Fatalf("ApplySecret behind Terraform's back: %v", err)
					}
				},
				Config: woHCL(n, valueFile, 2, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate),
						plancheck.ExpectUnknownValue("herd_secret.s", tfjsonpath.New("checksum")),
						plancheck.ExpectKnownValue("herd_secret.s", tfjsonpath.New("restarts"),
							knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact(restarterRef)})),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", equals(&checksum2)),
					func(*terraform.State) error { return n.waitLogs(t, "restarter", "app", "start="+v2) },
				),
			},
			// 6. The ephemeral resource feeds the values to another
			// secret's data_wo: equal data, equal (keyed) checksum; still
			// in no plan or state file.
			{
				Config: woHCL(n, valueFile, 2, ephemeralCopyHCL),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_secret.copy", plancheck.ResourceActionCreate),
						noValuesInPlan{marker: marker, values: []string{v2}},
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPair("herd_secret.copy", "checksum", "herd_secret.s", "checksum"),
					resource.TestCheckResourceAttr("herd_secret.copy", "keys.0", "password"),
					noValuesInState(marker, &v2),
				),
			},
			// 7. Deleted behind Terraform's back: the plan creates it.
			{
				PreConfig: func() {
					resp, err := n.secrets.DeleteSecret(ctx(t), &herdv1.DeleteSecretRequest{Namespace: "default", Name: "db-copy"})
					if err != nil || !resp.GetExisted() {
						t.Fatalf("DeleteSecret: %v, existed=%v", err, resp.GetExisted())
					}
				},
				Config: woHCL(n, valueFile, 2, ephemeralCopyHCL),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_secret.copy", plancheck.ResourceActionCreate),
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionNoop),
					},
				},
				Check: resource.TestCheckResourceAttrPair("herd_secret.copy", "checksum", "herd_secret.s", "checksum"),
			},
		},
	})
}

// selectorHCL is two nodes, "in" labelled tier=db and "out" without
// labels, and herd_secret.s with data (sensitive, in the state: the path
// for CLIs without write-only attributes) limited to tier=db, written
// through the node outside the selector; a pod on "in" prints it; extra
// is appended.
func selectorHCL(in, out *secretNode, value, extra string) string {
	return in.providerHCL() + fmt.Sprintf(`
resource "herd_node" "in" {
  name    = %[1]q
  address = %[2]q
  labels  = { tier = "db" }
}

resource "herd_node" "out" {
  name    = %[3]q
  address = %[4]q
}

resource "herd_secret" "s" {
  node          = herd_node.out.id
  name          = "api"
  node_selector = { tier = "db" }
  data          = { token = %[5]q }
  depends_on    = [herd_node.in]
}

resource "herd_pod" "reader" {
  node = herd_node.in.id
  name = "reader"
  termination_grace_period_seconds = 1
  container {
    name    = "app"
    image   = %[6]q
    command = ["sh", "-c", "while true; do echo \"token=$(cat /run/secrets/api/token)\"; sleep 0.3; done"]
    secret_mount {
      secret = herd_secret.s.name
    }
  }
}
%[7]s
`, in.agent.Name, in.agent.Addr, out.agent.Name, out.agent.Addr, value, in.env.Image, extra)
}

// A pod on the node outside the selector.
func outsiderPodHCL(image string) string {
	return fmt.Sprintf(`
resource "herd_pod" "outsider" {
  node = herd_node.out.id
  name = "outsider"
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "3600"]
    secret_mount {
      secret = herd_secret.s.name
    }
  }
}
`, image)
}

// waitLabels waits until every node sees node's labels include want (the
// selectors of secrets match what the members publish).
func waitLabels(t *testing.T, nodes []*secretNode, node string, want map[string]string) {
	t.Helper()
	for _, n := range nodes {
		var resp *herdv1.ListMembersResponse
		var err error
		if wait.PollUntilContextTimeout(ctx(t), 200*time.Millisecond, 30*time.Second, true, func(c context.Context) (bool, error) {
			resp, err = n.cn.Cluster.ListMembers(c, &herdv1.ListMembersRequest{})
			ok := false
			for _, m := range resp.GetMembers() {
				if m.GetName() == node {
					ok = true
					for k, v := range want {
						if m.GetLabels()[k] != v {
							ok = false
						}
					}
				}
			}
			return ok, nil
		}) != nil {
			t.Fatalf("%s does not see labels %v on %s (err %v): %v", n.agent.Name, want, node, err, resp.GetMembers())
		}
	}
}

// node_selector on a real two-node cluster, with data (sensitive, kept in
// the state, for CLIs without write-only attributes): only the matching
// member holds the secret, although it is written through the other one;
// the other can neither reveal it nor run a pod that uses it (a clear
// error at apply); new data reaches the pod's file in place; import;
// immutable = true in place, then new data replaces the secret.
func TestAccSecretNodeSelectorAndSensitiveData(t *testing.T) {
	t.Parallel()
	nodes := startSecretCluster(t, "10.87.0.0/24", "sec-in", "sec-out")
	in, out := nodes[0], nodes[1]
	// Label "in" before Terraform does (the same labels), so that the
	// selector sees them however quickly the apply runs.
	if _, err := in.nodes.SetNodeLabels(ctx(t), &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"tier": "db"}}); err != nil {
		t.Fatal(err)
	}
	waitLabels(t, nodes, in.agent.Name, map[string]string{"tier": "db"})
	t1, t2 := randomValue(t, "tok1"), randomValue(t, "tok2")
	var checksum1, uid1 string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		CheckDestroy: func(*terraform.State) error {
			_, err := in.secrets.GetSecret(context.Background(), &herdv1.GetSecretRequest{Namespace: "default", Name: "api"})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("GetSecret after destroy: %v, want NotFound", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			// 1. Held by "in" only; its pod reads the value.
			{
				Config: selectorHCL(in, out, t1, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_secret.s", "holders.#", "1"),
					resource.TestCheckResourceAttr("herd_secret.s", "holders.0.node", in.agent.Name),
					resource.TestCheckResourceAttr("herd_secret.s", "synced", "true"),
					resource.TestCheckResourceAttr("herd_secret.s", "node_selector.tier", "db"),
					resource.TestCheckResourceAttr("herd_secret.s", "keys.0", "token"),
					resource.TestCheckResourceAttr("herd_secret.s", "data.token", t1),
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", record(&checksum1)),
					func(*terraform.State) error { return in.waitLogs(t, "reader", "app", "token="+t1) },
					func(*terraform.State) error {
						// The outsider never held it: it cannot reveal it.
						_, err := out.secrets.RevealSecret(ctx(t), &herdv1.RevealSecretRequest{Namespace: "default", Name: "api"})
						if status.Code(err) != codes.FailedPrecondition {
							return fmt.Errorf("RevealSecret on %s: %v, want FailedPrecondition", out.agent.Name, err)
						}
						got, err := in.secrets.RevealSecret(ctx(t), &herdv1.RevealSecretRequest{Namespace: "default", Name: "api"})
						if err != nil {
							return fmt.Errorf("RevealSecret on %s: %v", in.agent.Name, err)
						}
						if string(got.GetData()["token"]) != t1 {
							return fmt.Errorf("%s holds other data", in.agent.Name)
						}
						for _, n := range nodes {
							sec, err := n.secrets.GetSecret(ctx(t), &herdv1.GetSecretRequest{Namespace: "default", Name: "api"})
							if err != nil {
								return err
							}
							for _, m := range sec.GetStatus().GetMembers() {
								if m.GetNode() != in.agent.Name {
									return fmt.Errorf("%s reports holder %s", n.agent.Name, m.GetNode())
								}
							}
						}
						return nil
					},
				),
			},
			// 2. A pod on the node outside the selector is refused, clearly.
			{
				Config: selectorHCL(in, out, t1, outsiderPodHCL(in.env.Image)),
				ExpectError: errRe("Pod uses a secret its node cannot give it", out.agent.Name,
					"is outside the node_selector", "default/api"),
			},
			// 3. New data (data changed) is pushed in place; no pod
			// restarts (none asked for it).
			{
				Config: selectorHCL(in, out, t2, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("herd_pod.reader", plancheck.ResourceActionNoop),
						plancheck.ExpectKnownValue("herd_secret.s", tfjsonpath.New("restarts"), knownvalue.ListExact(nil)),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", differs(&checksum1)),
					resource.TestCheckResourceAttr("herd_secret.s", "holders.#", "1"),
					func(*terraform.State) error { return in.waitLogs(t, "reader", "app", "token="+t2) },
				),
			},
			// 4. Import: everything but the values.
			{
				ResourceName:            "herd_secret.s",
				ImportState:             true,
				ImportStateId:           "default/api@" + out.agent.ID(),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"data", "restarts", "timeouts"},
			},
			// 5. immutable = true changes it in place (same uid).
			{
				Config: strings.Replace(selectorHCL(in, out, t2, ""), `name          = "api"`, `name          = "api"
  immutable     = true`, 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionUpdate)},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_secret.s", "immutable", "true"),
					resource.TestCheckResourceAttrWith("herd_secret.s", "uid", record(&uid1)),
				),
			},
			// 6. New data for an immutable secret replaces it.
			{
				Config: strings.Replace(selectorHCL(in, out, t1, ""), `name          = "api"`, `name          = "api"
  immutable     = true`, 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("herd_secret.s", plancheck.ResourceActionDestroyBeforeCreate),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("herd_secret.s", "uid", differs(&uid1)),
					resource.TestCheckResourceAttrWith("herd_secret.s", "checksum", equals(&checksum1)),
				),
			},
		},
	})
}

func hasPrefixCheck(prefix string) func(string) error {
	return func(v string) error {
		if !strings.HasPrefix(v, prefix) {
			return fmt.Errorf("%q does not start with %q", v, prefix)
		}
		return nil
	}
}

// image_pull_secret on a real node: a registry that demands basic auth
// refuses the pull without the secret; with a herd_secret of type registry
// (write-only credentials) the pod starts.
func TestAccSecretImagePullSecret(t *testing.T) {
	t.Parallel()
	password := randomValue(t, "pull")
	reg := acctest.RegistryForTest(t, acctest.WithBasicAuth("puller", password))
	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	needCLI(t)
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	env := acctest.SharedEnv(t)
	ref, err := reg.Push(ctx(t), "private/busybox", "1", img)
	if err != nil {
		t.Fatal(err)
	}
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:  []string{"sec-pull"},
		Subnet: netip.MustParsePrefix("10.88.0.0/24"),
		Mutate: func(o *acctest.AgentOptions) { o.InsecureRegistries = append(o.InsecureRegistries, reg.Host()) },
	})
	cn := c.Nodes[0]
	relay, err := cn.Lab.Relay(reg.Host(), reg.Host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	n := &secretNode{
		accNode: &accNode{env: env, agent: cn.Agent, conn: cn.Conn, pods: cn.Pods, nodes: cn.Nodes},
		cn:      cn, secrets: herdv1.NewSecretServiceClient(cn.Conn),
	}
	needSecretService(t, n.secrets)
	passwordFile := filepath.Join(t.TempDir(), "password")
	writeValueFile(t, passwordFile, password)
	config := func(pullSecret string) string {
		return n.providerHCL() + n.nodeHCL("") + fmt.Sprintf(`
resource "herd_secret" "pull" {
  node = herd_node.n.id
  name = "registry"
  type = "registry"
  data_wo = {
    registry = %q
    username = "puller"
    password = file(%q)
  }
  data_wo_version = 1
}

resource "herd_pod" "private" {
  node  = herd_node.n.id
  name  = "private"
  %s
  container {
    name    = "app"
    image   = %q
    command = ["sleep", "3600"]
  }
  timeouts {
    create = "30s"
  }
}
`, reg.Host(), passwordFile, pullSecret, ref)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(),
		TerraformVersionChecks:   writeOnlyCLI,
		CheckDestroy:             n.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:      config(""),
				ExpectError: errRe("Pod", "private", "did not start"),
			},
			{
				Config: config(`image_pull_secret = herd_secret.pull.id`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("herd_pod.private", "image_pull_secret", "default/registry"),
					resource.TestCheckResourceAttr("herd_pod.private", "phase", "Running"),
					noValuesInState(n.agent.Name, &password),
				),
			},
		},
	})
}
