// Package agent wires agentd together: store, containerd runtime, pod
// manager, node info and the gRPC listeners (mTLS on TCP, plaintext only on
// a 0600 unix socket for local use).
package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/spec"
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
	if c.Socket != "" && len(c.Socket) > 100 {
		errs = append(errs, fmt.Errorf("--socket: path longer than 100 bytes: %s", c.Socket))
	}
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
