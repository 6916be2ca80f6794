package pods

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// memSecrets is an in-memory SecretSource: what the node's secret store
// gives the pod manager, with a keyed checksum like the real one.
type memSecrets struct {
	mu sync.Mutex
	m  map[string]SecretData
}

func newMemSecrets() *memSecrets { return &memSecrets{m: map[string]SecretData{}} }

func (s *memSecrets) Secret(_ context.Context, ns, name string) (SecretData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[ns+"/"+name]
	if !ok {
		return SecretData{}, fmt.Errorf("secret %s/%s is not held by this node: %w", ns, name, ErrSecretUnavailable)
	}
	d.Data = maps.Clone(d.Data)
	return d, nil
}

func (s *memSecrets) put(ref, typ string, data map[string]string) {
	mac := hmac.New(sha256.New, []byte("test checksum key"))
	bin := map[string][]byte{}
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(mac, "%d:%s%d:%s", len(k), k, len(data[k]), data[k])
		bin[k] = []byte(data[k])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[ref] = SecretData{Type: typ, Data: bin, Checksum: hex.EncodeToString(mac.Sum(nil))}
}

func (s *memSecrets) delete(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, ref)
}

// Secret values of the tests: each is searched for on disk at the end.
const (
	valueV1    = "pw-v1-6f1c2e0b-PLAINTEXT"
	valueV2    = "pw-v2-90d7a4c3-PLAINTEXT"
	valueTLS   = "tls-key-5b8e1d77-PLAINTEXT"
	valueToken = "token-%s-3c9a0f12-PLAINTEXT"
)

// shellIn runs a shell command in a pod's container and returns its
// output (exec output goes to the caller only, never to a log file).
func shellIn(t *testing.T, e *env, pod, container, script string) string {
	t.Helper()
	res, err := e.rt.Exec(testContext(t), runtime.ContainerID(pod, container), []string{"sh", "-c", script}, 10*time.Second)
	if err != nil {
		t.Fatalf("exec %q in %s/%s: %v", script, pod, container, err)
	}
	if res.Code != 0 {
		t.Fatalf("exec %q in %s/%s: exit %d: %s", script, pod, container, res.Code, res.Output)
	}
	return strings.TrimRight(string(res.Output), "\n")
}

// stateDir is the agentd state dir of env e: the log dir, the bbolt file
// and the secrets dir are in it.
func (e *env) stateDir() string { return filepath.Dir(e.logDir) }

// assertNoPlaintext searches every file under dir for the values, except
// on other mounts than dir's (the secret tmpfs).
func assertNoPlaintext(t *testing.T, dir string, values ...string) {
	t.Helper()
	var root unix.Stat_t
	if err := unix.Stat(dir, &root); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir // a tmpfs of a pod: excluded
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, v := range values {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("secret value found in %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Errorf("no file searched under %s", dir)
	}
}

func isTmpfsMount(t *testing.T, dir string) bool {
	t.Helper()
	var sfs unix.Statfs_t
	var st, parent unix.Stat_t
	if unix.Statfs(dir, &sfs) != nil || unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return sfs.Type == unix.TMPFS_MAGIC && st.Dev != parent.Dev
}

// sleeper is a command that ends promptly on SIGTERM.
var sleeper = []string{"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"}

func TestSecretFilesEnvAndUpdates(t *testing.T) {
	e := newEnv(t)
	src := newMemSecrets()
	src.put("default/db", "", map[string]string{"username": "admin", "password": valueV1})
	src.put("default/tls", spec.SecretTypeTLS, map[string]string{"tls.crt": "certificate", "tls.key": valueTLS})
	m := e.manager(t, func(c *Config) { c.Secrets = src })
	ctx := testContext(t)
	grace := int64(1)
	s := &herdv1.PodSpec{
		Name:                          "sec",
		TerminationGracePeriodSeconds: &grace,
		Containers: []*herdv1.ContainerSpec{{
			Name: "main", Image: e.ref, Command: sleeper,
			SecretMounts: []*herdv1.SecretMount{
				{Secret: "db"},
				{Secret: "default/tls", Path: "/etc/tls", Keys: []string{"tls.key"}, Uid: new(uint32(1000)), Gid: new(uint32(2000)), Mode: new(uint32(0o440))},
			},
			SecretEnv: []*herdv1.SecretEnv{{Name: "DB_PASSWORD", Secret: "default/db", Key: "password"}},
		}},
	}
	pod, _, err := m.Apply(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	running := waitFor(t, m, "sec", "running", allRunning).GetStatus().GetContainers()[0]

	// Files, modes, owners, the default path and the keys filter, seen
	// from inside the container.
	for script, want := range map[string]string{
		"cat /run/secrets/db/password":                   valueV1,
		"cat /run/secrets/db/username":                   "admin",
		"stat -L -c '%a %u %g' /run/secrets/db/password": "400 0 0",
		"ls /etc/tls":                            "tls.key",
		"cat /etc/tls/tls.key":                   valueTLS,
		"stat -L -c '%a %u %g' /etc/tls/tls.key": "440 1000 2000",
		"readlink /etc/tls/tls.key":              "..data/tls.key",
		`echo "$DB_PASSWORD"`:                    valueV1,
		"touch /run/secrets/db/x 2>/dev/null && echo writable || echo ro":          "ro",
		"grep ' /run/secrets/db ' /proc/mounts | grep -c 'ro,nosuid,nodev,noexec'": "1",
	} {
		if got := shellIn(t, e, "sec", "main", script); got != want {
			t.Errorf("%s = %q, want %q", script, got, want)
		}
	}
	firstData := shellIn(t, e, "sec", "main", "readlink /run/secrets/db/..data")
	if !strings.HasPrefix(firstData, "..") || firstData == "..data" {
		t.Errorf("..data -> %q", firstData)
	}

	// The host side is a tmpfs mount of its own: 0700, noexec, nosuid, nodev.
	dir := m.secretDir("sec", pod.GetUid())
	if !isTmpfsMount(t, dir) {
		t.Fatalf("%s is no tmpfs mount", dir)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if want := int64(unix.ST_NOEXEC | unix.ST_NOSUID | unix.ST_NODEV); sfs.Flags&want != want {
		t.Errorf("tmpfs flags %#x lack noexec, nosuid, nodev", sfs.Flags)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("tmpfs root mode = %v, %v; want 0700", fi.Mode(), err)
	}
	if size := int64(sfs.Blocks) * sfs.Bsize; size > 4<<20 {
		t.Errorf("tmpfs size %d: more than needed", size)
	}

	// An update is seen in the running container, without a restart, and
	// ..data points to a new directory; a new key appears, a removed one
	// goes.
	src.put("default/db", "", map[string]string{"password": valueV2, "port": "5432"})
	if err := m.SecretChanged(ctx, "default", "db"); err != nil {
		t.Fatal(err)
	}
	for script, want := range map[string]string{
		"cat /run/secrets/db/password":                   valueV2,
		"cat /run/secrets/db/port":                       "5432",
		"ls /run/secrets/db":                             "password\nport",
		"ls -a /run/secrets/db | grep -c '^\\.\\.2'":     "1", // the old directory is gone
		"stat -L -c '%a %u %g' /run/secrets/db/password": "400 0 0",
		`echo "$DB_PASSWORD"`:                            valueV1, // env: only at restart
	} {
		if got := shellIn(t, e, "sec", "main", script); got != want {
			t.Errorf("after update: %s = %q, want %q", script, got, want)
		}
	}
	if d := shellIn(t, e, "sec", "main", "readlink /run/secrets/db/..data"); d == firstData || !strings.HasPrefix(d, "..") {
		t.Errorf("..data -> %q after the update, was %q", d, firstData)
	}
	if c, _ := m.Get(ctx, "sec"); c.GetStatus().GetContainers()[0].GetPid() != running.GetPid() || c.GetStatus().GetContainers()[0].GetRestartCount() != 0 {
		t.Errorf("the update restarted the container: %v", c.GetStatus().GetContainers()[0])
	}
	// The same version again changes nothing.
	if err := m.SecretChanged(ctx, "default", "db"); err != nil {
		t.Fatal(err)
	}
	// Deleted from the store: the files stay.
	src.delete("default/db")
	if err := m.SecretChanged(ctx, "default", "db"); err != nil {
		t.Fatal(err)
	}
	if got := shellIn(t, e, "sec", "main", "cat /run/secrets/db/password"); got != valueV2 {
		t.Errorf("after the secret's deletion: %q", got)
	}
	if got := m.SecretUsers("default", "tls"); !slices.Equal(got, []string{"sec"}) {
		t.Errorf("SecretUsers = %v", got)
	}

	// No value anywhere in agentd's state: logs, store, secrets dir.
	assertNoPlaintext(t, e.stateDir(), valueV1, valueV2, valueTLS)

	if _, err := m.Delete(ctx, "sec", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("secret dir after delete: %v", err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); bytes.Contains(mounts, []byte(dir)) {
		t.Errorf("%s still mounted after delete", dir)
	}
	assertNoPlaintext(t, e.stateDir(), valueV1, valueV2, valueTLS)
}

func TestRestartForSecret(t *testing.T) {
	e := newEnv(t)
	src := newMemSecrets()
	token := func(v string) string { return fmt.Sprintf(valueToken, v) }
	src.put("default/api", "", map[string]string{"token": token("a")})
	src.put("default/other", "", map[string]string{"token": "x"})
	newManager := func() *Manager {
		return e.manager(t, func(c *Config) { c.Secrets = src; c.SecretRestartTimeout = 20 * time.Second })
	}
	m := newManager()
	ctx := testContext(t)
	grace := int64(5)
	mk := func(name, secret string, flag, mount bool) *herdv1.PodSpec {
		c := &herdv1.ContainerSpec{Name: "main", Image: e.ref, Command: sleeper}
		if mount {
			c.SecretMounts = []*herdv1.SecretMount{{Secret: secret, Path: "/s"}}
		} else {
			c.SecretEnv = []*herdv1.SecretEnv{{Name: "TOKEN", Secret: secret, Key: "token"}}
		}
		return &herdv1.PodSpec{Name: name, RestartOnSecretChange: flag, TerminationGracePeriodSeconds: &grace,
			Containers: []*herdv1.ContainerSpec{c, {Name: "plain", Image: e.ref, Command: sleeper}}}
	}
	specs := []*herdv1.PodSpec{
		mk("a-env", "api", true, false),
		mk("b-mount", "default/api", true, true),
		mk("c-noflag", "api", false, false),
		mk("d-other", "other", true, false),
	}
	for _, s := range specs {
		if _, _, err := m.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range specs {
		waitFor(t, m, s.Name, "running", allRunning)
	}
	counts := func() map[string]int32 {
		out := map[string]int32{}
		for _, s := range specs {
			p, _ := m.Get(ctx, s.Name)
			for _, c := range p.GetStatus().GetContainers() {
				out[s.Name+"/"+c.GetName()] = c.GetRestartCount()
			}
		}
		return out
	}
	zero := counts()
	for k, v := range zero {
		if v != 0 {
			t.Fatalf("%s restarted before the test: %d", k, v)
		}
	}

	// Dry run: the users with the flag; nothing changes.
	got, err := m.RestartForSecret(ctx, "default", "api", true)
	if err != nil || !slices.Equal(got, []string{"a-env", "b-mount"}) {
		t.Fatalf("dry run = %v, %v", got, err)
	}
	// Nothing is stale yet.
	if got, err := m.RestartForSecret(ctx, "default", "api", false); err != nil || len(got) != 0 {
		t.Fatalf("restart without a change = %v, %v", got, err)
	}
	if c := counts(); !maps.Equal(c, zero) {
		t.Fatalf("restart counts changed without a change: %v", c)
	}

	// New data: a-env and b-mount restart, one after the other; c-noflag
	// and d-other do not; neither do containers that do not use it.
	src.put("default/api", "", map[string]string{"token": token("b")})
	if err := m.SecretChanged(ctx, "default", "api"); err != nil {
		t.Fatal(err)
	}
	// Watch when each pod's main container is seen stopped.
	var mu sync.Mutex
	stopped := map[string]time.Time{}
	wctx, stopWatching := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	for _, name := range []string{"a-env", "b-mount"} {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			_, _ = m.WaitFor(wctx, name, func(p *herdv1.Pod) bool {
				if p.GetStatus().GetContainers()[0].GetState() != StateRunning {
					mu.Lock()
					if stopped[name].IsZero() {
						stopped[name] = time.Now()
					}
					mu.Unlock()
				}
				return false
			})
		}()
	}
	got, err = m.RestartForSecret(ctx, "default", "api", false)
	stopWatching()
	watchers.Wait()
	if err != nil || !slices.Equal(got, []string{"a-env", "b-mount"}) {
		t.Fatalf("RestartForSecret = %v, %v", got, err)
	}
	want := maps.Clone(zero)
	want["a-env/main"], want["b-mount/main"] = 1, 1
	if c := counts(); !maps.Equal(c, want) {
		t.Errorf("restart counts = %v, want %v", c, want)
	}
	a, _ := m.Get(ctx, "a-env")
	b, _ := m.Get(ctx, "b-mount")
	aStart := a.GetStatus().GetContainers()[0].GetStartedAt().AsTime()
	bStart := b.GetStatus().GetContainers()[0].GetStartedAt().AsTime()
	if stopped["a-env"].IsZero() || stopped["b-mount"].IsZero() {
		t.Fatalf("stops seen: %v", stopped)
	}
	if !stopped["a-env"].Before(aStart) || !stopped["b-mount"].After(aStart) || !bStart.After(stopped["b-mount"]) {
		t.Errorf("a-env stopped %s, ran again %s; b-mount stopped %s, ran again %s: not one pod at a time",
			stopped["a-env"], aStart, stopped["b-mount"], bStart)
	}
	if got := shellIn(t, e, "a-env", "main", `echo "$TOKEN"`); got != token("b") {
		t.Errorf("a-env TOKEN = %q after the restart", got)
	}
	if got := shellIn(t, e, "c-noflag", "main", `echo "$TOKEN"`); got != token("a") {
		t.Errorf("c-noflag TOKEN = %q, want the old one (no restart)", got)
	}
	if got := shellIn(t, e, "b-mount", "main", "cat /s/token"); got != token("b") {
		t.Errorf("b-mount file = %q", got)
	}
	// Once restarted, nothing is stale.
	if got, err := m.RestartForSecret(ctx, "default", "api", false); err != nil || len(got) != 0 {
		t.Errorf("second RestartForSecret = %v, %v", got, err)
	}

	// After an agentd restart, the adopted containers still know what
	// they were started with.
	m.Close()
	m = newManager()
	for _, s := range specs {
		waitFor(t, m, s.Name, "running", allRunning)
	}
	if got, err := m.RestartForSecret(ctx, "default", "api", false); err != nil || len(got) != 0 {
		t.Errorf("RestartForSecret after an agentd restart, no change = %v, %v", got, err)
	}
	src.put("default/api", "", map[string]string{"token": token("c")})
	if got, err := m.RestartForSecret(ctx, "default", "api", false); err != nil || !slices.Equal(got, []string{"a-env", "b-mount"}) {
		t.Errorf("RestartForSecret after an agentd restart = %v, %v", got, err)
	}
	if got := shellIn(t, e, "a-env", "main", `echo "$TOKEN"`); got != token("c") {
		t.Errorf("a-env TOKEN = %q after the second restart", got)
	}
	assertNoPlaintext(t, e.stateDir(), token("a"), token("b"), token("c"))
}

func TestImagePullSecret(t *testing.T) {
	e := newEnv(t, acctest.WithBasicAuth("herd", "pa55-PLAINTEXT"))
	host := e.reg.Host()
	src := newMemSecrets()
	src.put("infra/reg", spec.SecretTypeRegistry, map[string]string{"registry": host, "username": "herd", "password": "pa55-PLAINTEXT"})
	src.put("infra/elsewhere", spec.SecretTypeRegistry, map[string]string{"registry": "https://registry.example.com/", "username": "herd", "password": "pa55-PLAINTEXT"})
	src.put("infra/opaque", "", map[string]string{"registry": host, "username": "herd", "password": "pa55-PLAINTEXT"})
	// No node-level credentials: only the pod's secret can pull.
	rt := e.newRuntime(t, e.runtimeConfig())
	m := e.manager(t, func(c *Config) { c.Runtime = rt; c.Secrets = src })
	ctx := testContext(t)

	// Without the secret: no credentials.
	if _, _, err := m.Apply(ctx, e.pod("nocreds", "", "sleep", "300")); err != nil {
		t.Fatal(err)
	}
	p := waitFor(t, m, "nocreds", "in ImagePullBackOff", func(p *herdv1.Pod) bool {
		return p.GetStatus().GetContainers()[0].GetReason() == ReasonImagePullBackOff
	})
	if msg := p.GetStatus().GetContainers()[0].GetMessage(); !strings.Contains(msg, "no credentials are configured for registry "+host) {
		t.Errorf("message without credentials = %q", msg)
	}

	// A secret for another host, or of another type: refused at Apply.
	for secret, wants := range map[string][]string{
		"infra/elsewhere": {"spec.containers[0].image: image " + e.ref + " is on registry " + host, "holds credentials for registry registry.example.com only"},
		"infra/opaque":    {"spec.image_pull_secret: secret infra/opaque is of type \"\", not \"registry\""},
	} {
		s := e.pod("wrong", "", "sleep", "300")
		s.Namespace = "infra" // a pod uses only its namespace's secrets
		s.ImagePullSecret = secret
		_, _, err := m.Apply(ctx, s)
		if !errors.Is(err, ErrSecretUnavailable) || strings.Contains(err.Error(), "pa55") {
			t.Errorf("Apply with pull secret %s = %v, want ErrSecretUnavailable without the password", secret, err)
		}
		for _, w := range wants {
			if err != nil && !strings.Contains(err.Error(), w) {
				t.Errorf("Apply with pull secret %s = %v\nwant it to contain %q", secret, err, w)
			}
		}
	}

	// With it: pulled and running.
	s := e.pod("withcreds", "", "sleep", "300")
	s.Namespace = "infra"
	s.ImagePullSecret = "infra/reg"
	if _, _, err := m.Apply(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "withcreds", "running", allRunning)
	assertNoPlaintext(t, e.stateDir(), "pa55-PLAINTEXT")
}

func TestMissingSecretRefusesApply(t *testing.T) {
	e := newEnv(t)
	src := newMemSecrets()
	src.put("default/db", "", map[string]string{"password": valueV1})
	m := e.manager(t, func(c *Config) { c.Secrets = src })
	ctx := testContext(t)
	for _, tc := range []struct {
		name  string
		mut   func(*herdv1.ContainerSpec)
		wants []string
	}{
		{"missing secret", func(c *herdv1.ContainerSpec) {
			c.SecretMounts = []*herdv1.SecretMount{{Secret: "db"}, {Secret: "nope"}}
		}, []string{"spec.containers[0].secret_mounts[1].secret: secret default/nope is not held by this node"}},
		{"missing key", func(c *herdv1.ContainerSpec) {
			c.SecretMounts = []*herdv1.SecretMount{{Secret: "db", Keys: []string{"password", "user"}}}
		}, []string{`spec.containers[0].secret_mounts[0].keys[1]: secret default/db has no key "user"`}},
		{"missing env secret and key", func(c *herdv1.ContainerSpec) {
			c.SecretEnv = []*herdv1.SecretEnv{{Name: "A", Secret: "db", Key: "nokey"}, {Name: "B", Secret: "gone", Key: "k"}}
		}, []string{`spec.containers[0].secret_env[0].key: secret default/db has no key "nokey"`, "spec.containers[0].secret_env[1].secret: secret default/gone is not held"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.pod("refused", "", "sleep", "300")
			tc.mut(s.Containers[0])
			_, _, err := m.Apply(ctx, s)
			if !errors.Is(err, ErrSecretUnavailable) {
				t.Fatalf("Apply = %v, want ErrSecretUnavailable", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Apply = %v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), valueV1) {
				t.Errorf("error carries a value: %v", err)
			}
			if _, err := m.Get(ctx, "refused"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after a refused Apply = %v", err)
			}
			if list, err := e.rt.ListManaged(ctx); err != nil || len(list) != 0 {
				t.Errorf("containers after a refused Apply: %v, %v", list, err)
			}
			for _, d := range []string{e.logDir, m.cfg.SecretsDir} {
				if entries, _ := os.ReadDir(d); len(entries) != 0 {
					t.Errorf("%s after a refused Apply: %v", d, entries)
				}
			}
			if pods, err := e.st.ListPods(); err != nil || len(pods) != 0 {
				t.Errorf("stored pods after a refused Apply: %v, %v", pods, err)
			}
		})
	}
	// Without a secret store, a pod with secrets is refused too.
	m2 := e.manager(t, func(c *Config) { c.LogDir = filepath.Join(t.TempDir(), "logs") })
	s := e.pod("nostore", "", "sleep", "300")
	s.Containers[0].SecretEnv = []*herdv1.SecretEnv{{Name: "A", Secret: "db", Key: "password"}}
	if _, _, err := m2.Apply(ctx, s); !errors.Is(err, ErrSecretUnavailable) || !strings.Contains(err.Error(), "no secret store") {
		t.Errorf("Apply without a secret store = %v", err)
	}
}

func TestSecretTmpfsGC(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(c *Config) { c.GCInterval = time.Hour })
	ctx := testContext(t)
	// A leftover tmpfs of a pod incarnation herd does not run.
	ghost := m.secretDir("ghost", "0000")
	v := newSecretVolume(ghost, "ghost_0000")
	if err := v.write([]mountFiles{{subdir: "c.0", files: map[string][]byte{"k": []byte(valueV1)}, mode: 0o400, checksum: "x"}}, false); err != nil {
		t.Fatal(err)
	}
	if !isTmpfsMount(t, ghost) {
		t.Fatal("the leftover is no tmpfs mount")
	}
	// A directory with the same shape that is not herd's tmpfs.
	foreign := m.secretDir("foreign", "1111")
	if err := os.MkdirAll(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A tmpfs without the marker is not touched either.
	unmarked := m.secretDir("unmarked", "2222")
	if err := os.MkdirAll(unmarked, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", unmarked, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(unmarked, unix.MNT_DETACH) })
	// All three are of deleted incarnations: GC looks at them.
	for _, inc := range []incarnation{{"ghost", "0000"}, {"foreign", "1111"}, {"unmarked", "2222"}} {
		if err := m.addTombstone(inc.pod, inc.uid); err != nil {
			t.Fatal(err)
		}
	}

	_ = m.GC(ctx)
	if _, err := os.Stat(ghost); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover tmpfs after GC: %v", err)
	}
	if _, err := os.Stat(filepath.Join(foreign, "keep")); err != nil {
		t.Errorf("foreign dir touched by GC: %v", err)
	}
	if !isTmpfsMount(t, unmarked) {
		t.Error("unmarked tmpfs unmounted by GC")
	}
	// Writing where no tmpfs is refused: a mount point that is a plain
	// directory is mounted over, never written to.
	plain := newSecretVolume(foreign, "foreign_1111")
	if _, err := plain.open(); !errors.Is(err, errNotMounted) {
		t.Errorf("open of a plain directory = %v, want errNotMounted", err)
	}
	if err := plain.remove(); err == nil || !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("remove of a non-empty plain directory = %v, want ENOTEMPTY", err)
	}
}
