// Package agent wires agentd together: store, containerd runtime, pod
// manager, node info and the gRPC listeners (mTLS on TCP, plaintext only on
// a 0600 unix socket for local use).
package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Config is agentd's configuration, from flags.
type Config struct {
	// Name is the node's name; its certificate must carry it.
	Name string
	// Listen is the TCP address for mTLS clients ("" disables TCP).
	Listen string
	// Socket is the unix socket for local plaintext clients ("" disables it).
	Socket   string
	StateDir string

	ContainerdAddress string
	Namespace         string

	CACert, Cert, Key string // PEM content or file paths

	// RegistryConfig is a JSON file: {"insecure": ["host:port"],
	// "auths": {"host": {"username": "...", "password": "..."}}}.
	RegistryConfig string
	// InsecureRegistries may be reached over plain HTTP (loopback test
	// registries); everything else needs HTTPS.
	InsecureRegistries []string

	// PodCIDR turns on the pod network: one network namespace and one IP
	// per pod from this range, on a bridge (CNI bridge + host-local).
	// Empty: each container gets a loopback-only namespace.
	PodCIDR    string
	Bridge     string
	CNIBinDirs []string

	// ClusterCIDR turns on clustering: agentds gossip (hashicorp/memberlist,
	// always encrypted with GossipKeyFile) and each claims a pod CIDR of
	// NodeCIDRBits from this range. It replaces PodCIDR.
	ClusterCIDR   string
	NodeCIDRBits  int
	GossipListen  string // host:port, on the node's address
	GossipKeyFile string // 32 bytes, base64 (herdctl gossip-key)
	Join          []string
	// NodeIP is what peers route this node's pod CIDR to (default: the
	// host of GossipListen).
	NodeIP string

	// ServiceCIDR is where cluster IPs come from (clusters only).
	ServiceCIDR string
	// ClusterDomain is the DNS domain of services (default cluster.local).
	ClusterDomain string
	// DNSUpstreams answer names outside the cluster domain (default: the
	// nameservers of /etc/resolv.conf).
	DNSUpstreams []string
	// ServiceResync is how often the service rules are rewritten in full,
	// repairing changes made behind herd's back (default 1m).
	ServiceResync time.Duration
	// SecretResync is how often each secret holder checks that every
	// matching member holds its secrets (default 30s; membership changes
	// trigger a check at once).
	SecretResync time.Duration

	// NestedKubeconfig turns on nested Kubernetes clusters: a kubeconfig
	// for a host cluster that runs KubeVirt ("" disables them).
	NestedKubeconfig string
	// NestedHostCIDRs are the host cluster's ranges (pods, services,
	// nodes) that nested clusters' ranges may not overlap.
	NestedHostCIDRs []string
	// NestedNamespacePrefix starts each nested cluster's host namespace
	// (<prefix>-<node>-<cluster>); default herd.
	NestedNamespacePrefix string
	// NestedNodeAddress is the host address of NodePort endpoints
	// (default: a host Node's address).
	NestedNodeAddress string
	// NestedPoll is the period of the nested clusters' waits (default 2s).
	NestedPoll time.Duration

	ReservedCPU    string // quantity, e.g. "100m"
	ReservedMemory string // quantity, e.g. "256Mi"
	LogMaxBytes    int64
	BackoffBase    time.Duration
	BackoffMax     time.Duration
	Version        string
}

// Validate refuses a configuration agentd cannot run with.
func (c *Config) Validate() error {
	var errs []error
	if err := spec.ValidateName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("--name: %w", err))
	}
	if c.Listen == "" && c.Socket == "" {
		errs = append(errs, errors.New("--listen or --socket is required"))
	}
	if c.Listen != "" && (c.CACert == "" || c.Cert == "" || c.Key == "") {
		errs = append(errs, errors.New("--listen needs --ca-cert, --cert and --key: TCP clients always use mutual TLS"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if c.ReservedCPU != "" {
		if _, err := spec.ParseCPU(c.ReservedCPU); err != nil {
			errs = append(errs, fmt.Errorf("--reserved-cpu: %w", err))
		}
	}
	if c.ReservedMemory != "" {
		if _, err := spec.ParseMemory(c.ReservedMemory); err != nil {
			errs = append(errs, fmt.Errorf("--reserved-memory: %w", err))
		}
	}
	if c.PodCIDR != "" {
		if p, err := netip.ParsePrefix(c.PodCIDR); err != nil || p != p.Masked() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--pod-cidr: want an IPv4 network such as 10.244.1.0/24, got %q", c.PodCIDR))
		}
	}
	if c.ClusterCIDR != "" {
		if c.PodCIDR != "" {
			errs = append(errs, errors.New("--pod-cidr and --cluster-cidr exclude each other: in a cluster the node claims its pod CIDR"))
		}
		if p, err := netip.ParsePrefix(c.ClusterCIDR); err != nil || p != p.Masked() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--cluster-cidr: want an IPv4 network such as 10.244.0.0/16, got %q", c.ClusterCIDR))
		} else if c.NodeCIDRBits <= p.Bits() || c.NodeCIDRBits > 30 {
			errs = append(errs, fmt.Errorf("--node-cidr-bits: must be between %d and 30, got %d", p.Bits()+1, c.NodeCIDRBits))
		}
		if _, err := netip.ParseAddrPort(c.GossipListen); err != nil {
			errs = append(errs, fmt.Errorf("--gossip-listen: want IP:PORT, got %q", c.GossipListen))
		}
		if c.GossipKeyFile == "" {
			errs = append(errs, errors.New("--gossip-key is required with --cluster-cidr: gossip is always encrypted"))
		}
		if c.NodeIP != "" {
			if _, err := netip.ParseAddr(c.NodeIP); err != nil {
				errs = append(errs, fmt.Errorf("--node-ip: %v", err))
			}
		}
		if s, err := netip.ParsePrefix(c.ServiceCIDR); err != nil || s != s.Masked() || !s.Addr().Is4() || s.Bits() > 28 {
			errs = append(errs, fmt.Errorf("--service-cidr: want an IPv4 network of at least /28 such as 10.96.0.0/16, got %q", c.ServiceCIDR))
		} else if p, err := netip.ParsePrefix(c.ClusterCIDR); err == nil && s.Overlaps(p) {
			errs = append(errs, fmt.Errorf("--service-cidr %s overlaps --cluster-cidr %s", s, p))
		}
		for _, u := range c.DNSUpstreams {
			if _, err := netip.ParseAddrPort(u); err != nil {
				errs = append(errs, fmt.Errorf("--dns-upstream: want IP:PORT, got %q", u))
			}
		}
	}
	if c.Socket != "" && len(c.Socket) > 100 {
		errs = append(errs, fmt.Errorf("--socket: path longer than 100 bytes: %s", c.Socket))
	}
	errs = append(errs, c.validateNested()...)
	return errors.Join(errs...)
}

type registryFile struct {
	Insecure []string                       `json:"insecure"`
	Auths    map[string]runtime.Credentials `json:"auths"`
}

// registries merges the registry file and flags.
func (c *Config) registries() (runtime.RegistryConfig, error) {
	rc := runtime.RegistryConfig{Insecure: append([]string(nil), c.InsecureRegistries...)}
	if c.RegistryConfig == "" {
		return rc, nil
	}
	b, err := os.ReadFile(c.RegistryConfig)
	if err != nil {
		return rc, fmt.Errorf("read registry config: %w", err)
	}
	var f registryFile
	if err := json.Unmarshal(b, &f); err != nil {
		// The file holds credentials: never echo its content.
		return rc, fmt.Errorf("parse registry config %s: invalid JSON", filepath.Base(c.RegistryConfig))
	}
	rc.Insecure = append(rc.Insecure, f.Insecure...)
	rc.Auth = f.Auths
	return rc, nil
}

// gossipKey reads the 32-byte gossip key (base64 in a file). Errors never
// show the key.
func (c *Config) gossipKey() ([]byte, error) {
	b, err := os.ReadFile(c.GossipKeyFile)
	if err != nil {
		return nil, fmt.Errorf("read gossip key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("gossip key %s: want 32 bytes, base64-encoded (herdctl gossip-key)", filepath.Base(c.GossipKeyFile))
	}
	return key, nil
}
