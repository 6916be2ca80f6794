package nested

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Paths inside the guest.
const (
	guestPKIDir     = "/etc/kubernetes/pki"
	guestKubeadmCfg = "/run/herd/kubeadm.yaml"
	// guestCNIManifest is part of the image contract: a CNI manifest in
	// which {{POD_CIDR}} is replaced by the cluster's pod CIDR and which
	// the first control plane applies after `kubeadm init`.
	guestCNIManifest = "/etc/herd/cni.yaml"
	// UserDataKey is the key of the cloud-init Secret KubeVirt reads.
	UserDataKey = "userdata"
)

// bootstrapTokenAlphabet is kubeadm's: [a-z0-9].
const bootstrapTokenAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newBootstrapToken returns a kubeadm bootstrap token "[a-z0-9]{6}.[a-z0-9]{16}".
func newBootstrapToken() (string, error) {
	out := make([]byte, 0, 23)
	for i := range 22 {
		if i == 6 {
			out = append(out, '.')
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(bootstrapTokenAlphabet))))
		if err != nil {
			return "", fmt.Errorf("bootstrap token: %w", err)
		}
		out = append(out, bootstrapTokenAlphabet[n.Int64()])
	}
	return string(out), nil
}

// guestParams is what a VM's cloud-init is made of.
type guestParams struct {
	Cluster     string
	Version     string
	VM          string
	Role        string
	First       bool   // the control plane that runs kubeadm init
	Endpoint    string // host:port of the control-plane endpoint
	EndpointSAN string // the endpoint's host
	PodCIDR     string
	ServiceCIDR string
	Token       string
	CAHash      string
	Shared      pki.Files // only for control planes
}

// kubeadmAPIVersion picks the kubeadm configuration API for a version:
// v1beta4 from 1.31 on, v1beta3 before.
func kubeadmAPIVersion(version string) string {
	_, minor, _, err := spec.ParseNestedVersion(version)
	if err == nil && minor < 31 {
		return "kubeadm.k8s.io/v1beta3"
	}
	return "kubeadm.k8s.io/v1beta4"
}

func yamlDoc(v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// kubeadmConfig renders the kubeadm configuration of one VM: Init- and
// ClusterConfiguration for the first control plane, a JoinConfiguration
// (with controlPlane for control planes 2 and 3) for the others.
func kubeadmConfig(p guestParams) (string, error) {
	api := kubeadmAPIVersion(p.Version)
	nodeReg := map[string]any{"name": p.VM}
	discovery := map[string]any{
		"bootstrapToken": map[string]any{
			"apiServerEndpoint": p.Endpoint,
			"token":             p.Token,
			"caCertHashes":      []string{p.CAHash},
		},
	}
	var docs []any
	if p.First {
		docs = append(docs,
			map[string]any{
				"apiVersion": api, "kind": "InitConfiguration",
				"bootstrapTokens": []any{map[string]any{
					"token": p.Token, "ttl": "24h0m0s",
					"usages": []string{"signing", "authentication"},
					"groups": []string{"system:bootstrappers:kubeadm:default-node-token"},
				}},
				"nodeRegistration": nodeReg,
				"localAPIEndpoint": map[string]any{"bindPort": 6443},
			},
			map[string]any{
				"apiVersion": api, "kind": "ClusterConfiguration",
				"clusterName":          p.Cluster,
				"kubernetesVersion":    "v" + p.Version,
				"controlPlaneEndpoint": p.Endpoint,
				"certificatesDir":      guestPKIDir,
				"networking": map[string]any{
					"podSubnet": p.PodCIDR, "serviceSubnet": p.ServiceCIDR, "dnsDomain": "cluster.local",
				},
				"apiServer": map[string]any{"certSANs": []string{p.EndpointSAN, p.VM, "localhost", "127.0.0.1"}},
			})
	} else {
		join := map[string]any{
			"apiVersion": api, "kind": "JoinConfiguration",
			"discovery":        discovery,
			"nodeRegistration": nodeReg,
		}
		if p.Role == RoleControlPlane {
			join["controlPlane"] = map[string]any{"localAPIEndpoint": map[string]any{"bindPort": 6443}}
		}
		docs = append(docs, join)
	}
	docs = append(docs, map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
		"cgroupDriver": "systemd",
	})
	parts := make([]string, len(docs))
	for i, d := range docs {
		s, err := yamlDoc(d)
		if err != nil {
			return "", err
		}
		parts[i] = s
	}
	return strings.Join(parts, "---\n"), nil
}

// userData renders a VM's cloud-config: the shared PKI (control planes),
// the kubeadm configuration and the command that runs it. The guest image
// must carry kubeadm, kubelet and a container runtime for the version.
func userData(p guestParams) (string, error) {
	cfg, err := kubeadmConfig(p)
	if err != nil {
		return "", err
	}
	type file struct {
		Path        string `json:"path"`
		Permissions string `json:"permissions"`
		Encoding    string `json:"encoding,omitempty"`
		Content     string `json:"content"`
	}
	var files []file
	if p.Role == RoleControlPlane {
		for _, n := range p.Shared.Names() {
			perm := "0644"
			if strings.HasSuffix(n, ".key") {
				perm = "0600"
			}
			files = append(files, file{Path: guestPKIDir + "/" + n, Permissions: perm, Encoding: "b64", Content: base64.StdEncoding.EncodeToString(p.Shared[n])})
		}
	}
	files = append(files, file{Path: guestKubeadmCfg, Permissions: "0600", Content: cfg})
	var cmd string
	switch {
	case p.First:
		cmd = "kubeadm init --config " + guestKubeadmCfg +
			" && if [ -f " + guestCNIManifest + " ]; then sed 's#{{POD_CIDR}}#" + p.PodCIDR + "#g' " + guestCNIManifest +
			" | kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -; fi"
	default:
		cmd = "kubeadm join --config " + guestKubeadmCfg
	}
	doc := map[string]any{
		"hostname":    p.VM,
		"write_files": files,
		"runcmd":      []any{[]string{"sh", "-c", cmd}},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	return "#cloud-config\n" + string(b), nil
}

// splitHostPort splits the endpoint's host:port.
func splitHostPort(hp string) (string, int) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}
