package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// Images from a registry behind basic auth: agentd pulls with the
// credentials of --registry-config, reports a pull failure without them
// or with wrong ones, and never shows a password.
func TestRegistryCredentials(t *testing.T) {
	t.Parallel()
	acctest.SharedEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	user, pass := "puller", "pw-"+randHex(t)
	wrongPass := "wrong-" + randHex(t)
	reg := acctest.RegistryForTest(t, acctest.WithBasicAuth(user, pass))
	bb, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := reg.Push(ctx, "private/busybox", "1", bb)
	if err != nil {
		t.Fatal(err)
	}
	cfgDir := t.TempDir()
	writeConfig := func(name, password string) string {
		b, err := json.Marshal(map[string]any{
			"insecure": []string{reg.Host()},
			"auths":    map[string]any{reg.Host(): map[string]string{"username": user, "password": password}},
		})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(cfgDir, name+".json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secrets := []string{
		pass, wrongPass,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
		base64.StdEncoding.EncodeToString([]byte(user + ":" + wrongPass)),
	}
	noSecret := func(t *testing.T, where, s string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s contains a secret (%q)", where, sec)
			}
		}
	}
	spec := func() *herdv1.PodSpec {
		return &herdv1.PodSpec{Name: "private", Containers: []*herdv1.ContainerSpec{{
			Name: "main", Image: ref, Command: []string{"sh", "-c", "echo pulled-ok; sleep 3600"},
		}}}
	}

	good := startNode(t, "reg-good", func(o *acctest.AgentOptions) { o.RegistryConfig = writeConfig("good", pass) })
	none := startNode(t, "reg-none", func(o *acctest.AgentOptions) {
		o.InsecureRegistries = append(o.InsecureRegistries, reg.Host())
	})
	wrong := startNode(t, "reg-wrong", func(o *acctest.AgentOptions) {
		o.RegistryConfig = writeConfig("wrong", wrongPass)
		o.BackoffBase = time.Second // reach ImagePullBackOff soon
	})
	for _, n := range []*node{good, none, wrong} {
		n.apply(t, spec())
	}

	t.Run("with credentials", func(t *testing.T) {
		p := good.waitRunning(t, "private")
		good.waitLogs(t, "private", "", "pulled-ok")
		if d := p.GetStatus().GetContainers()[0].GetImageDigest(); !strings.HasPrefix(d, "sha256:") {
			t.Errorf("image_digest = %q", d)
		}
	})

	pullFailed := func(t *testing.T, n *node, hint string) {
		t.Helper()
		p := n.waitPod(t, "private", "failing to pull", func(p *herdv1.Pod) bool {
			r := p.GetStatus().GetContainers()[0].GetReason()
			return r == "ErrImagePull" || r == "ImagePullBackOff"
		})
		cs := p.GetStatus().GetContainers()[0]
		t.Logf("%s: %s", n.agent.Name, fmtPod(p))
		if p.GetStatus().GetPhase() != "Pending" || cs.GetState() != "waiting" || cs.GetPid() != 0 {
			t.Errorf("pod = %s, want Pending with a waiting container", fmtPod(p))
		}
		if !strings.Contains(cs.GetMessage(), reg.Host()) || !strings.Contains(cs.GetMessage(), hint) {
			t.Errorf("message %q should name the registry %s and say %q", cs.GetMessage(), reg.Host(), hint)
		}
		if !strings.Contains(p.GetStatus().GetMessage(), "main: Err") && !strings.Contains(p.GetStatus().GetMessage(), "main: ImagePull") {
			t.Errorf("pod message %q does not name the container's problem", p.GetStatus().GetMessage())
		}
		noSecret(t, "container status message", cs.GetMessage())
		noSecret(t, "pod status message", p.GetStatus().GetMessage())
		if ids := n.containerIDs(t); len(ids) != 0 {
			t.Errorf("containers %v exist although the image could not be pulled", ids)
		}
	}
	t.Run("without credentials", func(t *testing.T) {
		pullFailed(t, none, "no credentials are configured")
	})
	t.Run("with wrong credentials", func(t *testing.T) {
		pullFailed(t, wrong, "were refused")
	})
	t.Run("back-off", func(t *testing.T) {
		// Failures repeat as ImagePullBackOff with a retry time.
		p := wrong.waitPod(t, "private", "in ImagePullBackOff", func(p *herdv1.Pod) bool {
			return p.GetStatus().GetContainers()[0].GetReason() == "ImagePullBackOff"
		})
		noSecret(t, "status message", p.GetStatus().GetContainers()[0].GetMessage())
	})

	for _, n := range []*node{good, none, wrong} {
		noSecret(t, "log of "+n.agent.Name, logFile(t, n.agent))
	}

	t.Run("unreadable registry config", func(t *testing.T) {
		// Invalid JSON that holds a password: agentd refuses to start and
		// does not echo the file.
		bad := filepath.Join(cfgDir, "bad.json")
		if err := os.WriteFile(bad, []byte(`{"auths": {"`+reg.Host()+`": {"username": "u", "password": "`+pass+`"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		env := acctest.SharedEnv(t)
		dir := agentDir(t)
		o := env.AgentOptions("reg-bad")
		o.Dir = dir
		o.RegistryConfig = bad
		a, err := acctest.StartAgent(ctx, o)
		if err == nil {
			a.Stop()
			t.Fatal("agentd started with an invalid registry config")
		}
		log, _ := os.ReadFile(filepath.Join(dir, "agentd.log"))
		if !strings.Contains(string(log), "registry config") {
			t.Errorf("agentd's log does not say what is wrong:\n%s", log)
		}
		noSecret(t, "log of agentd with an invalid registry config", string(log))
		noSecret(t, "StartAgent error", err.Error())
	})
}

func randHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
