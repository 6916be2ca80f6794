package acctest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

func kubeCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 100 ms for up to 30 s.
func eventually(t *testing.T, ctx context.Context, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestKubeServes(t *testing.T) {
	k := SharedKube(t)
	ctx := kubeCtx(t)

	v, err := k.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.34.3" {
		t.Errorf("server version %q, want v1.34.3", v.GitVersion)
	}

	// The admin kubeconfig file works on its own.
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("kubeconfig %s: %v", k.Kubeconfig, err)
	}
	// So does the static token.
	tokCfg := &rest.Config{Host: k.Host, BearerToken: k.Token, TLSClientConfig: rest.TLSClientConfig{CAData: k.CA.CertPEM}}
	if _, err := kubernetes.NewForConfigOrDie(tokCfg).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("static token: %v", err)
	}

	// The stand-in CRDs are Established and discoverable.
	ac, err := apiextClient(k.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"virtualmachines.kubevirt.io", "virtualmachineinstances.kubevirt.io", "datavolumes.cdi.kubevirt.io"} {
		crd, err := ac.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || (c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue)
		}
		if !established || crd.Spec.Versions[0].Subresources == nil || crd.Spec.Versions[0].Subresources.Status == nil {
			t.Errorf("CRD %s: established=%v, status subresource missing", name, established)
		}
	}
	res, err := k.Client.Discovery().ServerResourcesForGroupVersion("kubevirt.io/v1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range res.APIResources {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "virtualmachines/status") || !strings.Contains(got, "virtualmachineinstances") {
		t.Errorf("kubevirt.io/v1 resources: %s", got)
	}

	// RBAC is on: a user with a client certificate gets exactly what a
	// RoleBinding grants.
	ns := k.NewNamespace(t, "rbac")
	userCfg, userKubeconfig, err := k.UserConfig("agentd-test", "herd:agentd")
	if err != nil {
		t.Fatal(err)
	}
	if userKubeconfig == "" {
		t.Error("no kubeconfig path")
	}
	user := kubernetes.NewForConfigOrDie(userCfg)
	if _, err := user.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list secrets before binding: %v, want Forbidden", err)
	}
	if _, err := k.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "secrets"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "secrets"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "secrets"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "herd:agentd"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "RoleBinding takes effect", func(ctx context.Context) (bool, error) {
		_, err := user.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
}

// newVM is a VirtualMachine as agentd's nested-cluster driver writes it, with the
// real kubevirt.io/api types.
func newVM(name string, strategy kubevirtv1.VirtualMachineRunStrategy) *kubevirtv1.VirtualMachine {
	return &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"herd.dev/cluster": "c1"}},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: &strategy,
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"herd.dev/role": "control-plane"}},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					Domain: kubevirtv1.DomainSpec{
						CPU:     &kubevirtv1.CPU{Cores: 2},
						Devices: kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{{Name: "default", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}}},
					},
					Networks: []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()},
					Volumes: []kubevirtv1.Volume{{Name: "cloudinit", VolumeSource: kubevirtv1.VolumeSource{
						CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{UserDataSecretRef: &corev1.LocalObjectReference{Name: name + "-userdata"}},
					}}},
				},
			},
		},
	}
}

func createVM(t *testing.T, ctx context.Context, k *Kube, ns string, vm *kubevirtv1.VirtualMachine) {
	t.Helper()
	u, err := ToUnstructured(vm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VM %s: %v", vm.Name, err)
	}
}

func getVM(ctx context.Context, k *Kube, ns, name string) (*kubevirtv1.VirtualMachine, error) {
	u, err := k.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var vm kubevirtv1.VirtualMachine
	return &vm, FromUnstructured(u, &vm)
}

func getVMI(ctx context.Context, k *Kube, ns, name string) (*kubevirtv1.VirtualMachineInstance, error) {
	u, err := k.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var vmi kubevirtv1.VirtualMachineInstance
	return &vmi, FromUnstructured(u, &vmi)
}

func setRunStrategy(t *testing.T, ctx context.Context, k *Kube, ns, name string, s kubevirtv1.VirtualMachineRunStrategy) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"runStrategy":%q}}`, s)
	if _, err := k.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestPlayVirtRunsVM(t *testing.T) {
	k := SharedKube(t)
	ctx := kubeCtx(t)
	ns := k.NewNamespace(t, "playvirt")
	running := make(chan string, 10)
	stop := k.PlayVirt(ctx, ns, VirtOptions{Logf: t.Logf, OnRunning: func(_ context.Context, vm *kubevirtv1.VirtualMachine, ip string) {
		running <- vm.Name + "=" + ip
	}})
	t.Cleanup(stop)

	createVM(t, ctx, k, ns, newVM("cp-0", kubevirtv1.RunStrategyAlways))
	var vmi *kubevirtv1.VirtualMachineInstance
	eventually(t, ctx, "VMI Running and Ready", func(ctx context.Context) (bool, error) {
		var err error
		vmi, err = getVMI(ctx, k, ns, "cp-0")
		if err != nil {
			return false, nil //nolint:nilerr // not there yet: keep polling
		}
		ready := false
		for _, c := range vmi.Status.Conditions {
			ready = ready || (c.Type == kubevirtv1.VirtualMachineInstanceReady && c.Status == corev1.ConditionTrue)
		}
		return vmi.Status.Phase == kubevirtv1.Running && ready, nil
	})
	if len(vmi.Status.Interfaces) == 0 {
		t.Fatal("VMI has no interfaces")
	}
	ip, err := netip.ParseAddr(vmi.Status.Interfaces[0].IP)
	if err != nil || !netip.MustParsePrefix("10.200.0.0/24").Contains(ip) {
		t.Errorf("VMI IP %q (%v), want one in 10.200.0.0/24", vmi.Status.Interfaces[0].IP, err)
	}
	if vmi.Labels["herd.dev/role"] != "control-plane" || vmi.Labels["herd.dev/cluster"] != "c1" {
		t.Errorf("VMI labels %v", vmi.Labels)
	}
	if len(vmi.OwnerReferences) != 1 || vmi.OwnerReferences[0].Kind != "VirtualMachine" || vmi.OwnerReferences[0].Name != "cp-0" {
		t.Errorf("VMI owner references %+v", vmi.OwnerReferences)
	}
	if len(vmi.Spec.Volumes) != 1 || vmi.Spec.Volumes[0].CloudInitNoCloud == nil {
		t.Errorf("VMI spec not copied from the template: %+v", vmi.Spec.Volumes)
	}
	select {
	case got := <-running:
		if got != "cp-0="+ip.String() {
			t.Errorf("OnRunning got %s", got)
		}
	case <-ctx.Done():
		t.Fatal("OnRunning not called")
	}
	eventually(t, ctx, "VM Running", func(ctx context.Context) (bool, error) {
		vm, err := getVM(ctx, k, ns, "cp-0")
		return err == nil && vm.Status.Ready && vm.Status.Created && vm.Status.PrintableStatus == kubevirtv1.VirtualMachineStatusRunning, nil
	})

	// Halted stops it.
	setRunStrategy(t, ctx, k, ns, "cp-0", kubevirtv1.RunStrategyHalted)
	eventually(t, ctx, "VM Stopped, VMI gone", func(ctx context.Context) (bool, error) {
		vm, err := getVM(ctx, k, ns, "cp-0")
		if err != nil || vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusStopped || vm.Status.Ready {
			return false, nil //nolint:nilerr // not there yet: keep polling
		}
		_, err = getVMI(ctx, k, ns, "cp-0")
		return apierrors.IsNotFound(err), nil
	})

	// Running again gets a VMI back, with the same address; deleting the
	// VM takes the VMI with it.
	setRunStrategy(t, ctx, k, ns, "cp-0", kubevirtv1.RunStrategyRerunOnFailure)
	eventually(t, ctx, "VMI back with the same IP", func(ctx context.Context) (bool, error) {
		again, err := getVMI(ctx, k, ns, "cp-0")
		return err == nil && len(again.Status.Interfaces) > 0 && again.Status.Interfaces[0].IP == ip.String(), nil
	})
	if err := k.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Delete(ctx, "cp-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "orphaned VMI deleted", func(ctx context.Context) (bool, error) {
		_, err := getVMI(ctx, k, ns, "cp-0")
		return apierrors.IsNotFound(err), nil
	})

	// A second VM gets the next address; spec.running (the older field)
	// works too.
	vm2 := newVM("worker-0", "")
	vm2.Spec.RunStrategy = nil
	yes := true
	vm2.Spec.Running = &yes
	createVM(t, ctx, k, ns, vm2)
	eventually(t, ctx, "second VMI", func(ctx context.Context) (bool, error) {
		v, err := getVMI(ctx, k, ns, "worker-0")
		return err == nil && len(v.Status.Interfaces) > 0 && v.Status.Interfaces[0].IP != "" && v.Status.Interfaces[0].IP != ip.String(), nil
	})

	// DataVolumes complete.
	dv := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
		"metadata": map[string]any{"name": "root"},
		"spec":     map[string]any{"source": map[string]any{"blank": map[string]any{}}, "storage": map[string]any{"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}}}},
	}}
	if _, err := k.Dynamic.Resource(DataVolumeGVR).Namespace(ns).Create(ctx, dv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "DataVolume Succeeded", func(ctx context.Context) (bool, error) {
		u, err := k.Dynamic.Resource(DataVolumeGVR).Namespace(ns).Get(ctx, "root", metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not there yet: keep polling
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return phase == "Succeeded", nil
	})
}

func TestPlayVirtLoadBalancer(t *testing.T) {
	k := SharedKube(t)
	ctx := kubeCtx(t)
	ns := k.NewNamespace(t, "lb")
	const lbIP = "127.0.0.77"
	stop := k.PlayVirt(ctx, ns, VirtOptions{LBIPs: []string{lbIP}, Logf: t.Logf})
	t.Cleanup(stop)

	if _, err := k.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "c1-apiserver"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"herd.dev/role": "control-plane"},
			Ports:    []corev1.ServicePort{{Name: "https", Port: 6443, TargetPort: intstr.FromInt32(6443)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ingress string
	eventually(t, ctx, "LoadBalancer ingress", func(ctx context.Context) (bool, error) {
		svc, err := k.Client.CoreV1().Services(ns).Get(ctx, "c1-apiserver", metav1.GetOptions{})
		if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
			return false, nil //nolint:nilerr // not there yet: keep polling
		}
		ingress = svc.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if ingress != lbIP {
		t.Fatalf("ingress %q, want %q", ingress, lbIP)
	}
	// A test can serve on that address.
	l, err := net.Listen("tcp", net.JoinHostPort(ingress, "0"))
	if err != nil {
		t.Fatalf("listen on the load balancer address: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	resp, err := http.Get("http://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
}

func TestPlayVirtFailVMAndDelay(t *testing.T) {
	k := SharedKube(t)
	ctx := kubeCtx(t)
	ns := k.NewNamespace(t, "failvm")
	stop := k.PlayVirt(ctx, ns, VirtOptions{
		FailVM: map[string]string{"broken": "GuestBootFailed"},
		Delay:  1500 * time.Millisecond,
		Logf:   t.Logf,
	})
	t.Cleanup(stop)

	createVM(t, ctx, k, ns, newVM("broken", kubevirtv1.RunStrategyAlways))
	createVM(t, ctx, k, ns, newVM("slow", kubevirtv1.RunStrategyAlways))
	created := time.Now()

	eventually(t, ctx, "failure Event on the VM", func(ctx context.Context) (bool, error) {
		evs, err := k.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": "broken", "involvedObject.kind": "VirtualMachine"}.String(),
		})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "GuestBootFailed" && e.Type == corev1.EventTypeWarning {
				return true, nil
			}
		}
		return false, nil
	})
	vm, err := getVM(ctx, k, ns, "broken")
	if err != nil {
		t.Fatal(err)
	}
	if vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusCrashLoopBackOff || vm.Status.Ready {
		t.Errorf("broken VM status %+v", vm.Status)
	}
	failure := false
	for _, c := range vm.Status.Conditions {
		failure = failure || (c.Type == kubevirtv1.VirtualMachineFailure && c.Status == corev1.ConditionTrue && c.Reason == "GuestBootFailed")
	}
	if !failure {
		t.Errorf("no Failure condition: %+v", vm.Status.Conditions)
	}
	if _, err := getVMI(ctx, k, ns, "broken"); !apierrors.IsNotFound(err) {
		t.Errorf("broken VM has a VMI (err %v)", err)
	}

	// The slow VM is Starting first, Running after the delay.
	eventually(t, ctx, "slow VM Starting", func(ctx context.Context) (bool, error) {
		vm, err := getVM(ctx, k, ns, "slow")
		return err == nil && vm.Status.PrintableStatus != "", nil
	})
	if time.Since(created) < time.Second {
		if vm, _ := getVM(ctx, k, ns, "slow"); vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusStarting {
			t.Errorf("slow VM %q before the delay, want Starting", vm.Status.PrintableStatus)
		}
	}
	eventually(t, ctx, "slow VM Running", func(ctx context.Context) (bool, error) {
		vm, err := getVM(ctx, k, ns, "slow")
		return err == nil && vm.Status.PrintableStatus == kubevirtv1.VirtualMachineStatusRunning, nil
	})
	if d := time.Since(created); d < 1500*time.Millisecond {
		t.Errorf("slow VM Running after %s, before the 1.5 s delay", d)
	}
}

// TestKubeStopsProcesses checks that Close leaves no etcd or
// kube-apiserver behind.
func TestKubeStopsProcesses(t *testing.T) {
	RequireKubeBinaries(t)
	k, err := NewKube(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	etcd, apiserver := k.PIDs()
	if !ProcessAlive(etcd) || !ProcessAlive(apiserver) {
		t.Fatalf("not running: etcd %d, kube-apiserver %d", etcd, apiserver)
	}
	k.Close()
	for _, pid := range []int{etcd, apiserver} {
		if ProcessAlive(pid) {
			t.Errorf("pid %d still alive after Close", pid)
		}
	}
}
