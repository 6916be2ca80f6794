package nested

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The marker labels every host object agentd creates carries. agentd never
// changes or deletes a host object without LabelManaged=true and its own
// node and cluster labels.
const (
	// LabelManaged is the same key agentd puts on its containers
	// (runtime.LabelManaged).
	LabelManaged = "io.herd.managed"
	LabelNode    = "io.herd.node"
	LabelCluster = "io.herd.cluster"
	// LabelRole: namespace, endpoint, cloud-init, control-plane, worker.
	LabelRole = "io.herd.role"
	// LabelVM names the VM a cloud-init Secret or DataVolume belongs to.
	LabelVM = "io.herd.vm"
)

// Roles.
const (
	RoleNamespace    = "namespace"
	RoleEndpoint     = "endpoint"
	RoleCloudInit    = "cloud-init"
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// The KubeVirt and CDI resources the driver uses (kubevirt.io/api types
// through the dynamic client).
var (
	VirtualMachineGVR         = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
	VirtualMachineInstanceGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}
	DataVolumeGVR             = schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}
)

// Host is the host cluster that runs KubeVirt: a typed client for core
// objects and a dynamic one for VirtualMachines, VirtualMachineInstances
// and DataVolumes.
type Host struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
}

// NewHost connects to the host cluster of cfg.
func NewHost(cfg *rest.Config) (*Host, error) {
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("host cluster client: %w", err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("host cluster dynamic client: %w", err)
	}
	return &Host{Kube: k, Dynamic: d}, nil
}

// HostFromKubeconfig connects to the host cluster of a kubeconfig file.
func HostFromKubeconfig(path string) (*Host, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("host kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return NewHost(cfg)
}

// markers are the labels of one cluster's objects of one role.
func (d *Driver) markers(cluster, role string) map[string]string {
	return map[string]string{LabelManaged: "true", LabelNode: d.cfg.Node, LabelCluster: cluster, LabelRole: role}
}

// clusterSelector selects every object of a cluster (any role).
func (d *Driver) clusterSelector(cluster string) string {
	return labels.SelectorFromSet(labels.Set{LabelManaged: "true", LabelNode: d.cfg.Node, LabelCluster: cluster}).String()
}

// ours says whether an object carries this node's marker for cluster. It
// is checked again on every object right before it is changed or deleted.
func (d *Driver) ours(obj metav1.Object, cluster string) bool {
	l := obj.GetLabels()
	return l[LabelManaged] == "true" && l[LabelNode] == d.cfg.Node && l[LabelCluster] == cluster
}

// namespaceFor is the host namespace of a cluster:
// <prefix>-<node>-<cluster>, shortened with a hash when over 63 characters.
func (d *Driver) namespaceFor(cluster string) string {
	n := d.cfg.NamespacePrefix + "-" + d.cfg.Node + "-" + cluster
	if len(n) <= 63 {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return strings.TrimRight(n[:54], "-") + "-" + hex.EncodeToString(sum[:])[:8]
}

func vmName(cluster, role string, i int) string {
	if role == RoleControlPlane {
		return fmt.Sprintf("%s-cp-%d", cluster, i)
	}
	return fmt.Sprintf("%s-worker-%d", cluster, i)
}

func userDataName(vm string) string      { return vm + "-userdata" }
func endpointName(cluster string) string { return cluster + "-api" }
func rootDiskName(vm string) string      { return vm + "-rootdisk" }

// Kinds of host objects in the saga log.
const (
	KindNamespace      = "Namespace"
	KindService        = "Service"
	KindSecret         = "Secret"
	KindVirtualMachine = "VirtualMachine"
	KindDataVolume     = "DataVolume"
)

// deleteMarked deletes one host object if, and only if, it carries the
// cluster's marker. A missing object is no error; a foreign one is left
// alone and reported.
func (d *Driver) deleteMarked(ctx context.Context, cluster, kind, ns, name string) (foreign bool, err error) {
	var obj metav1.Object
	var del func() error
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	h := d.cfg.Host
	switch kind {
	case KindNamespace:
		o, e := h.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		obj, err = o, e
		del = func() error { return h.Kube.CoreV1().Namespaces().Delete(ctx, name, opts) }
	case KindService:
		o, e := h.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		obj, err = o, e
		del = func() error { return h.Kube.CoreV1().Services(ns).Delete(ctx, name, opts) }
	case KindSecret:
		o, e := h.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		obj, err = o, e
		del = func() error { return h.Kube.CoreV1().Secrets(ns).Delete(ctx, name, opts) }
	case KindVirtualMachine, KindDataVolume, "VirtualMachineInstance":
		gvr := map[string]schema.GroupVersionResource{KindVirtualMachine: VirtualMachineGVR, KindDataVolume: DataVolumeGVR, "VirtualMachineInstance": VirtualMachineInstanceGVR}[kind]
		o, e := h.Dynamic.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		obj, err = o, e
		del = func() error { return h.Dynamic.Resource(gvr).Namespace(ns).Delete(ctx, name, opts) }
	default:
		return false, fmt.Errorf("unknown kind %q", kind)
	}
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) { // gone, or no such resource (CDI not installed)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	if !d.ours(obj, cluster) {
		d.log.Warn("left a host object without herd's marker alone", "kind", kind, "namespace", ns, "name", name)
		return true, nil
	}
	if obj.GetDeletionTimestamp() != nil {
		return false, nil
	}
	// Delete exactly the object checked: if it was replaced in between
	// (by someone else, perhaps without the marker), the UID differs and
	// the API server refuses.
	uid := obj.GetUID()
	opts.Preconditions = &metav1.Preconditions{UID: &uid}
	if err := del(); err != nil && !apierrors.IsNotFound(err) {
		if apierrors.IsConflict(err) {
			d.log.Warn("host object replaced between check and delete; left alone", "kind", kind, "namespace", ns, "name", name)
			return true, nil
		}
		return false, fmt.Errorf("delete %s %s: %w", kind, name, err)
	}
	return false, nil
}

// hostObject is one object found by label on the host.
type hostObject struct {
	Kind, Name  string
	Labels      map[string]string
	Terminating bool
}

// listCluster lists the cluster's marked objects in its namespace.
func (d *Driver) listCluster(ctx context.Context, ns, cluster string) ([]hostObject, error) {
	sel := metav1.ListOptions{LabelSelector: d.clusterSelector(cluster)}
	var out []hostObject
	h := d.cfg.Host
	for _, gvr := range []struct {
		kind string
		gvr  schema.GroupVersionResource
	}{{KindVirtualMachine, VirtualMachineGVR}, {"VirtualMachineInstance", VirtualMachineInstanceGVR}, {KindDataVolume, DataVolumeGVR}} {
		l, err := h.Dynamic.Resource(gvr.gvr).Namespace(ns).List(ctx, sel)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %ss: %w", gvr.kind, err)
		}
		for _, o := range l.Items {
			out = append(out, hostObject{Kind: gvr.kind, Name: o.GetName(), Labels: o.GetLabels(), Terminating: o.GetDeletionTimestamp() != nil})
		}
	}
	secs, err := h.Kube.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list Secrets: %w", err)
	}
	for _, o := range secs.Items {
		out = append(out, hostObject{Kind: KindSecret, Name: o.Name, Labels: o.Labels, Terminating: o.DeletionTimestamp != nil})
	}
	svcs, err := h.Kube.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	for _, o := range svcs.Items {
		out = append(out, hostObject{Kind: KindService, Name: o.Name, Labels: o.Labels, Terminating: o.DeletionTimestamp != nil})
	}
	return out, nil
}

// foreignObjects lists objects in ns that do not carry the cluster's
// marker (and are not what Kubernetes itself puts in every namespace):
// they keep the namespace from being deleted.
func (d *Driver) foreignObjects(ctx context.Context, ns, cluster string) ([]string, error) {
	var out []string
	h := d.cfg.Host
	add := func(kind string, objs []metav1.Object) {
		for _, o := range objs {
			if !d.ours(o, cluster) {
				out = append(out, kind+" "+o.GetName())
			}
		}
	}
	for _, r := range []struct {
		kind string
		gvr  schema.GroupVersionResource
	}{{KindVirtualMachine, VirtualMachineGVR}, {"VirtualMachineInstance", VirtualMachineInstanceGVR}, {KindDataVolume, DataVolumeGVR}} {
		l, err := h.Dynamic.Resource(r.gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		add(r.kind, unstructuredObjects(l))
	}
	secs, err := h.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range secs.Items {
		if secs.Items[i].Type != corev1.SecretTypeServiceAccountToken {
			add(KindSecret, []metav1.Object{&secs.Items[i]})
		}
	}
	svcs, err := h.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range svcs.Items {
		add(KindService, []metav1.Object{&svcs.Items[i]})
	}
	cms, err := h.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range cms.Items {
		if cms.Items[i].Name != "kube-root-ca.crt" { // published into every namespace
			add("ConfigMap", []metav1.Object{&cms.Items[i]})
		}
	}
	pods, err := h.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		add("Pod", []metav1.Object{&pods.Items[i]})
	}
	pvcs, err := h.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pvcs.Items {
		add("PersistentVolumeClaim", []metav1.Object{&pvcs.Items[i]})
	}
	sort.Strings(out)
	return out, nil
}

func unstructuredObjects(l *unstructured.UnstructuredList) []metav1.Object {
	out := make([]metav1.Object, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out
}

func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func fromUnstructured(u *unstructured.Unstructured, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}
