package secrets

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/store"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// recordingPods stands in for the pod manager (agentd/pods has its own
// tests on containerd): it records what replication tells it.
type recordingPods struct {
	mu       sync.Mutex
	changed  []string
	restarts []string
	users    []string // pod names that restart for any secret
}

func (p *recordingPods) SecretChanged(_ context.Context, ns, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changed = append(p.changed, ns+"/"+name)
	return nil
}

func (p *recordingPods) RestartForSecret(_ context.Context, ns, name string, dryRun bool) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !dryRun {
		p.restarts = append(p.restarts, ns+"/"+name)
	}
	return slices.Clone(p.users), nil
}

func (p *recordingPods) changes(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.changed {
		if c == key {
			n++
		}
	}
	return n
}

type tnode struct {
	name   string
	dir    string
	cl     *cluster.Cluster
	st     *store.Store
	kms    *FileKMS
	rep    *Replicator
	pods   *recordingPods
	mu     sync.Mutex
	labels map[string]string
}

func (n *tnode) getLabels() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.labels)
}

func (n *tnode) setLabels(t *testing.T, l map[string]string) {
	t.Helper()
	n.mu.Lock()
	n.labels = l
	n.mu.Unlock()
	if err := n.cl.SetLabels(l); err != nil {
		t.Fatal(err)
	}
	n.rep.Kick()
}

var (
	testGossipKey = bytes.Repeat([]byte{7}, 32)
	nextIP        = 1
	ipMu          sync.Mutex
)

// logTo writes a node's logs to a file, so the test can search them.
func logTo(t *testing.T, path string) *slog.Logger {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func startNode(t *testing.T, name string, labels map[string]string, join ...*tnode) *tnode {
	t.Helper()
	return startNodeWith(t, name, labels, 0, join...)
}

func startNodeWith(t *testing.T, name string, labels map[string]string, restartTimeout time.Duration, join ...*tnode) *tnode {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := logTo(t, filepath.Join(dir, "agentd.log"))
	kms, err := OpenFileKMS(filepath.Join(dir, "keys"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kms.Close() })
	ipMu.Lock()
	ip := fmt.Sprintf("192.0.2.%d", nextIP)
	nextIP++
	ipMu.Unlock()
	cl, err := cluster.New(cluster.Config{
		NodeName: name, BindAddr: "127.0.0.1", SecretKey: testGossipKey,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeCIDRBits: 24,
		NodeIP: netip.MustParseAddr(ip), Persist: &cluster.MemPersister{}, Logger: log,
		Tune: func(mc *memberlist.Config) {
			mc.ProbeInterval = 300 * time.Millisecond
			mc.ProbeTimeout = 200 * time.Millisecond
			mc.GossipInterval = 20 * time.Millisecond
			mc.PushPullInterval = time.Second
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Shutdown() })
	n := &tnode{name: name, dir: dir, cl: cl, st: st, kms: kms, pods: &recordingPods{}, labels: labels}
	rep, err := NewReplicator(Config{
		Vault: NewVault(st, kms), Peers: newMemPeers(t, cl), Pods: n.pods, Labels: n.getLabels,
		ClusterKey: DeriveClusterKey(testGossipKey), Resync: time.Second, Logger: log,
		RestartTimeout: restartTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.rep = rep
	if err := cl.SetLabels(labels); err != nil {
		t.Fatal(err)
	}
	if len(join) > 0 {
		var addrs []string
		for _, j := range join {
			addrs = append(addrs, j.cl.Addr().String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := cl.Join(ctx, addrs); err != nil {
			t.Fatal(err)
		}
	} else if _, err := cl.Join(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep.Start(ctx)
	t.Cleanup(func() { cancel(); rep.Close() })
	return n
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// seesLabels waits until every node sees every other's labels.
func seesLabels(t *testing.T, ns ...*tnode) {
	t.Helper()
	eventually(t, "labels everywhere", func() error {
		for _, a := range ns {
			for _, b := range ns {
				found := false
				for _, m := range a.cl.Members() {
					if m.Name == b.name && m.State == cluster.StateAlive && maps.Equal(m.Labels, b.getLabels()) {
						found = true
					}
				}
				if !found && a != b {
					return fmt.Errorf("%s does not see %s with %v", a.name, b.name, b.getLabels())
				}
			}
		}
		return nil
	})
}

func holds(n *tnode, key string, want []byte) error {
	_, data, err := n.rep.Reveal(context.Background(), strings.Split(key, "/")[0], strings.Split(key, "/")[1])
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	if !bytes.Equal(data["password"], want) {
		return fmt.Errorf("%s holds another value", n.name)
	}
	return nil
}

func lacks(n *tnode, key string) error {
	if _, ok, _ := n.rep.cfg.Vault.Get(key); ok {
		rec, _, _ := n.rep.cfg.Vault.Get(key)
		if !rec.Deleted {
			return fmt.Errorf("%s still holds %s", n.name, key)
		}
	}
	return nil
}

func randomValue() []byte {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return []byte("pw-" + hex.EncodeToString(b))
}

func TestReplication(t *testing.T) {
	ctx := context.Background()
	db := map[string]string{"role": "db"}
	a := startNode(t, "node-a", db)
	b := startNode(t, "node-b", db, a)
	c := startNode(t, "node-c", map[string]string{"role": "web"}, a)
	seesLabels(t, a, b, c)

	const name = "dbpass-7f3a9c"
	key := "default/" + name
	v1 := randomValue()
	spec := Spec{Namespace: "default", Name: name, Type: "opaque", Data: map[string][]byte{"password": v1}, Selector: db}

	// Written through the outsider: it relays without keeping anything.
	view, changed, _, err := c.rep.Apply(ctx, spec, false)
	if err != nil || !changed {
		t.Fatalf("Apply via outsider: changed=%v err=%v", changed, err)
	}
	if got := slices.Sorted(maps.Keys(view.Holders)); !slices.Equal(got, []string{"node-a", "node-b"}) || !view.Synced {
		t.Fatalf("holders %v synced %v, want node-a node-b synced", got, view.Synced)
	}
	if !strings.HasPrefix(view.Rec.Checksum, ChecksumPrefix) || view.Rec.Checksum != Checksum(DeriveClusterKey(testGossipKey), spec.Data) {
		t.Fatalf("checksum %q is not the keyed checksum of the data", view.Rec.Checksum)
	}
	for _, n := range []*tnode{a, b} {
		if err := holds(n, key, v1); err != nil {
			t.Fatal(err)
		}
		if n.pods.changes(key) != 1 {
			t.Errorf("%s: pods told %d times of the new secret, want 1", n.name, n.pods.changes(key))
		}
	}
	if _, _, err := c.rep.Reveal(ctx, "default", name); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("outsider Reveal: %v, want ErrNotHeld", err)
	}
	if why, nf := c.rep.Why(ctx, "default", name); nf || !strings.Contains(why, "outside the node_selector") {
		t.Fatalf("outsider Why = %q, %v", why, nf)
	}

	t.Run("same spec is no change", func(t *testing.T) {
		_, changed, _, err := a.rep.Apply(ctx, spec, false)
		if err != nil || changed {
			t.Fatalf("changed=%v err=%v", changed, err)
		}
	})

	t.Run("get and list from any node", func(t *testing.T) {
		for _, n := range []*tnode{a, c} {
			v, err := n.rep.Get(ctx, "default", name)
			if err != nil || v.Rec.Version != view.Rec.Version || !v.Synced || len(v.Holders) != 2 {
				t.Fatalf("%s Get: %+v %v", n.name, v, err)
			}
			l, err := n.rep.List(ctx, "")
			if err != nil || len(l) != 1 || l[0].Rec.Name != name {
				t.Fatalf("%s List: %+v %v", n.name, l, err)
			}
		}
		if _, err := c.rep.Get(ctx, "default", "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get missing: %v", err)
		}
	})

	v2 := randomValue()
	t.Run("new data reaches holders and restarts their users one node after another", func(t *testing.T) {
		a.pods.users = []string{"web-a"}
		b.pods.users = []string{"web-b"}
		s2 := spec
		s2.Data = map[string][]byte{"password": v2}
		_, _, planned, err := c.rep.Apply(ctx, s2, true)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(planned) != "[{node-a web-a} {node-b web-b}]" {
			t.Fatalf("dry run restarts %v", planned)
		}
		if err := holds(a, key, v1); err != nil {
			t.Fatalf("dry run changed data: %v", err)
		}
		v, changed, restarted, err := c.rep.Apply(ctx, s2, false)
		if err != nil || !changed || v.Rec.Version != view.Rec.Version+1 {
			t.Fatalf("changed=%v version=%d err=%v", changed, v.Rec.Version, err)
		}
		if fmt.Sprint(restarted) != fmt.Sprint(planned) {
			t.Fatalf("restarted %v, planned %v", restarted, planned)
		}
		for _, n := range []*tnode{a, b} {
			if err := holds(n, key, v2); err != nil {
				t.Fatal(err)
			}
		}
		a.pods.users, b.pods.users = nil, nil
		spec = s2
	})

	t.Run("refusals", func(t *testing.T) {
		bad := spec
		bad.Type = "basic-auth"
		if _, _, _, err := a.rep.Apply(ctx, bad, false); !errors.Is(err, ErrTypeChange) {
			t.Errorf("type change: %v", err)
		}
		none := spec
		none.Name = "nowhere"
		none.Selector = map[string]string{"role": "gpu"}
		if _, _, _, err := a.rep.Apply(ctx, none, false); !errors.Is(err, ErrNoHolder) {
			t.Errorf("selector matching no member: %v", err)
		}
		imm := Spec{Namespace: "default", Name: "frozen", Type: "opaque", Data: map[string][]byte{"k": []byte("v")}, Immutable: true}
		if _, _, _, err := a.rep.Apply(ctx, imm, false); err != nil {
			t.Fatal(err)
		}
		imm.Data = map[string][]byte{"k": []byte("w")}
		if _, _, _, err := b.rep.Apply(ctx, imm, false); !errors.Is(err, ErrImmutable) {
			t.Errorf("immutable data change: %v", err)
		}
		for _, err := range []error{ErrTypeChange, ErrNoHolder, ErrImmutable} {
			if strings.Contains(err.Error(), string(v2)) {
				t.Fatal("an error carries the value")
			}
		}
	})

	t.Run("late joiner matching the selector receives it", func(t *testing.T) {
		d := startNode(t, "node-d", db, a)
		eventually(t, "node-d holds the secret", func() error { return holds(d, key, v2) })
		if err := lacks(c, key); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("key rotation keeps every secret readable", func(t *testing.T) {
		old := a.kms.CurrentKeyID()
		id, err := a.kms.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := a.rep.RotateKey(ctx)
		if err != nil || n < 1 {
			t.Fatalf("rewrapped %d: %v", n, err)
		}
		ids, err := a.rep.cfg.Vault.KeyIDs()
		if err != nil || ids[old] != 0 || ids[id] != n {
			t.Fatalf("key ids after rotation %v (old %s new %s): %v", ids, old, id, err)
		}
		if err := a.kms.Retire(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := holds(a, key, v2); err != nil {
			t.Fatalf("after rotation and retiring the old key: %v", err)
		}
	})

	t.Run("plaintext is on no disk and in no log; the outsider has no trace", func(t *testing.T) {
		for _, n := range []*tnode{a, b, c} {
			for _, v := range [][]byte{v1, v2} {
				if hits := acctest.GrepFiles(t, n.dir, v); len(hits) > 0 {
					t.Errorf("%s: value found in %v", n.name, hits)
				}
			}
		}
		if hits := acctest.GrepFiles(t, c.dir, []byte(name)); len(hits) > 0 {
			t.Errorf("outsider %s: secret name found in %v", c.name, hits)
		}
		if hits := acctest.GrepFiles(t, a.dir, []byte(name)); len(hits) == 0 {
			t.Errorf("holder %s: secret name not found anywhere (is the search working?)", a.name)
		}
	})

	t.Run("selector change moves the secret", func(t *testing.T) {
		s3 := spec
		s3.Selector = map[string]string{"role": "web"}
		v, _, _, err := a.rep.Apply(ctx, s3, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(v.Holders)); !slices.Equal(got, []string{"node-c"}) {
			t.Fatalf("holders after selector change: %v", got)
		}
		if err := holds(c, key, v2); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*tnode{a, b} {
			if err := lacks(n, key); err != nil {
				t.Fatal(err)
			}
		}
		spec = s3
	})

	t.Run("a node whose labels stop matching drops it after handing it over", func(t *testing.T) {
		b.setLabels(t, map[string]string{"role": "web"})
		seesLabels(t, a, b, c)
		eventually(t, "node-b receives it", func() error { return holds(b, key, v2) })
		c.setLabels(t, map[string]string{"role": "cache"})
		eventually(t, "node-c drops it", func() error { return lacks(c, key) })
		if err := holds(b, key, v2); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("delete removes it from every holder", func(t *testing.T) {
		existed, err := a.rep.Delete(ctx, "default", name, "")
		if err != nil || !existed {
			t.Fatalf("existed=%v err=%v", existed, err)
		}
		for _, n := range []*tnode{a, b, c} {
			if err := lacks(n, key); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.rep.Get(ctx, "default", name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after delete: %v", err)
		}
		existed, err = c.rep.Delete(ctx, "default", name, "")
		if err != nil || existed {
			t.Fatalf("second delete existed=%v err=%v", existed, err)
		}
	})
}

// TestStaleUsersRestartWhenTheWriterDoesNot: a version pushed without the
// writer's restarts (the writer died mid-way) restarts the holder's users
// by itself once the writer's restarts would long be over, and only then.
func TestStaleUsersRestartWhenTheWriterDoesNot(t *testing.T) {
	ctx := context.Background()
	a := startNodeWith(t, "stale-a", nil, 2*time.Second)
	b := startNodeWith(t, "stale-b", nil, 2*time.Second, a)
	seesLabels(t, a, b)
	spec := Spec{Namespace: "default", Name: "tok", Type: "opaque", Data: map[string][]byte{"password": randomValue()}}
	v, _, _, err := a.rep.Apply(ctx, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	b.pods.users = []string{"user-b"}
	// What the writer does before it restarts anyone, and no more.
	rec := v.Rec
	rec.Version++
	rec.UpdatedAt = time.Now().UTC()
	data := map[string][]byte{"password": randomValue()}
	rec.Checksum = Checksum(DeriveClusterKey(testGossipKey), data)
	if got := a.rep.push(ctx, rec, data, []string{"stale-b"}, true); !got["stale-b"].Same(rec) {
		t.Fatalf("push: %v", got)
	}
	restarted := func() int {
		b.pods.mu.Lock()
		defer b.pods.mu.Unlock()
		return len(b.pods.restarts)
	}
	if n := restarted(); n != 0 && time.Since(rec.UpdatedAt) < 2*time.Second {
		t.Fatalf("restarted at once (%d), before the writer's time was up", n)
	}
	eventually(t, "stale-b restarts its users by itself", func() error {
		if restarted() == 0 {
			return errors.New("no restart yet")
		}
		return nil
	})
}
