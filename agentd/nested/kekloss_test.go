package nested

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// A cluster whose key-encryption key was replaced (--new-kek) is frozen:
// Failed with a message that says why and what to do, no job, no host
// object touched, no new CA on apply, no kubeconfig, its sealed PKI kept
// byte for byte. Putting the old key file back thaws it; frozen again, it
// can still be deleted.
func TestKEKLostFreezes(t *testing.T) {
	e := newEnv(t)
	const name = "lost"
	ns := e.d.namespaceFor(name)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{
		LBIPs: []string{loopbackIP()}, FailVM: map[string]string{"lost-cp-0": "ImageBroken"},
	})
	defer stop()
	ctx := context.Background()
	sp := testSpec(name, 1)
	sp.KeepOnFailure = true // a Failed cluster that is not built: an apply would retry it
	if _, _, err := e.d.Apply(ctx, sp); err != nil {
		t.Fatal(err)
	}
	before := e.waitPhase(t, name, PhaseFailed, 60*time.Second).GetStatus()
	stop() // from here on, only the driver could write to the host
	kc, err := e.d.Kubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	objects := e.hostVersions(t, ns, name)
	sealed := e.sealedOf(t, name)
	keyID := e.kms.CurrentKeyID()
	kekFile := filepath.Join(e.stateDir, "keys", "kek-"+keyID)
	kek, err := os.ReadFile(kekFile)
	if err != nil {
		t.Fatal(err)
	}

	// The key file goes; what the check at start sees.
	e.close()
	if err := os.Remove(kekFile); err != nil {
		t.Fatal(err)
	}
	e.newKEK = true
	e.open(t)
	e.newKEK = false
	frozen := func(t *testing.T) {
		t.Helper()
		c, err := e.d.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st := c.GetStatus()
		if st.GetPhase() != PhaseFailed || st.GetMessage() != ErrKEKLost.Error() || st.GetCaCertificate() != before.GetCaCertificate() {
			t.Fatalf("status %v", st)
		}
		if _, err := e.d.Kubeconfig(ctx, name); !errors.Is(err, ErrKEKLost) {
			t.Fatalf("kubeconfig of a frozen cluster: %v", err)
		}
		if !bytes.Equal(e.sealedOf(t, name), sealed) {
			t.Fatal("the sealed PKI changed")
		}
		if got := e.hostVersions(t, ns, name); !maps.Equal(got, objects) {
			t.Fatalf("host objects changed: %v, were %v", got, objects)
		}
	}
	frozen(t)
	if !strings.Contains(ErrKEKLost.Error(), "delete and recreate") || !strings.Contains(ErrKEKLost.Error(), "restore the old key-encryption key") {
		t.Fatalf("the message does not say what to do: %s", ErrKEKLost)
	}

	// An apply neither retries (a new CA) nor scales; protection can go.
	sp.DeletionProtection = false
	if _, changed, err := e.d.Apply(ctx, sp); err != nil || !changed {
		t.Fatalf("lift deletion protection: changed=%v %v", changed, err)
	}
	more := testSpec(name, 2)
	more.KeepOnFailure, more.DeletionProtection = true, false
	if _, _, err := e.d.Apply(ctx, more); !errors.Is(err, ErrKEKLost) {
		t.Fatalf("scale a frozen cluster: %v", err)
	}
	e.d.mu.Lock()
	job := e.d.clusters[name].done
	e.d.mu.Unlock()
	if job != nil {
		t.Fatal("a job was started for a frozen cluster")
	}
	frozen(t)
	if n, err := e.d.RewrapKeys(ctx); err != nil || n != 0 {
		t.Fatalf("RewrapKeys = %d, %v; want the frozen cluster skipped", n, err)
	}

	// Stays frozen over a plain restart.
	e.close()
	e.open(t)
	frozen(t)

	// The old key file back: the cluster is what it was.
	e.close()
	if err := os.WriteFile(kekFile, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	c, err := e.d.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.GetStatus(); st.GetPhase() != PhaseFailed || st.GetMessage() != before.GetMessage() || st.GetStep() != before.GetStep() {
		t.Fatalf("after restoring the key: %v, want %v", st, before)
	}
	if got, err := e.d.Kubeconfig(ctx, name); err != nil || !bytes.Equal(got, kc) {
		t.Fatalf("kubeconfig after restoring the key: %v", err)
	}

	// Lost again, and deleted: every marked host object goes.
	e.close()
	if err := os.Remove(kekFile); err != nil {
		t.Fatal(err)
	}
	e.newKEK = true
	e.open(t)
	e.newKEK = false
	frozen(t)
	if existed, err := e.d.Delete(ctx, name, ""); err != nil || !existed {
		t.Fatalf("delete a frozen cluster: %v %v", existed, err)
	}
	if got := e.markedObjects(t, ns, name); len(got) != 0 || !e.namespaceGone(t, ns) {
		t.Fatalf("after delete: %v", got)
	}
	if v, err := e.st.GetNestedCluster(name); err != nil || v != nil {
		t.Fatalf("the record outlived the delete: %v", err)
	}
}

// CheckSealed names the clusters whose material does not open, and only
// those that still need it.
func TestCheckSealed(t *testing.T) {
	dir := t.TempDir()
	kms, err := secrets.OpenFileKMS(filepath.Join(dir, "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kms.Close()
	other, err := secrets.OpenFileKMS(filepath.Join(dir, "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	st := memStore{}
	d := &Driver{cfg: Config{Node: "n1", KMS: kms}}
	put := func(name, phase string, k secrets.KMS, frozen bool, sealed []byte) {
		r := &record{UID: "u-" + name, Phase: phase, spec: testSpec(name, 0)}
		if sealed == nil && k != nil {
			d.cfg.KMS = k
			if sealed, err = d.seal(context.Background(), name, r.UID, &material{Token: "t"}); err != nil {
				t.Fatal(err)
			}
		}
		r.Sealed = sealed
		if frozen {
			r.KEKLost = &kekLost{Phase: PhaseReady}
		}
		st.put(t, r)
	}
	put("ok", PhaseReady, kms, false, nil)
	put("unsealed", PhaseCreating, nil, false, nil)
	put("foreign-key", PhaseReady, other, false, nil)
	put("malformed", PhaseFailed, nil, false, []byte("not sealed"))
	put("frozen", PhaseFailed, other, true, nil)
	put("deleting", PhaseDeleting, other, false, nil)

	got, err := CheckSealed(context.Background(), "n1", st, kms)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range got {
		names = append(names, u.Cluster)
		if u.Err == nil {
			t.Errorf("%s: no error", u.Cluster)
		}
	}
	if want := []string{"foreign-key", "malformed"}; !slices.Equal(names, want) {
		t.Fatalf("unopenable %v, want %v", names, want)
	}
	if got[0].KeyID != other.CurrentKeyID() || !errors.Is(got[0].Err, secrets.ErrUnknownKey) || got[1].KeyID != "" {
		t.Fatalf("unopenable %+v", got)
	}
	ids, err := SealedKeyIDs(st)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{kms.CurrentKeyID(): {"ok"}, other.CurrentKeyID(): {"foreign-key"}, "": {"malformed"}}
	if len(ids) != len(want) {
		t.Fatalf("SealedKeyIDs = %v, want %v", ids, want)
	}
	for id, w := range want {
		if !slices.Equal(ids[id], w) {
			t.Fatalf("SealedKeyIDs = %v, want %v", ids, want)
		}
	}
	// Another node's name in the associated data does not open either.
	if got, _ := CheckSealed(context.Background(), "n2", st, kms); len(got) != 3 {
		t.Fatalf("with another node name: %v", got)
	}
}

// memStore is a Store in memory, in name order.
type memStore map[string][]byte

func (m memStore) put(t *testing.T, r *record) {
	t.Helper()
	b, err := proto.Marshal(r.spec)
	if err != nil {
		t.Fatal(err)
	}
	r.Spec = b
	v, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	m[r.spec.GetName()] = v
}

func (m memStore) PutNestedCluster(name string, v []byte) error { m[name] = v; return nil }
func (m memStore) GetNestedCluster(name string) ([]byte, error) {
	return m[name], nil
}

func (m memStore) ListNestedClusters(f func(string, []byte) error) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := f(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}
func (m memStore) DeleteNestedCluster(name string) error { delete(m, name); return nil }

// hostVersions maps each marked host object of the cluster to its
// resourceVersion: any write changes it.
func (e *testEnv) hostVersions(t *testing.T, ns, cluster string) map[string]string {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: LabelCluster + "=" + cluster}
	out := map[string]string{}
	vms, err := e.host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range vms.Items {
		out["VirtualMachine/"+o.GetName()] = o.GetResourceVersion()
	}
	secs, err := e.host.Kube.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secs.Items {
		out["Secret/"+o.Name] = o.ResourceVersion
	}
	svcs, err := e.host.Kube.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range svcs.Items {
		out["Service/"+o.Name] = o.ResourceVersion
	}
	n, err := e.host.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out["Namespace/"+ns] = n.ResourceVersion
	if len(out) < 4 {
		t.Fatalf("expected the kept objects, got %v", out)
	}
	return out
}

// sealedOf is the sealed material in the cluster's stored record.
func (e *testEnv) sealedOf(t *testing.T, name string) []byte {
	t.Helper()
	v, err := e.st.GetNestedCluster(name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sealed) == 0 {
		t.Fatal("no sealed material")
	}
	return r.Sealed
}
