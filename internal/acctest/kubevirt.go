package acctest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// The resources of the stand-in CRDs.
var (
	VirtualMachineGVR         = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
	VirtualMachineInstanceGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}
	DataVolumeGVR             = schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}
)

// standInCRDs are KubeVirt's VirtualMachine and VirtualMachineInstance and
// CDI's DataVolume with their real group, version, names and scope, the
// status subresource (so, as with the real ones, create and update ignore
// status and only UpdateStatus writes it) and a permissive schema: spec
// and status keep whatever the kubevirt.io/api types serialize to. There
// is no validation webhook; a test checks the fields it cares about.
func standInCRDs() []*apiextv1.CustomResourceDefinition {
	return []*apiextv1.CustomResourceDefinition{
		standInCRD("kubevirt.io", "v1", "VirtualMachine", "virtualmachines", "virtualmachine", "vm", "vms"),
		standInCRD("kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances", "virtualmachineinstance", "vmi", "vmis"),
		standInCRD("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes", "datavolume", "dv", "dvs"),
	}
}

func standInCRD(group, version, kind, plural, singular string, short ...string) *apiextv1.CustomResourceDefinition {
	preserve := true
	open := apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}
	return &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + "." + group},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: group,
			Scope: apiextv1.NamespaceScoped,
			Names: apiextv1.CustomResourceDefinitionNames{
				Plural: plural, Singular: singular, Kind: kind, ListKind: kind + "List",
				ShortNames: short, Categories: []string{"all"},
			},
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: version, Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type:                   "object",
					XPreserveUnknownFields: &preserve,
					Properties:             map[string]apiextv1.JSONSchemaProps{"spec": open, "status": open},
				}},
				Subresources: &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextv1.CustomResourceColumnDefinition{
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
					{Name: "Status", Type: "string", JSONPath: ".status.printableStatus"},
					{Name: "Phase", Type: "string", JSONPath: ".status.phase"},
					{Name: "Ready", Type: "string", JSONPath: ".status.ready"},
				},
			}},
		},
	}
}

// InstallStandInCRDs creates (or keeps) the stand-in CRDs for
// virtualmachines.kubevirt.io, virtualmachineinstances.kubevirt.io and
// datavolumes.cdi.kubevirt.io and waits until each is Established.
func InstallStandInCRDs(ctx context.Context, cfg *rest.Config) error {
	c, err := apiextClient(cfg)
	if err != nil {
		return err
	}
	crds := c.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range standInCRDs() {
		if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range standInCRDs() {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // not established yet: keep polling
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established: %w", crd.Name, err)
		}
	}
	return nil
}

// ToUnstructured converts a typed object (kubevirt.io/api, k8s.io/api) to
// the unstructured form the dynamic client takes. obj must carry its
// apiVersion and kind (TypeMeta).
func ToUnstructured(obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// FromUnstructured converts u into the typed object out points to.
func FromUnstructured(u *unstructured.Unstructured, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}

// VirtOptions tune PlayVirt.
type VirtOptions struct {
	// IPRange hands out the VMIs' interfaces[0].ipAddress, one address per
	// VM in order starting after the network address. Default 10.200.0.0/24.
	IPRange netip.Prefix
	// LBIPs are handed out in order as status.loadBalancer.ingress[0].ip
	// of Services of type LoadBalancer. Loopback addresses (127.0.0.x) let
	// a test serve on them. Default: 127.0.100.1, 127.0.100.2, ... — pass
	// explicit, distinct addresses when tests in parallel serve on them.
	LBIPs []string
	// FailVM names VMs (by name) that never run: reason is the failure
	// reason, set on the VM's Failure condition and on a Warning Event.
	FailVM map[string]string
	// Delay is how long a VM stays Starting before its VMI is Running.
	Delay time.Duration
	// Interval is the polling period; default 200 ms.
	Interval time.Duration
	// Logf, if set, receives errors and what PlayVirt does.
	Logf func(format string, args ...any)
	// OnRunning, if set, is called each time a VM starts (once, and again
	// after a Halted), right after its VMI is Running, with the VMI's
	// address, from PlayVirt's
	// goroutine (which waits for it): the place to start what would run
	// inside the guest, e.g. StartGuestControlPlane with the PKI the VM's
	// cloud-init carries.
	OnRunning func(ctx context.Context, vm *kubevirtv1.VirtualMachine, ip string)
}

// PlayVirt plays KubeVirt's virt-controller (and CDI and a load-balancer
// controller) for namespace ("" for all namespaces) until stop is called.
// It is a stand-in: no VM can boot here (no KVM, no virt-handler, no
// launcher pods), so it only writes the objects and statuses the real
// controllers would, which is what a client of the KubeVirt API sees:
//
//   - a VirtualMachine with spec.runStrategy Always, RerunOnFailure or
//     Once, or spec.running true, gets a VirtualMachineInstance of the same
//     name (ownerReference to the VM; labels and annotations from the VM's
//     template, and the VM's own labels where the template has none; spec
//     from the template), in phase Running with condition Ready=True,
//     nodeName "playvirt" and interfaces[0].ipAddress from opts.IPRange;
//     the VM's status becomes created, ready, printableStatus Running,
//     condition Ready=True. Before opts.Delay has passed it is Starting.
//   - runStrategy Halted (or running false) deletes the VMI; the VM is
//     Stopped. Manual and other strategies are left alone.
//   - a VM named in opts.FailVM gets no VMI: printableStatus
//     CrashLoopBackOff, conditions Ready=False and Failure=True with the
//     reason, and one Warning Event (reason the same) on the VM.
//   - a VMI whose owning VM is gone is deleted (no garbage collector
//     runs in the test cluster).
//   - a Service of type LoadBalancer without ingress gets the next of
//     opts.LBIPs.
//   - a DataVolume gets status.phase Succeeded and progress 100.0%.
//
// Address counters are per PlayVirt: two PlayVirts (say on two
// namespaces) hand out the same addresses.
//
// stop cancels and waits for the goroutine; it is safe to call twice.
func (k *Kube) PlayVirt(ctx context.Context, namespace string, opts VirtOptions) (stop func()) {
	if !opts.IPRange.IsValid() {
		opts.IPRange = netip.MustParsePrefix("10.200.0.0/24")
	}
	if opts.Interval <= 0 {
		opts.Interval = 200 * time.Millisecond
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	p := &virtPlayer{
		k: k, ns: namespace, opts: opts,
		nextIP:    opts.IPRange.Masked().Addr(),
		ips:       map[types.UID]string{},
		seen:      map[types.UID]time.Time{},
		reported:  map[types.UID]bool{},
		announced: map[types.UID]bool{},
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if err := p.reconcile(ctx); err != nil && ctx.Err() == nil {
				opts.Logf("playvirt: %v", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(opts.Interval):
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

type virtPlayer struct {
	k         *Kube
	ns        string
	opts      VirtOptions
	nextIP    netip.Addr
	ips       map[types.UID]string    // VM UID -> VMI address
	seen      map[types.UID]time.Time // VM UID -> first seen wanting to run
	reported  map[types.UID]bool      // VM UID -> failure Event emitted
	announced map[types.UID]bool      // VM UID -> OnRunning called
	lbNext    int
}

func (p *virtPlayer) reconcile(ctx context.Context) error {
	var errs []error
	vms, err := p.k.Dynamic.Resource(VirtualMachineGVR).Namespace(p.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list VMs: %w", err)
	}
	vmis, err := p.k.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(p.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list VMIs: %w", err)
	}
	vmUIDs := map[types.UID]bool{}
	vmiByKey := map[string]*unstructured.Unstructured{}
	for i := range vmis.Items {
		vmiByKey[vmis.Items[i].GetNamespace()+"/"+vmis.Items[i].GetName()] = &vmis.Items[i]
	}
	for i := range vms.Items {
		var vm kubevirtv1.VirtualMachine
		if err := FromUnstructured(&vms.Items[i], &vm); err != nil {
			errs = append(errs, fmt.Errorf("decode VM %s: %w", vms.Items[i].GetName(), err))
			continue
		}
		vmUIDs[vm.UID] = true
		if err := p.reconcileVM(ctx, &vm, vmiByKey[vm.Namespace+"/"+vm.Name]); err != nil && !errors.Is(err, errRetry) {
			errs = append(errs, fmt.Errorf("VM %s/%s: %w", vm.Namespace, vm.Name, err))
		}
	}
	// Play the garbage collector for VMIs whose VM is gone.
	for _, vmi := range vmis.Items {
		for _, ref := range vmi.GetOwnerReferences() {
			if ref.Kind == "VirtualMachine" && !vmUIDs[ref.UID] {
				p.opts.Logf("playvirt: deleting orphaned VMI %s/%s", vmi.GetNamespace(), vmi.GetName())
				if err := p.k.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(vmi.GetNamespace()).Delete(ctx, vmi.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	errs = append(errs, p.reconcileServices(ctx), p.reconcileDataVolumes(ctx))
	return errors.Join(errs...)
}

func wantsRunning(vm *kubevirtv1.VirtualMachine) (run, known bool) {
	if vm.Spec.RunStrategy != nil {
		switch *vm.Spec.RunStrategy {
		case kubevirtv1.RunStrategyAlways, kubevirtv1.RunStrategyRerunOnFailure, kubevirtv1.RunStrategyOnce:
			return true, true
		case kubevirtv1.RunStrategyHalted:
			return false, true
		default:
			return false, false
		}
	}
	if vm.Spec.Running != nil {
		return *vm.Spec.Running, true
	}
	return false, true // neither: the real API defaults to Halted
}

func (p *virtPlayer) reconcileVM(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *unstructured.Unstructured) (err error) {
	if vm.DeletionTimestamp != nil {
		return nil
	}
	run, known := wantsRunning(vm)
	if !known {
		return nil
	}
	status := vm.Status.DeepCopy()
	now := metav1.Now()
	switch {
	case !run:
		delete(p.seen, vm.UID)
		delete(p.announced, vm.UID)
		if vmi != nil {
			p.opts.Logf("playvirt: stopping %s/%s", vm.Namespace, vm.Name)
			if err := p.k.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(vm.Namespace).Delete(ctx, vm.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		status.Created, status.Ready = false, false
		status.PrintableStatus = kubevirtv1.VirtualMachineStatusStopped
		status.Conditions = setVMCondition(status.Conditions, kubevirtv1.VirtualMachineReady, corev1.ConditionFalse, "VMINotExists", "VMI does not exist", now)
		status.Conditions = removeVMCondition(status.Conditions, kubevirtv1.VirtualMachineFailure)

	case p.opts.FailVM[vm.Name] != "":
		reason := p.opts.FailVM[vm.Name]
		msg := fmt.Sprintf("playvirt: VM %s fails to start: %s", vm.Name, reason)
		status.Created, status.Ready = false, false
		status.PrintableStatus = kubevirtv1.VirtualMachineStatusCrashLoopBackOff
		status.Conditions = setVMCondition(status.Conditions, kubevirtv1.VirtualMachineReady, corev1.ConditionFalse, reason, msg, now)
		status.Conditions = setVMCondition(status.Conditions, kubevirtv1.VirtualMachineFailure, corev1.ConditionTrue, reason, msg, now)
		if status.StartFailure == nil {
			status.StartFailure = &kubevirtv1.VirtualMachineStartFailure{ConsecutiveFailCount: 1}
		}
		if !p.reported[vm.UID] {
			// After the status, so a client that sees the Event sees the
			// failed status too.
			defer func() {
				if err == nil {
					if err = p.event(ctx, vm, reason, msg); err == nil {
						p.reported[vm.UID] = true
					}
				}
			}()
		}

	default:
		first, ok := p.seen[vm.UID]
		if !ok {
			first = time.Now()
			p.seen[vm.UID] = first
		}
		if time.Since(first) < p.opts.Delay {
			status.PrintableStatus = kubevirtv1.VirtualMachineStatusStarting
			status.Conditions = setVMCondition(status.Conditions, kubevirtv1.VirtualMachineReady, corev1.ConditionFalse, "Starting", "playvirt: delaying start", now)
			break
		}
		ip, err := p.ensureVMI(ctx, vm, vmi)
		if err != nil {
			return err
		}
		if p.opts.OnRunning != nil && !p.announced[vm.UID] {
			p.announced[vm.UID] = true
			p.opts.OnRunning(ctx, vm.DeepCopy(), ip)
		}
		status.Created, status.Ready = true, true
		status.PrintableStatus = kubevirtv1.VirtualMachineStatusRunning
		status.Conditions = setVMCondition(status.Conditions, kubevirtv1.VirtualMachineReady, corev1.ConditionTrue, "", "", now)
		status.Conditions = removeVMCondition(status.Conditions, kubevirtv1.VirtualMachineFailure)
	}
	status.ObservedGeneration = vm.Generation
	if vmStatusEqual(&vm.Status, status) {
		return nil
	}
	vm.Status = *status
	vm.APIVersion, vm.Kind = kubevirtv1.GroupVersion.String(), "VirtualMachine"
	u, err := ToUnstructured(vm)
	if err != nil {
		return err
	}
	_, err = p.k.Dynamic.Resource(VirtualMachineGVR).Namespace(vm.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return errRetry // next round
	}
	return err
}

// errRetry is a conflict: the next round retries with a fresh object.
var errRetry = errors.New("conflict, retrying")

// ensureVMI creates the VM's running VMI if missing and returns its IP.
func (p *virtPlayer) ensureVMI(ctx context.Context, vm *kubevirtv1.VirtualMachine, existing *unstructured.Unstructured) (string, error) {
	ip, ok := p.ips[vm.UID]
	if !ok {
		if existing != nil { // e.g. PlayVirt restarted: keep what it has
			var old kubevirtv1.VirtualMachineInstance
			if err := FromUnstructured(existing, &old); err == nil && len(old.Status.Interfaces) > 0 && old.Status.Interfaces[0].IP != "" {
				ip = old.Status.Interfaces[0].IP
			}
		}
		if ip == "" {
			p.nextIP = p.nextIP.Next()
			if !p.opts.IPRange.Contains(p.nextIP) {
				return "", fmt.Errorf("IP range %s exhausted", p.opts.IPRange)
			}
			ip = p.nextIP.String()
		}
		p.ips[vm.UID] = ip
	}
	vmis := p.k.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(vm.Namespace)
	var vmi kubevirtv1.VirtualMachineInstance
	if existing != nil {
		if err := FromUnstructured(existing, &vmi); err != nil {
			return "", err
		}
		if vmi.Status.Phase == kubevirtv1.Running {
			return ip, nil
		}
	} else {
		vmi = kubevirtv1.VirtualMachineInstance{
			TypeMeta: metav1.TypeMeta{APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachineInstance"},
			ObjectMeta: metav1.ObjectMeta{
				Name: vm.Name, Namespace: vm.Namespace,
				Labels: map[string]string{}, Annotations: map[string]string{},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)},
			},
		}
		for k, v := range vm.Labels {
			vmi.Labels[k] = v
		}
		if t := vm.Spec.Template; t != nil {
			for k, v := range t.ObjectMeta.Labels {
				vmi.Labels[k] = v
			}
			for k, v := range t.ObjectMeta.Annotations {
				vmi.Annotations[k] = v
			}
			vmi.Spec = *t.Spec.DeepCopy()
		}
		u, err := ToUnstructured(&vmi)
		if err != nil {
			return "", err
		}
		created, err := vmis.Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("create VMI: %w", err)
		}
		if err := FromUnstructured(created, &vmi); err != nil {
			return "", err
		}
		p.opts.Logf("playvirt: VMI %s/%s created, %s", vm.Namespace, vm.Name, ip)
	}
	now := metav1.Now()
	vmi.APIVersion, vmi.Kind = kubevirtv1.GroupVersion.String(), "VirtualMachineInstance"
	vmi.Status.Phase = kubevirtv1.Running
	vmi.Status.NodeName = "playvirt"
	vmi.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{
		Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionTrue, LastTransitionTime: now,
	}}
	ifName := "default"
	if t := vm.Spec.Template; t != nil && len(t.Spec.Networks) > 0 {
		ifName = t.Spec.Networks[0].Name
	}
	vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{
		Name: ifName, IP: ip, IPs: []string{ip}, InterfaceName: "eth0", InfoSource: "domain, guest-agent",
	}}
	u, err := ToUnstructured(&vmi)
	if err != nil {
		return "", err
	}
	if _, err := vmis.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("VMI status: %w", err)
	}
	return ip, nil
}

// event records a Warning Event on vm, as virt-controller would.
func (p *virtPlayer) event(ctx context.Context, vm *kubevirtv1.VirtualMachine, reason, msg string) error {
	now := metav1.Now()
	_, err := p.k.Client.CoreV1().Events(vm.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: vm.Name + ".", Namespace: vm.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachine",
			Namespace: vm.Namespace, Name: vm.Name, UID: vm.UID, ResourceVersion: vm.ResourceVersion,
		},
		Reason: reason, Message: msg, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "virtualmachine-controller"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("event: %w", err)
	}
	p.opts.Logf("playvirt: VM %s/%s failed: %s", vm.Namespace, vm.Name, reason)
	return nil
}

func (p *virtPlayer) reconcileServices(ctx context.Context) error {
	svcs, err := p.k.Client.CoreV1().Services(p.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	var errs []error
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 {
			continue
		}
		var ip string
		if p.opts.LBIPs != nil {
			if p.lbNext >= len(p.opts.LBIPs) {
				errs = append(errs, fmt.Errorf("service %s/%s: LBIPs exhausted", svc.Namespace, svc.Name))
				continue
			}
			ip = p.opts.LBIPs[p.lbNext]
		} else {
			if p.lbNext >= 254 {
				errs = append(errs, fmt.Errorf("service %s/%s: default LB range exhausted", svc.Namespace, svc.Name))
				continue
			}
			ip = fmt.Sprintf("127.0.100.%d", p.lbNext+1)
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		if _, err := p.k.Client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			if !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("service %s/%s status: %w", svc.Namespace, svc.Name, err))
			}
			continue
		}
		p.lbNext++
		p.opts.Logf("playvirt: Service %s/%s load balancer %s", svc.Namespace, svc.Name, ip)
	}
	return errors.Join(errs...)
}

func (p *virtPlayer) reconcileDataVolumes(ctx context.Context) error {
	dvs := p.k.Dynamic.Resource(DataVolumeGVR).Namespace(p.ns)
	list, err := dvs.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list DataVolumes: %w", err)
	}
	var errs []error
	for i := range list.Items {
		dv := &list.Items[i]
		if phase, _, _ := unstructured.NestedString(dv.Object, "status", "phase"); phase == "Succeeded" {
			continue
		}
		_ = unstructured.SetNestedField(dv.Object, "Succeeded", "status", "phase")
		_ = unstructured.SetNestedField(dv.Object, "100.0%", "status", "progress")
		if _, err := p.k.Dynamic.Resource(DataVolumeGVR).Namespace(dv.GetNamespace()).UpdateStatus(ctx, dv, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("DataVolume %s/%s status: %w", dv.GetNamespace(), dv.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

func setVMCondition(conds []kubevirtv1.VirtualMachineCondition, t kubevirtv1.VirtualMachineConditionType, s corev1.ConditionStatus, reason, msg string, now metav1.Time) []kubevirtv1.VirtualMachineCondition {
	for i := range conds {
		if conds[i].Type == t {
			if conds[i].Status != s {
				conds[i].LastTransitionTime = now
			}
			conds[i].Status, conds[i].Reason, conds[i].Message = s, reason, msg
			return conds
		}
	}
	return append(conds, kubevirtv1.VirtualMachineCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now})
}

func removeVMCondition(conds []kubevirtv1.VirtualMachineCondition, t kubevirtv1.VirtualMachineConditionType) []kubevirtv1.VirtualMachineCondition {
	out := conds[:0]
	for _, c := range conds {
		if c.Type != t {
			out = append(out, c)
		}
	}
	return out
}

// vmStatusEqual compares the fields PlayVirt writes, ignoring timestamps'
// sub-second precision lost in the round trip.
func vmStatusEqual(a, b *kubevirtv1.VirtualMachineStatus) bool {
	if a.Created != b.Created || a.Ready != b.Ready || a.PrintableStatus != b.PrintableStatus ||
		a.ObservedGeneration != b.ObservedGeneration || (a.StartFailure == nil) != (b.StartFailure == nil) ||
		len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}
