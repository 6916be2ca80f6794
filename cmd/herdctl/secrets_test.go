package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// TestSecretsListAndRotateKey: herdctl secrets lists a secret without its
// value, and rotate-key re-wraps it on a real node, which still reveals it.
func TestSecretsListAndRotateKey(t *testing.T) {
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{Names: []string{"ctl-s"}})
	n := c.Nodes[0]
	ctx := context.Background()
	sc := herdv1.NewSecretServiceClient(n.Conn)
	value := []byte("herdctl-never-prints-this")
	if _, err := sc.ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
		Name: "api-token", Data: map[string][]byte{"token": value},
	}}); err != nil {
		t.Fatal(err)
	}
	tls := []string{"--node", n.Agent.ID(), "--ca-cert", env.Certs.CAFile, "--cert", env.Certs.ClientCertFile, "--key", env.Certs.ClientKeyFile}

	var out, errb bytes.Buffer
	if code := run(append([]string{"secrets"}, tls...), &out, &errb); code != 0 {
		t.Fatalf("secrets: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{"default", "api-token", "opaque", "token", "hmac-sha256:", "ctl-s", "true"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("secrets output lacks %q:\n%s", w, out.String())
		}
	}
	if bytes.Contains(out.Bytes(), value) {
		t.Fatalf("secrets printed the value:\n%s", out.String())
	}

	out.Reset()
	if code := run(append([]string{"secrets", "rotate-key"}, tls...), &out, &errb); code != 0 {
		t.Fatalf("rotate-key: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "1 secrets re-wrapped") {
		t.Fatalf("rotate-key output: %s", out.String())
	}
	got, err := sc.RevealSecret(ctx, &herdv1.RevealSecretRequest{Name: "api-token"})
	if err != nil || !bytes.Equal(got.GetData()["token"], value) {
		t.Fatalf("reveal after rotate-key: %v", err)
	}

	if code := run(append([]string{"secrets", "bogus"}, tls...), &out, &errb); code == 0 || !strings.Contains(errb.String(), "unknown action") {
		t.Fatalf("bogus action: exit %d, stderr %s", code, errb.String())
	}
}
