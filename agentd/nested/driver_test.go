package nested

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func testSpec(name string, workers int32) *herdv1.NestedClusterSpec {
	return &herdv1.NestedClusterSpec{
		Name:               name,
		KubernetesVersion:  "1.34.3",
		ControlPlane:       &herdv1.NestedMachines{Replicas: 1, Image: "quay.io/herd/kubeadm-node:1.34.3"},
		Workers:            &herdv1.NestedMachines{Replicas: workers, Cpu: "1", Memory: "2Gi", Image: "quay.io/herd/kubeadm-node:1.34.3"},
		PodCidr:            "10.210.0.0/16",
		ServiceCidr:        "10.211.0.0/16",
		DeletionProtection: true,
		StepTimeoutSeconds: 30,
	}
}

func (e *testEnv) waitPhase(t *testing.T, name, phase string, timeout time.Duration) *herdv1.NestedCluster {
	t.Helper()
	var c *herdv1.NestedCluster
	waitFor(t, timeout, name+" "+phase, func() (bool, string) {
		var err error
		c, err = e.d.Get(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		return c.GetStatus().GetPhase() == phase, c.GetStatus().String()
	})
	return c
}

// markedObjects lists every host object with the cluster's label in ns,
// marker or not (VMs, VMIs, Secrets, Services).
func (e *testEnv) markedObjects(t *testing.T, ns, cluster string) []string {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: LabelCluster + "=" + cluster}
	var out []string
	for _, r := range []struct {
		kind string
		list func() ([]metav1.Object, error)
	}{
		{"VirtualMachine", func() ([]metav1.Object, error) {
			l, err := e.host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).List(ctx, sel)
			if err != nil {
				return nil, err
			}
			return unstructuredObjects(l), nil
		}},
		{"VirtualMachineInstance", func() ([]metav1.Object, error) {
			l, err := e.host.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(ns).List(ctx, sel)
			if err != nil {
				return nil, err
			}
			return unstructuredObjects(l), nil
		}},
		{"Secret", func() ([]metav1.Object, error) {
			l, err := e.host.Kube.CoreV1().Secrets(ns).List(ctx, sel)
			if err != nil {
				return nil, err
			}
			var o []metav1.Object
			for i := range l.Items {
				o = append(o, &l.Items[i])
			}
			return o, nil
		}},
		{"Service", func() ([]metav1.Object, error) {
			l, err := e.host.Kube.CoreV1().Services(ns).List(ctx, sel)
			if err != nil {
				return nil, err
			}
			var o []metav1.Object
			for i := range l.Items {
				o = append(o, &l.Items[i])
			}
			return o, nil
		}},
	} {
		objs, err := r.list()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetDeletionTimestamp() == nil {
				out = append(out, r.kind+"/"+o.GetName())
			}
		}
	}
	slices.Sort(out)
	return out
}

// namespaceGone: deleted, or Terminating (the test cluster runs no
// namespace controller to finish the job).
func (e *testEnv) namespaceGone(t *testing.T, ns string) bool {
	t.Helper()
	n, err := e.host.Kube.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return n.DeletionTimestamp != nil
}

// Create a cluster (1 control plane, 2 workers) end to end against a real
// host API server with PlayVirt playing KubeVirt, a real guest API server
// started from the cloud-init agentd wrote (standing in for kubeadm in the
// first control-plane VM) and Nodes registered by the test (standing in
// for the kubelets); scale the workers up and down; refuse a delete under
// deletion protection; delete, leaving foreign objects alone.
func TestCreateScaleDelete(t *testing.T) {
	e := newEnv(t)
	const name = "dev"
	lbIP := loopbackIP()
	ns := e.d.namespaceFor(name)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{LBIPs: []string{lbIP}, Delay: 300 * time.Millisecond})
	defer stop()
	ctx := context.Background()

	c, changed, err := e.d.Apply(ctx, testSpec(name, 2))
	if err != nil || !changed || c.GetStatus().GetPhase() != PhaseCreating {
		t.Fatalf("apply: %v changed=%v %v", err, changed, c)
	}
	// Same spec again: no change.
	if _, changed, err := e.d.Apply(ctx, testSpec(name, 2)); err != nil || changed {
		t.Fatalf("second apply: changed=%v err=%v", changed, err)
	}

	guest := playKubeadm(t, e.host, ns, name+"-cp-0", lbIP+":6443", "10.211.0.0/16")
	_ = guest
	waitFor(t, 60*time.Second, "step nodes-ready", func() (bool, string) {
		c, _ := e.d.Get(ctx, name)
		return c.GetStatus().GetStep() == StepNodesReady || c.GetStatus().GetPhase() != PhaseCreating, c.GetStatus().String()
	})
	kc, err := e.d.Kubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	playKubelet(t, kc, "dev-cp-0", "dev-worker-0", "dev-worker-1")
	c = e.waitPhase(t, name, PhaseReady, 60*time.Second)

	// Status: endpoint, CA, every VM running with its nested node.
	st := c.GetStatus()
	if st.GetEndpoint() != "https://"+lbIP+":6443" || !strings.Contains(st.GetCaCertificate(), "BEGIN CERTIFICATE") || st.GetHostNamespace() != ns {
		t.Fatalf("status: %v", st)
	}
	var vms []string
	for _, v := range st.GetVms() {
		vms = append(vms, v.GetName())
		if v.GetPhase() != "Running" || !v.GetReady() || v.GetIp() == "" || !v.GetNodeReady() {
			t.Errorf("VM %v", v)
		}
	}
	if !slices.Equal(vms, []string{"dev-cp-0", "dev-worker-0", "dev-worker-1"}) {
		t.Fatalf("VMs %v", vms)
	}
	// The kubeconfig works against the guest.
	if _, err := guestKube(t, kc).CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Every host object carries the marker.
	want := []string{
		"Secret/dev-cp-0-userdata", "Secret/dev-worker-0-userdata", "Secret/dev-worker-1-userdata", "Service/dev-api",
		"VirtualMachine/dev-cp-0", "VirtualMachine/dev-worker-0", "VirtualMachine/dev-worker-1",
		"VirtualMachineInstance/dev-cp-0", "VirtualMachineInstance/dev-worker-0", "VirtualMachineInstance/dev-worker-1",
	}
	if got := e.markedObjects(t, ns, name); !slices.Equal(got, want) {
		t.Fatalf("host objects %v\nwant %v", got, want)
	}
	nso, err := e.host.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil || nso.Labels[LabelManaged] != "true" || nso.Labels[LabelNode] != e.node || nso.Labels[LabelCluster] != name {
		t.Fatalf("namespace %v: %v", nso.GetLabels(), err)
	}
	if LabelManaged != runtime.LabelManaged {
		t.Fatal("the marker differs from the containers' one")
	}
	svc, err := e.host.Kube.CoreV1().Services(ns).Get(ctx, "dev-api", metav1.GetOptions{})
	if err != nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Selector[LabelRole] != RoleControlPlane || svc.Labels[LabelManaged] != "true" {
		t.Fatalf("endpoint Service %v: %v", svc, err)
	}
	// The cloud-init of the first control plane: kubeadm init with the
	// endpoint as controlPlaneEndpoint and in certSANs, the shared PKI.
	sec, err := e.host.Kube.CoreV1().Secrets(ns).Get(ctx, "dev-cp-0-userdata", metav1.GetOptions{})
	if err != nil || sec.Labels[LabelManaged] != "true" {
		t.Fatal(err)
	}
	files, kadm := userDataFiles(t, sec.Data[UserDataKey])
	for _, s := range []string{"kind: InitConfiguration", "kind: ClusterConfiguration", "controlPlaneEndpoint: " + lbIP + ":6443", "- " + lbIP, "podSubnet: 10.210.0.0/16", "serviceSubnet: 10.211.0.0/16", "kubernetesVersion: v1.34.3", "name: dev-cp-0"} {
		if !strings.Contains(kadm, s) {
			t.Errorf("kubeadm config lacks %q:\n%s", s, kadm)
		}
	}
	if !strings.Contains(kadm, "certSANs:\n  - "+lbIP) {
		t.Errorf("the endpoint is not the first certSAN:\n%s", kadm)
	}
	for _, f := range []string{"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.key", "etcd/ca.key"} {
		if len(files[guestPKIDir+"/"+f]) == 0 {
			t.Errorf("cloud-init does not write %s", f)
		}
	}
	wsec, _ := e.host.Kube.CoreV1().Secrets(ns).Get(ctx, "dev-worker-0-userdata", metav1.GetOptions{})
	wfiles, wadm := userDataFiles(t, wsec.Data[UserDataKey])
	hash := ""
	if c := parseCertPEM(t, files[guestPKIDir+"/ca.crt"]); c != nil {
		hash = caHashOf(c)
	}
	if !strings.Contains(wadm, "kind: JoinConfiguration") || !strings.Contains(wadm, "apiServerEndpoint: "+lbIP+":6443") || !strings.Contains(wadm, hash) || len(wfiles) != 1 {
		t.Errorf("worker cloud-init (want only the join config, with the CA hash %s):\n%s", hash, wadm)
	}
	// The VMs: runStrategy Always, bridge binding, readiness probe, the
	// cloud-init Secret, the markers on the template.
	u, err := e.host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Get(ctx, "dev-cp-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vm kubevirtv1.VirtualMachine
	if err := fromUnstructured(u, &vm); err != nil {
		t.Fatal(err)
	}
	tpl := vm.Spec.Template.Spec
	if *vm.Spec.RunStrategy != kubevirtv1.RunStrategyAlways || tpl.Domain.Devices.Interfaces[0].Bridge == nil || tpl.Domain.Devices.Interfaces[0].Masquerade != nil ||
		tpl.ReadinessProbe.TCPSocket.Port.IntValue() != 6443 || tpl.Volumes[1].CloudInitNoCloud.UserDataSecretRef.Name != "dev-cp-0-userdata" ||
		tpl.Volumes[0].ContainerDisk.Image != "quay.io/herd/kubeadm-node:1.34.3" || vm.Spec.Template.ObjectMeta.Labels[LabelManaged] != "true" || tpl.Domain.CPU.Cores != 2 {
		t.Fatalf("VM spec: %+v", vm.Spec)
	}

	// The key material is sealed at rest: neither the CA key's PEM nor its
	// DER bytes are anywhere in the state dir.
	caKey := files[guestPKIDir+"/ca.key"]
	blk, _ := pem.Decode(caKey)
	assertNotInDir(t, e.stateDir, [][]byte{[]byte("PRIVATE KEY"), blk.Bytes, caKey})

	// Scale up: a new worker, joined with a fresh token minted in the guest.
	sp := testSpec(name, 3)
	if _, changed, err := e.d.Apply(ctx, sp); err != nil || !changed {
		t.Fatalf("scale up: %v", err)
	}
	waitFor(t, 30*time.Second, "dev-worker-2 Secret", func() (bool, string) {
		_, err := e.host.Kube.CoreV1().Secrets(ns).Get(ctx, "dev-worker-2-userdata", metav1.GetOptions{})
		return err == nil, "missing"
	})
	playKubelet(t, kc, "dev-worker-2")
	e.waitPhase(t, name, PhaseReady, 60*time.Second)
	toks, err := guestKube(t, kc).CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "type=bootstrap.kubernetes.io/token"})
	if err != nil || len(toks.Items) != 1 {
		t.Fatalf("minted bootstrap tokens: %v %v", toks, err)
	}
	// Scale down to one: the highest go, nested nodes first.
	sp.Workers.Replicas = 1
	if _, _, err := e.d.Apply(ctx, sp); err != nil {
		t.Fatal(err)
	}
	c = e.waitPhase(t, name, PhaseReady, 60*time.Second)
	if n := len(c.GetStatus().GetVms()); n != 2 {
		t.Fatalf("after scale down: %v", c.GetStatus().GetVms())
	}
	nodes, err := guestKube(t, kc).CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 2 {
		t.Fatalf("nested nodes after scale down: %d %v", len(nodes.Items), err)
	}
	waitFor(t, 10*time.Second, "scaled-down objects gone", func() (bool, string) {
		got := e.markedObjects(t, ns, name)
		return !slices.Contains(got, "VirtualMachine/dev-worker-2") && !slices.Contains(got, "Secret/dev-worker-1-userdata") && !slices.Contains(got, "VirtualMachineInstance/dev-worker-1"), strings.Join(got, " ")
	})

	// Other changes are refused, naming the field.
	bad := testSpec(name, 1)
	bad.ControlPlane.Memory = "8Gi"
	if _, _, err := e.d.Apply(ctx, bad); !errors.Is(err, ErrImmutable) || !strings.Contains(err.Error(), "control_plane.memory") {
		t.Fatalf("immutable change: %v", err)
	}

	// Deletion protection.
	if _, err := e.d.Delete(ctx, name, ""); !errors.Is(err, ErrProtected) {
		t.Fatalf("delete under protection: %v", err)
	}
	// Foreign objects: in the namespace (no marker, or the marker of
	// another node), and a VM named like ours elsewhere.
	foreignLabels := map[string]string{LabelCluster: name, LabelRole: RoleWorker}
	otherNode := map[string]string{LabelManaged: "true", LabelNode: "someone-else", LabelCluster: name}
	mkSecret := func(ns, n string, l map[string]string) {
		if _, err := e.host.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: l}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkSecret(ns, "foreign", foreignLabels)
	mkSecret(ns, "other-node", otherNode)
	if _, err := e.host.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "foreign", Labels: foreignLabels},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mkVM := func(ns, n string) {
		fvm, err := e.d.vmObject(ns, spec1(sp), RoleWorker, 9)
		if err != nil {
			t.Fatal(err)
		}
		fvm.Name, fvm.Labels, fvm.Spec.Template.ObjectMeta.Labels = n, foreignLabels, foreignLabels
		fvm.Spec.RunStrategy = ptrTo(kubevirtv1.RunStrategyHalted)
		fu, _ := toUnstructured(fvm)
		if _, err := e.host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Create(ctx, fu, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkVM(ns, "dev-worker-9")
	elsewhere := e.kube.NewNamespace(t, "foreign")
	mkVM(elsewhere, "dev-worker-0")
	mkSecret(elsewhere, "dev-worker-0-userdata", map[string]string{LabelManaged: "true", LabelNode: e.node, LabelCluster: name})

	sp.DeletionProtection = false
	if _, changed, err := e.d.Apply(ctx, sp); err != nil || !changed {
		t.Fatalf("lift protection: %v", err)
	}
	if existed, err := e.d.Delete(ctx, name, ""); err != nil || !existed {
		t.Fatalf("delete: %v %v", existed, err)
	}
	got := e.markedObjects(t, ns, name)
	if want := []string{"Secret/foreign", "Secret/other-node", "Service/foreign", "VirtualMachine/dev-worker-9"}; !slices.Equal(got, want) {
		t.Fatalf("after delete: %v, want only the foreign %v", got, want)
	}
	if e.namespaceGone(t, ns) {
		t.Fatal("the namespace holding foreign objects was deleted")
	}
	if got := e.markedObjects(t, elsewhere, name); !slices.Equal(got, []string{"Secret/dev-worker-0-userdata", "VirtualMachine/dev-worker-0"}) {
		t.Fatalf("objects in another namespace: %v", got)
	}
	if _, err := e.d.Get(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if existed, err := e.d.Delete(ctx, name, ""); err != nil || existed {
		t.Fatalf("second delete: %v %v", existed, err)
	}
}

func spec1(s *herdv1.NestedClusterSpec) *herdv1.NestedClusterSpec {
	c := testSpec(s.GetName(), 1)
	c.NetworkBinding = "bridge"
	return c
}

func ptrTo[T any](v T) *T { return &v }

func parseCertPEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertNotInDir(t *testing.T, dir string, needles [][]byte) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds key material in the clear (%q...)", p, n[:min(len(n), 12)])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A VM that fails to start fails the creation at the step that waited for
// it, naming the VM's status and its event; everything this attempt
// created is removed.
func TestFailureCompensates(t *testing.T) {
	e := newEnv(t)
	const name = "broken"
	ns := e.d.namespaceFor(name)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{
		LBIPs: []string{loopbackIP()}, FailVM: map[string]string{"broken-cp-0": "FailedScheduling"},
	})
	defer stop()
	ctx := context.Background()
	if _, _, err := e.d.Apply(ctx, testSpec(name, 1)); err != nil {
		t.Fatal(err)
	}
	c := e.waitPhase(t, name, PhaseFailed, 60*time.Second)
	msg := c.GetStatus().GetMessage()
	for _, s := range []string{"step vm-ready", "VM broken-cp-0: CrashLoopBackOff", "Failure=True (FailedScheduling", "events: Warning VirtualMachine FailedScheduling", "removed"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message lacks %q: %s", s, msg)
		}
	}
	if c.GetStatus().GetStep() != StepVMReady {
		t.Errorf("step %q", c.GetStatus().GetStep())
	}
	waitFor(t, 10*time.Second, "compensation", func() (bool, string) {
		got := e.markedObjects(t, ns, name)
		return len(got) == 0 && e.namespaceGone(t, ns), strings.Join(got, " ")
	})
	// The failed cluster is still known and can be deleted (protection
	// lifted first).
	sp := testSpec(name, 1)
	sp.DeletionProtection = false
	if _, changed, err := e.d.Apply(ctx, sp); err != nil || !changed {
		t.Fatalf("apply after failure: %v", err)
	}
	// That apply started a new attempt, which fails the same way.
	e.waitPhase(t, name, PhaseFailed, 60*time.Second)
	if existed, err := e.d.Delete(ctx, name, ""); err != nil || !existed {
		t.Fatal(err)
	}
}

// keep_on_failure keeps what the failed attempt made; deleting removes it.
func TestKeepOnFailure(t *testing.T) {
	e := newEnv(t)
	const name = "kept"
	ns := e.d.namespaceFor(name)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{
		LBIPs: []string{loopbackIP()}, FailVM: map[string]string{"kept-cp-0": "ImageBroken"},
	})
	defer stop()
	ctx := context.Background()
	sp := testSpec(name, 1)
	sp.KeepOnFailure, sp.DeletionProtection = true, false
	if _, _, err := e.d.Apply(ctx, sp); err != nil {
		t.Fatal(err)
	}
	c := e.waitPhase(t, name, PhaseFailed, 60*time.Second)
	if !strings.Contains(c.GetStatus().GetMessage(), "keep_on_failure") {
		t.Fatalf("message: %s", c.GetStatus().GetMessage())
	}
	want := []string{"Secret/kept-cp-0-userdata", "Secret/kept-worker-0-userdata", "Service/kept-api", "VirtualMachine/kept-cp-0"}
	if got := e.markedObjects(t, ns, name); !slices.Equal(got, want) {
		t.Fatalf("kept objects %v, want %v", got, want)
	}
	if _, err := e.d.Delete(ctx, name, ""); err != nil {
		t.Fatal(err)
	}
	if got := e.markedObjects(t, ns, name); len(got) != 0 || !e.namespaceGone(t, ns) {
		t.Fatalf("after delete: %v", got)
	}
}

// An agentd restart in the middle of a creation: the creation is marked
// Failed ("interrupted by an agentd restart") and compensated.
func TestRestartInterruptsCreation(t *testing.T) {
	e := newEnv(t)
	const name = "restart"
	ns := e.d.namespaceFor(name)
	// No PlayVirt yet: the creation waits for its VMI.
	ctx := context.Background()
	stop := e.kube.PlayVirt(ctx, ns, acctest.VirtOptions{LBIPs: []string{loopbackIP()}, Delay: time.Hour})
	defer stop()
	if _, _, err := e.d.Apply(ctx, testSpec(name, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "step vm-ready", func() (bool, string) {
		c, _ := e.d.Get(ctx, name)
		return c.GetStatus().GetStep() == StepVMReady, c.GetStatus().String()
	})
	e.close()
	e.open(t)
	c := e.waitPhase(t, name, PhaseFailed, 10*time.Second)
	if !strings.Contains(c.GetStatus().GetMessage(), "step vm-ready: interrupted by an agentd restart") {
		t.Fatalf("message: %s", c.GetStatus().GetMessage())
	}
	waitFor(t, 20*time.Second, "compensation", func() (bool, string) {
		got := e.markedObjects(t, ns, name)
		return len(got) == 0 && e.namespaceGone(t, ns), strings.Join(got, " ")
	})
}

// After a key rotation RewrapKeys re-wraps the sealed PKI: with the old key
// retired, the kubeconfig still opens, byte for byte the same.
func TestRewrapKeysAfterRotation(t *testing.T) {
	e := newEnv(t)
	const name = "rot"
	ns := e.d.namespaceFor(name)
	stop := e.kube.PlayVirt(context.Background(), ns, acctest.VirtOptions{
		LBIPs: []string{loopbackIP()}, FailVM: map[string]string{"rot-cp-0": "ImageBroken"},
	})
	defer stop()
	ctx := context.Background()
	sp := testSpec(name, 1)
	sp.KeepOnFailure, sp.DeletionProtection = true, false
	if _, _, err := e.d.Apply(ctx, sp); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, name, PhaseFailed, 60*time.Second)
	before, err := e.d.Kubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	old := e.kms.CurrentKeyID()
	if _, err := e.kms.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := e.d.RewrapKeys(ctx); err != nil || n != 1 {
		t.Fatalf("RewrapKeys = %d, %v; want 1", n, err)
	}
	if err := e.kms.Retire(ctx, old); err != nil {
		t.Fatal(err)
	}
	after, err := e.d.Kubeconfig(ctx, name)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("kubeconfig after rotation and retiring the old key: %v", err)
	}
	if _, err := e.d.Delete(ctx, name, ""); err != nil {
		t.Fatal(err)
	}
}
