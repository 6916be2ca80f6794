package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// TestLostKEK: a holder whose key-encryption key file was deleted refuses
// to start, naming the file and --new-kek; started once with --new-kek it
// fetches every secret its labels match back from the other holders (same
// checksum, same value, synced) and nothing is lost on the others; it is
// never reported as holding a secret it cannot open, and the secret it is
// outside of does not reach it.
func TestLostKEK(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:  []string{"kl-a", "kl-b", "kl-c"},
		Subnet: netip.MustParsePrefix("10.91.0.0/24"),
		Mutate: func(o *acctest.AgentOptions) {
			o.ExtraArgs = append(o.ExtraArgs, "--secret-resync", "2s")
		},
	})
	ctx := context.Background()
	a, b, web := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	for n, role := range map[*acctest.ClusterNode]string{a: "db", b: "db", web: "web"} {
		if _, err := n.Nodes.SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"role": role}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "every member's labels seen by every member", func() (bool, string) {
		for _, n := range c.Nodes {
			resp, err := n.Cluster.ListMembers(ctx, &herdv1.ListMembersRequest{})
			if err != nil {
				return false, err.Error()
			}
			seen := 0
			for _, m := range resp.GetMembers() {
				if m.GetLabels()["role"] != "" {
					seen++
				}
			}
			if seen != 3 {
				return false, fmt.Sprint(resp.GetMembers())
			}
		}
		return true, ""
	})
	secrets := func(n *acctest.ClusterNode) herdv1.SecretServiceClient { return herdv1.NewSecretServiceClient(n.Conn) }

	// Two secrets b should hold (one for the db nodes, one for every
	// node) and one it must not (web only).
	values := map[string][]byte{"db-pass": randomSecret(), "shared-token": randomSecret(), "web-only": randomSecret()}
	selectors := map[string]map[string]string{"db-pass": {"role": "db"}, "shared-token": nil, "web-only": {"role": "web"}}
	checksums := map[string]string{}
	for name, v := range values {
		resp, err := secrets(a).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
			Name: name, Data: map[string][]byte{"value": v}, NodeSelector: selectors[name],
		}})
		if err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		if !resp.GetSecret().GetStatus().GetSynced() {
			t.Fatalf("%s not synced after apply: %v", name, resp.GetSecret().GetStatus())
		}
		checksums[name] = resp.GetSecret().GetStatus().GetChecksum()
	}
	holders := func(st *herdv1.SecretStatus) []string {
		var out []string
		for _, m := range st.GetMembers() {
			out = append(out, m.GetNode())
		}
		slices.Sort(out)
		return out
	}

	kekFile, _ := removeKEK(t, b.Agent)

	t.Run("without its key-encryption key a holder refuses to start", func(t *testing.T) {
		refusesStart(ctx, t, b.Agent, "its secrets", kekFile, "--new-kek", "restore")
		// The others still hold and serve every secret.
		got, err := secrets(a).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-pass"})
		if err != nil || !bytes.Equal(got.GetData()["value"], values["db-pass"]) {
			t.Fatalf("reveal db-pass on kl-a while kl-b is down: %v", err)
		}
	})

	t.Run("with --new-kek it gets every secret back from the other holders", func(t *testing.T) {
		restartWithNewKEK(ctx, t, b.Agent)
		for _, name := range []string{"db-pass", "shared-token"} {
			waitFor(t, 2*time.Minute, name+" back on kl-b, synced, same checksum", func() (bool, string) {
				resp, err := secrets(b).GetSecret(ctx, &herdv1.GetSecretRequest{Name: name})
				if err != nil {
					return false, err.Error()
				}
				st := resp.GetStatus()
				if !slices.Contains(holders(st), "kl-b") || !st.GetSynced() || st.GetChecksum() != checksums[name] {
					return false, fmt.Sprintf("status %v (want checksum %s)", st, checksums[name])
				}
				got, err := secrets(b).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: name})
				if err != nil {
					return false, "reveal on kl-b: " + err.Error()
				}
				return bytes.Equal(got.GetData()["value"], values[name]), "kl-b reveals another value"
			})
		}
		// Whatever kl-b reports holding, it can open.
		list, err := secrets(b).ListSecrets(ctx, &herdv1.ListSecretsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.GetSecrets() {
			name := s.GetMeta().GetName()
			if !slices.Contains(holders(s.GetStatus()), "kl-b") {
				continue
			}
			got, err := secrets(b).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: name})
			if err != nil || !bytes.Equal(got.GetData()["value"], values[name]) {
				t.Errorf("kl-b is listed as holding %s but cannot reveal it: %v", name, err)
			}
		}
		// Nothing was lost elsewhere, and the web secret stayed away.
		for _, tc := range []struct {
			n    *acctest.ClusterNode
			name string
		}{{a, "db-pass"}, {a, "shared-token"}, {web, "shared-token"}, {web, "web-only"}} {
			got, err := secrets(tc.n).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: tc.name})
			if err != nil || !bytes.Equal(got.GetData()["value"], values[tc.name]) {
				t.Errorf("%s lost %s: %v", tc.n.Agent.Name, tc.name, err)
			}
		}
		resp, err := secrets(a).GetSecret(ctx, &herdv1.GetSecretRequest{Name: "web-only"})
		if err != nil {
			t.Fatal(err)
		}
		if h := holders(resp.GetStatus()); !slices.Equal(h, []string{"kl-c"}) || resp.GetStatus().GetChecksum() != checksums["web-only"] {
			t.Errorf("web-only held by %v, want kl-c alone", h)
		}
		// A later start needs no flag.
		if err := b.Agent.Restart(ctx); err != nil {
			t.Fatalf("restart after recovery: %v", err)
		}
		got, err := secrets(b).RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "db-pass"})
		if err != nil || !bytes.Equal(got.GetData()["value"], values["db-pass"]) {
			t.Fatalf("reveal on kl-b after a plain restart: %v", err)
		}
	})
}

// removeKEK stops ag and deletes its current key-encryption key file; it
// returns the file and the key directory's "current" as it was.
func removeKEK(t *testing.T, ag *acctest.Agent) (kekFile string, current []byte) {
	t.Helper()
	keyDir := filepath.Join(ag.StateDir, "keys")
	cur, err := os.ReadFile(filepath.Join(keyDir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	kekFile = filepath.Join(keyDir, "kek-"+strings.TrimSpace(string(cur)))
	ag.Stop()
	if err := os.Remove(kekFile); err != nil {
		t.Fatal(err)
	}
	return kekFile, cur
}

// refusesStart restarts ag and checks that agentd exits with a failure
// whose message says every one of wants.
func refusesStart(ctx context.Context, t *testing.T, ag *acctest.Agent, what string, wants ...string) {
	t.Helper()
	err := ag.Restart(ctx)
	if err == nil {
		t.Fatalf("agentd started without the key-encryption key %s needs", what)
	}
	msg := err.Error()
	if !strings.Contains(msg, "agentd exited (exit status ") || strings.Contains(msg, "exit status 0)") {
		t.Errorf("agentd did not exit with a failure: %v", err)
	}
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, msg)
		}
	}
}

// restartWithNewKEK starts ag once with --new-kek (later restarts go
// without it).
func restartWithNewKEK(ctx context.Context, t *testing.T, ag *acctest.Agent) {
	t.Helper()
	args := ag.Opts.ExtraArgs
	ag.Opts.ExtraArgs = append(slices.Clone(args), "--new-kek")
	err := ag.Restart(ctx)
	ag.Opts.ExtraArgs = args
	if err != nil {
		t.Fatal(err)
	}
}
