package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// A test CA for the package: every test node signs its gossip with a node
// certificate of it, as agentd's nodes do.
var (
	caOnce   sync.Once
	testCA   *pki.CA
	caErr    error
	certsMu  sync.Mutex
	certsFor = map[string]*tls.Certificate{}
)

func nodeCert(t *testing.T, ca *pki.CA, name string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueNode(name, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		t.Fatal(err)
	}
	return &pair
}

func theCA(t *testing.T) *pki.CA {
	t.Helper()
	caOnce.Do(func() { testCA, caErr = pki.NewCA("herd test CA") })
	if caErr != nil {
		t.Fatal(caErr)
	}
	return testCA
}

// certOf is the test CA's node certificate of name (one per name).
func certOf(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	ca := theCA(t)
	certsMu.Lock()
	defer certsMu.Unlock()
	if c := certsFor[name]; c != nil {
		return c
	}
	c := nodeCert(t, ca, name)
	certsFor[name] = c
	return c
}

func roots(t *testing.T) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(theCA(t).Cert)
	return p
}

func testIdentity(t *testing.T, name string) *Identity {
	cert := certOf(t, name)
	return &Identity{Roots: roots(t), Current: func() *tls.Certificate { return cert }}
}

func withIdentity(id *Identity) nodeOpt { return func(c *Config) { c.Identity = id } }

// signEnv signs every item of env as its writer or owner would, with the
// test CA's certificates, and attaches them.
func signEnv(t *testing.T, env envelope) envelope {
	t.Helper()
	var certs [][]byte
	seen := map[string]bool{}
	as := func(name string, msg []byte) ([]byte, []byte) {
		cert := certOf(t, name)
		fp, sig, err := sign(cert, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !seen[name] {
			seen[name] = true
			certs = append(certs, cert.Certificate[0])
		}
		return []byte(fp), sig
	}
	for i := range env.Objects {
		w := &env.Objects[i]
		w.FP, w.Sig = as(w.Writer, objectMsg(w))
	}
	for i := range env.Entries {
		w := &env.Entries[i]
		w.FP, w.Sig = as(w.Owner, entryMsg(w))
	}
	env.Certs = append(env.Certs, certs...)
	return env
}

// signWith signs env's items with cert, whoever they name.
func signWith(t *testing.T, cert *tls.Certificate, env envelope) envelope {
	t.Helper()
	for i := range env.Objects {
		w := &env.Objects[i]
		fp, sig, err := sign(cert, objectMsg(w))
		if err != nil {
			t.Fatal(err)
		}
		w.FP, w.Sig = []byte(fp), sig
	}
	for i := range env.Entries {
		w := &env.Entries[i]
		fp, sig, err := sign(cert, entryMsg(w))
		if err != nil {
			t.Fatal(err)
		}
		w.FP, w.Sig = []byte(fp), sig
	}
	env.Certs = append(env.Certs, cert.Certificate[0])
	return env
}

// deliverRaw is deliver without signing.
func deliverRaw(t *testing.T, c *Cluster, pushPull bool, env envelope) {
	t.Helper()
	if pushPull {
		env.From, env.Full = "z", true
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if pushPull {
		(*delegate)(c).MergeRemoteState(b, false)
	} else {
		(*delegate)(c).NotifyMsg(b)
	}
}

// TestGossipBoundToIdentity: a member that holds the gossip key and a node
// certificate of its own cannot publish entries (endpoints, labels) or
// objects (a pod CIDR claim, a service) in another member's name, through
// gossip or push/pull; neither can a process whose certificate is not the
// cluster CA's, nor one that does not sign; a revoked certificate stops
// counting. What it publishes in its own name goes through.
func TestGossipBoundToIdentity(t *testing.T) {
	var revoked atomic.Value // serial of a revoked certificate
	revoked.Store("")
	isRevoked := func(c *x509.Certificate) bool { return c.SerialNumber.String() == revoked.Load().(string) }
	idB := testIdentity(t, "b")
	idB.Revoked = isRevoked
	a := newNode(t, "a")
	b := newNode(t, "b", withIdentity(idB))
	m := newNode(t, "m")
	join(t, a)
	join(t, b, a)
	join(t, m, a)
	waitMembers(t, []string{"a", "b", "m"}, a, b, m)

	mCert := certOf(t, "m")
	otherCA, err := pki.NewCA("not the cluster's CA")
	if err != nil {
		t.Fatal(err)
	}
	foreignA := nodeCert(t, otherCA, "a") // right name, wrong CA

	aEpoch := a.epoch
	forged := func(key string) envelope {
		return envelope{
			Entries: []wireEntry{
				{Owner: "a", Epoch: aEpoch, Seq: uint64(aEpoch) + 1<<20, Kind: "endpoint", Key: key, Value: []byte("10.244.9.9")},
				{Owner: "a", Epoch: aEpoch, Seq: uint64(aEpoch) + 1<<20 + 1, Kind: kindLabels, Key: "", Value: []byte(`{"secrets":"yes"}`)},
			},
			Objects: []wireObject{
				{Kind: kindPodCIDR, Key: "a", Value: []byte("10.244.200.0/24"), Version: clockOf(b) + 10, Writer: "a"},
				{Kind: "service", Key: "default/" + key, Value: []byte("forged"), Version: clockOf(b) + 10, Writer: "a"},
			},
		}
	}
	wantNone := func(t *testing.T, how, key string) {
		t.Helper()
		if seq, ok := b.EntrySeq("a", "endpoint", key); ok && seq > uint64(aEpoch)+1<<19 {
			t.Errorf("%s: b took a forged endpoint of a (seq %d)", how, seq)
		}
		if seq, ok := b.EntrySeq("a", kindLabels, ""); ok && seq > uint64(aEpoch)+1<<19 {
			t.Errorf("%s: b took forged labels of a (seq %d)", how, seq)
		}
		if o, ok := b.Get("service", "default/"+key); ok {
			t.Errorf("%s: b took a forged service written as a: %+v", how, o)
		}
		if o, ok := b.Get(kindPodCIDR, "a"); ok && string(o.Value) == "10.244.200.0/24" {
			t.Errorf("%s: b took a forged pod CIDR claim of a", how)
		}
	}
	for i, tc := range []struct {
		name string
		sign func(envelope) envelope
	}{
		{"another member's certificate", func(e envelope) envelope { return signWith(t, mCert, e) }},
		{"a certificate of another CA with the owner's name", func(e envelope) envelope { return signWith(t, foreignA, e) }},
		{"unsigned", func(e envelope) envelope { return e }},
	} {
		for _, pushPull := range []bool{false, true} {
			key := fmt.Sprintf("f%d-%v", i, pushPull)
			deliverRaw(t, b, pushPull, tc.sign(forged(key)))
			wantNone(t, fmt.Sprintf("%s (push/pull %v)", tc.name, pushPull), key)
		}
	}

	// Through real gossip: m relays the forgeries, then publishes in its
	// own name. Once m's own entry and object reached b, the forgeries
	// (sent first) had their chance.
	env := signWith(t, mCert, forged("gossip"))
	m.broadcast("forged-e", envelope{Entries: env.Entries, Certs: env.Certs})
	m.broadcast("forged-o", envelope{Objects: env.Objects, Certs: env.Certs})
	if err := m.PublishLocal("endpoint", "m-own", []byte("10.244.1.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Put("service", "default/m-own", []byte("m")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() string {
		if _, ok := b.EntrySeq("m", "endpoint", "m-own"); !ok {
			return "b has not m's own endpoint"
		}
		if _, ok := b.Get("service", "default/m-own"); !ok {
			return "b has not m's service"
		}
		return ""
	})
	time.Sleep(time.Second) // a few more gossip rounds for the forgeries
	wantNone(t, "gossip", "gossip")

	// A revoked certificate's later entries are refused.
	revoked.Store(mCert.Leaf.SerialNumber.String())
	if err := m.PublishLocal("endpoint", "after-revoke", []byte("10.244.1.2")); err != nil {
		t.Fatal(err)
	}
	if err := a.PublishLocal("endpoint", "a-control", []byte("10.244.0.2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() string {
		if _, ok := b.EntrySeq("a", "endpoint", "a-control"); !ok {
			return "b has not a's entry"
		}
		return ""
	})
	time.Sleep(time.Second)
	if _, ok := b.EntrySeq("m", "endpoint", "after-revoke"); ok {
		t.Error("b took an entry signed with a revoked certificate")
	}
	if _, ok := a.EntrySeq("m", "endpoint", "after-revoke"); !ok {
		t.Error("a (no deny list) did not get m's entry: the control failed")
	}
}

// TestItemWaitsForItsCertificate: an entry that arrives before the
// certificate that signs it is kept and merged once the certificate comes.
func TestItemWaitsForItsCertificate(t *testing.T) {
	a := newNode(t, "a")
	join(t, a)
	now := time.Now().UnixNano()
	env := signEnv(t, envelope{Entries: []wireEntry{{Owner: "late", Epoch: now, Seq: uint64(now) + 1, Kind: "endpoint", Key: "x", Value: []byte("v")}}})
	certs := env.Certs
	env.Certs = nil
	deliverRaw(t, a, false, env)
	if _, ok := a.EntrySeq("late", "endpoint", "x"); ok {
		t.Fatal("merged before its certificate was known")
	}
	deliverRaw(t, a, false, envelope{Certs: certs})
	if _, ok := a.EntrySeq("late", "endpoint", "x"); !ok {
		t.Fatal("not merged once its certificate came")
	}
}

// TestObjectsOfAGoneWriterStillVerify: the certificates of objects' writers
// are saved with the objects and sent in push/pull, so a member that joins
// after the writer left (and after the member it joins restarted) still
// takes its objects.
func TestObjectsOfAGoneWriterStillVerify(t *testing.T) {
	pb := &MemPersister{}
	a := newNode(t, "a")
	b := newNode(t, "b", withPersist(pb))
	join(t, a)
	join(t, b, a)
	if _, err := a.Put("service", "default/web", []byte("by a")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, objectEverywhere("service", "default/web", []byte("by a"), b))
	_ = a.Shutdown()
	_ = b.Shutdown()

	b2 := newNode(t, "b", withPersist(pb))
	join(t, b2)
	c := newNode(t, "c")
	join(t, c, b2)
	eventually(t, 20*time.Second, objectEverywhere("service", "default/web", []byte("by a"), c))
	if o, _ := c.Get("service", "default/web"); o.Writer != "a" {
		t.Errorf("writer %q, want a", o.Writer)
	}
}

// TestUnsignedStoreIsResigned: objects an earlier version saved unsigned
// are signed by the node that loads them (its own name as writer), so
// members take them; with AllowUnsigned, unsigned items are merged.
func TestUnsignedStoreIsResigned(t *testing.T) {
	old, err := json.Marshal(persisted{Clock: 5, SavedAt: time.Now().UnixNano(), Objects: []persistedObject{
		{wireObject: wireObject{Kind: "service", Key: "default/old", Value: []byte("legacy"), Version: 5, Writer: "gone"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := &MemPersister{}
	if err := p.Save(old); err != nil {
		t.Fatal(err)
	}
	a := newNode(t, "a", withPersist(p))
	join(t, a)
	b := newNode(t, "b")
	join(t, b, a)
	eventually(t, 20*time.Second, objectEverywhere("service", "default/old", []byte("legacy"), b))
	if o, _ := b.Get("service", "default/old"); o.Writer != "a" || o.Version != 5 {
		t.Errorf("got writer %q version %d, want a, 5", o.Writer, o.Version)
	}

	idL := testIdentity(t, "lenient")
	idL.AllowUnsigned = true
	l := newNode(t, "lenient", withIdentity(idL))
	join(t, l)
	now := time.Now().UnixNano()
	deliverRaw(t, l, false, envelope{Entries: []wireEntry{{Owner: "old", Epoch: now, Seq: uint64(now) + 1, Kind: "endpoint", Key: "x", Value: []byte("v")}}})
	if _, ok := l.EntrySeq("old", "endpoint", "x"); !ok {
		t.Error("AllowUnsigned: an unsigned entry was refused")
	}
}

// TestIdentityMustBeTheNodes: a certificate of another name, or of another
// CA, is refused at start (members would refuse all it signs).
func TestIdentityMustBeTheNodes(t *testing.T) {
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
	}{
		{"another node's certificate", certOf(t, "someone-else")},
		{"another CA's certificate", nodeCert(t, other, "x")},
	} {
		cfg := Config{NodeName: "x", BindAddr: "127.0.0.1", SecretKey: testKey, ClusterCIDR: testCluster, NodeCIDRBits: 24, Persist: &MemPersister{},
			Identity: &Identity{Roots: roots(t), Current: func() *tls.Certificate { return tc.cert }}}
		if c, err := New(cfg); err == nil {
			_ = c.Shutdown()
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}
