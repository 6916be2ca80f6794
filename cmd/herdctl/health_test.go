package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// TestHealth: herdctl health against a real agentd over mTLS.
func TestHealth(t *testing.T) {
	env := acctest.SharedEnv(t)
	a := env.Agent(t, "ctl-health")
	tls := []string{"--node", a.ID(), "--ca-cert", env.Certs.CAFile, "--cert", env.Certs.ClientCertFile, "--key", env.Certs.ClientKeyFile}

	var out, errb bytes.Buffer
	if code := run(append([]string{"health"}, tls...), &out, &errb); code != 0 {
		t.Fatalf("health: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{`"" (agentd)  SERVING`, "containerd   SERVING", "store        SERVING"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("health output lacks %q:\n%s", w, out.String())
		}
	}

	out.Reset()
	errb.Reset()
	if code := run(append([]string{"health", "--service", "containerd"}, tls...), &out, &errb); code != 0 || !strings.Contains(out.String(), "containerd  SERVING") || strings.Contains(out.String(), "store") {
		t.Errorf("health --service containerd: exit %d, stdout:\n%s\nstderr: %s", code, out.String(), errb.String())
	}

	out.Reset()
	errb.Reset()
	if code := run(append([]string{"health", "--service", "nonesuch"}, tls...), &out, &errb); code != 1 || !strings.Contains(errb.String(), "NotFound") {
		t.Errorf("health --service nonesuch: exit %d, stderr %q; want 1 and NotFound", code, errb.String())
	}
}
