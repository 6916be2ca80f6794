package nested

import (
	"strings"
	"testing"
)

// passt binding, a DataVolume root disk and the workers' kubelet probe;
// never masquerade.
func TestVMObjectVariants(t *testing.T) {
	d := &Driver{cfg: Config{Node: "n1", NamespacePrefix: "herd"}}
	s := testSpec("dv", 1)
	s.NetworkBinding = "passt"
	s.Workers.DataVolumeSize = "20Gi"
	vm, err := d.vmObject("herd-n1-dv", s, RoleWorker, 0)
	if err != nil {
		t.Fatal(err)
	}
	tpl := vm.Spec.Template.Spec
	iface := tpl.Domain.Devices.Interfaces[0]
	if iface.PasstBinding == nil || iface.Bridge != nil || iface.Masquerade != nil {
		t.Fatalf("interface %+v", iface)
	}
	if tpl.ReadinessProbe.TCPSocket.Port.IntValue() != kubeletPort || tpl.Domain.CPU.Cores != 1 {
		t.Fatalf("probe %+v cores %d", tpl.ReadinessProbe, tpl.Domain.CPU.Cores)
	}
	if len(vm.Spec.DataVolumeTemplates) != 1 || tpl.Volumes[0].DataVolume == nil || tpl.Volumes[0].ContainerDisk != nil {
		t.Fatalf("root disk %+v", tpl.Volumes[0])
	}
	dv := vm.Spec.DataVolumeTemplates[0]
	if dv.Name != "dv-worker-0-rootdisk" || dv.Labels[LabelManaged] != "true" || *dv.Spec.Source.Registry.URL != "docker://quay.io/herd/kubeadm-node:1.34.3" {
		t.Fatalf("DataVolume template %+v", dv)
	}
	if vm.Labels[LabelRole] != RoleWorker || vm.Labels[LabelNode] != "n1" {
		t.Fatalf("labels %v", vm.Labels)
	}
}

func TestNamespaceNameFits(t *testing.T) {
	d := &Driver{cfg: Config{Node: strings.Repeat("n", 63), NamespacePrefix: "herd"}}
	ns := d.namespaceFor(strings.Repeat("c", 40))
	if len(ns) > 63 || !strings.HasPrefix(ns, "herd-nnn") || d.namespaceFor(strings.Repeat("c", 39)) == ns {
		t.Fatalf("namespace %q (%d)", ns, len(ns))
	}
}

func TestKubeadmAPIVersion(t *testing.T) {
	if kubeadmAPIVersion("1.30.9") != "kubeadm.k8s.io/v1beta3" || kubeadmAPIVersion("1.34.3") != "kubeadm.k8s.io/v1beta4" {
		t.Fatal("kubeadm API version")
	}
	tok, err := newBootstrapToken()
	if err != nil || len(tok) != 23 || tok[6] != '.' || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz0123456789.") != "" {
		t.Fatalf("token %q %v", tok, err)
	}
}
