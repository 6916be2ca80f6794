package nested

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Readiness probe ports: the API server on control planes, the kubelet on
// workers.
const (
	apiServerPort = 6443
	kubeletPort   = 10250
)

// vmObject builds a VM of the cluster: runStrategy Always, a containerDisk
// (or a DataVolume imported from the same image), the pod network with
// bridge or passt binding (never masquerade), cloud-init NoCloud from the
// VM's Secret, a TCP readiness probe.
func (d *Driver) vmObject(ns string, s *herdv1.NestedClusterSpec, role string, i int) (*kubevirtv1.VirtualMachine, error) {
	m := s.GetControlPlane()
	port := apiServerPort
	if role == RoleWorker {
		m, port = s.GetWorkers(), kubeletPort
	}
	name := vmName(s.GetName(), role, i)
	lbl := d.markers(s.GetName(), role)
	lbl[LabelVM] = name
	milli, err := spec.ParseCPU(m.GetCpu())
	if err != nil {
		return nil, err
	}
	mem, err := spec.MemoryQuantity(m.GetMemory())
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	iface := kubevirtv1.Interface{Name: "default"}
	if s.GetNetworkBinding() == spec.NestedBindingPasst {
		iface.PasstBinding = &kubevirtv1.InterfacePasstBinding{}
	} else {
		iface.Bridge = &kubevirtv1.InterfaceBridge{}
	}
	root := kubevirtv1.Volume{Name: "rootdisk"}
	var dvs []kubevirtv1.DataVolumeTemplateSpec
	if size := m.GetDataVolumeSize(); size != "" {
		q, err := spec.MemoryQuantity(size)
		if err != nil {
			return nil, fmt.Errorf("data_volume_size: %w", err)
		}
		url := "docker://" + m.GetImage()
		dvLabels := d.markers(s.GetName(), role)
		dvLabels[LabelVM] = name
		dvs = []kubevirtv1.DataVolumeTemplateSpec{{
			ObjectMeta: metav1.ObjectMeta{Name: rootDiskName(name), Labels: dvLabels},
			Spec: cdiv1.DataVolumeSpec{
				Source: &cdiv1.DataVolumeSource{Registry: &cdiv1.DataVolumeSourceRegistry{URL: &url}},
				Storage: &cdiv1.StorageSpec{Resources: corev1.VolumeResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceStorage: q},
				}},
			},
		}}
		root.DataVolume = &kubevirtv1.DataVolumeSource{Name: rootDiskName(name)}
	} else {
		root.ContainerDisk = &kubevirtv1.ContainerDiskSource{Image: m.GetImage()}
	}
	always := kubevirtv1.RunStrategyAlways
	virtio := kubevirtv1.DiskBusVirtio
	return &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy:         &always,
			DataVolumeTemplates: dvs,
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					Hostname: name,
					Domain: kubevirtv1.DomainSpec{
						CPU:    &kubevirtv1.CPU{Cores: uint32(milli / 1000)},
						Memory: &kubevirtv1.Memory{Guest: &mem},
						Resources: kubevirtv1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceMemory: mem},
						},
						Devices: kubevirtv1.Devices{
							Disks: []kubevirtv1.Disk{
								{Name: "rootdisk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: virtio}}},
								{Name: "cloudinitdisk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: virtio}}},
							},
							Interfaces: []kubevirtv1.Interface{iface},
						},
					},
					Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
					Volumes: []kubevirtv1.Volume{root, {
						Name: "cloudinitdisk",
						VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{
							UserDataSecretRef: &corev1.LocalObjectReference{Name: userDataName(name)},
						}},
					}},
					ReadinessProbe: &kubevirtv1.Probe{
						Handler:             kubevirtv1.Handler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}},
						InitialDelaySeconds: 10, PeriodSeconds: 5, TimeoutSeconds: 5, FailureThreshold: 3,
					},
				},
			},
		},
	}, nil
}

// vmFatal are printable statuses KubeVirt reports for a VM that will not
// start without someone's help: a wait ends at once instead of at its
// timeout.
var vmFatal = map[kubevirtv1.VirtualMachinePrintableStatus]bool{
	kubevirtv1.VirtualMachineStatusCrashLoopBackOff: true,
	kubevirtv1.VirtualMachineStatusUnschedulable:    true,
	kubevirtv1.VirtualMachineStatusErrImagePull:     true,
	kubevirtv1.VirtualMachineStatusImagePullBackOff: true,
	kubevirtv1.VirtualMachineStatusPvcNotFound:      true,
	kubevirtv1.VirtualMachineStatusDataVolumeError:  true,
}

// vmState reads a VM and its VMI from the host.
func (d *Driver) vmState(ctx context.Context, ns, name string) (vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance, err error) {
	u, err := d.cfg.Host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	vm = &kubevirtv1.VirtualMachine{}
	if err := fromUnstructured(u, vm); err != nil {
		return nil, nil, fmt.Errorf("decode VM %s: %w", name, err)
	}
	ui, err := d.cfg.Host.Dynamic.Resource(VirtualMachineInstanceGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return vm, nil, nil
	}
	if err != nil {
		return vm, nil, err
	}
	vmi = &kubevirtv1.VirtualMachineInstance{}
	if err := fromUnstructured(ui, vmi); err != nil {
		return vm, nil, fmt.Errorf("decode VMI %s: %w", name, err)
	}
	return vm, vmi, nil
}

func vmiReadyIP(vmi *kubevirtv1.VirtualMachineInstance) (bool, string) {
	if vmi == nil {
		return false, ""
	}
	ready := false
	for _, c := range vmi.Status.Conditions {
		if c.Type == kubevirtv1.VirtualMachineInstanceReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	ip := ""
	if len(vmi.Status.Interfaces) > 0 {
		ip = vmi.Status.Interfaces[0].IP
	}
	return ready, ip
}

// waitVMIReady waits until the VM's VMI is Ready with an IP, or the VM
// reports a status it will not leave by itself.
func (d *Driver) waitVMIReady(ctx context.Context, cluster, ns, name string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		vm, vmi, err := d.vmState(ctx, ns, name)
		if err == nil {
			ready, ip := vmiReadyIP(vmi)
			d.setVM(cluster, name, string(vm.Status.PrintableStatus), ready, ip, nil)
			if ready && ip != "" {
				return ip, nil
			}
			if vmFatal[vm.Status.PrintableStatus] {
				return "", &stepError{VM: name, Err: fmt.Errorf("VM %s is %s", name, vm.Status.PrintableStatus)}
			}
		} else if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			d.log.Debug("read VM", "vm", name, "err", err)
		} else if apierrors.IsNotFound(err) {
			return "", &stepError{VM: name, Err: fmt.Errorf("VM %s disappeared from the host", name)}
		}
		if err := d.sleep(ctx); err != nil {
			return "", &stepError{VM: name, Err: fmt.Errorf("timed out after %s waiting for VMI %s to be Ready with an IP", timeout, name)}
		}
	}
}

// describeVM summarizes a VM for a failure message: its printable status,
// the VM's and VMI's conditions and the last few events of both.
func (d *Driver) describeVM(ns, name string) string {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "VM %s: ", name)
	vm, vmi, err := d.vmState(ctx, ns, name)
	if err != nil {
		fmt.Fprintf(&b, "unknown (%v)", err)
	} else {
		st := string(vm.Status.PrintableStatus)
		if st == "" {
			st = "no status yet"
		}
		b.WriteString(st)
		var conds []string
		for _, c := range vm.Status.Conditions {
			conds = append(conds, condText(string(c.Type), string(c.Status), c.Reason, c.Message))
		}
		if vmi != nil {
			for _, c := range vmi.Status.Conditions {
				conds = append(conds, "VMI "+condText(string(c.Type), string(c.Status), c.Reason, c.Message))
			}
		}
		if len(conds) > 0 {
			b.WriteString(", conditions " + strings.Join(conds, ", "))
		}
	}
	evs, err := d.cfg.Host.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		var mine []corev1.Event
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && (e.InvolvedObject.Kind == "VirtualMachine" || e.InvolvedObject.Kind == "VirtualMachineInstance") {
				mine = append(mine, e)
			}
		}
		sort.Slice(mine, func(i, j int) bool { return eventTime(mine[i]).Before(eventTime(mine[j])) })
		if len(mine) > 3 {
			mine = mine[len(mine)-3:]
		}
		var parts []string
		for _, e := range mine {
			parts = append(parts, fmt.Sprintf("%s %s %s: %s", e.Type, e.InvolvedObject.Kind, e.Reason, e.Message))
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		b.WriteString("; events: " + strings.Join(parts, "; "))
	}
	return b.String()
}

func condText(typ, status, reason, msg string) string {
	s := typ + "=" + status
	if reason != "" || msg != "" {
		s += " (" + strings.TrimSpace(reason+" "+msg) + ")"
	}
	return s
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// stepError is a failure of one step, naming the VM it concerns.
type stepError struct {
	VM  string
	Err error
}

func (e *stepError) Error() string { return e.Err.Error() }
func (e *stepError) Unwrap() error { return e.Err }

func failedVM(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.VM
	}
	return ""
}
