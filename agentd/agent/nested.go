package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/herd-project/terraform-provider-herd/agentd/nested"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// validateNested checks the nested-cluster flags.
func (c *Config) validateNested() []error {
	var errs []error
	for _, s := range c.NestedHostCIDRs {
		if p, err := netip.ParsePrefix(s); err != nil || p != p.Masked() {
			errs = append(errs, fmt.Errorf("--nested-host-cidrs: want networks such as 10.42.0.0/16, got %q", s))
		}
	}
	if c.NestedNamespacePrefix != "" {
		if err := spec.ValidateName(c.NestedNamespacePrefix); err != nil || len(c.NestedNamespacePrefix) > 16 {
			errs = append(errs, fmt.Errorf("--nested-namespace-prefix: want a lowercase label of at most 16 characters, got %q", c.NestedNamespacePrefix))
		}
	}
	if c.NestedNodeAddress != "" {
		if _, err := netip.ParseAddr(c.NestedNodeAddress); err != nil {
			errs = append(errs, fmt.Errorf("--nested-node-address: %w", err))
		}
	}
	return errs
}

// nestedForbidden are the ranges nested clusters' CIDRs may not overlap:
// herd's own and the host cluster's.
func (c *Config) nestedForbidden() []spec.NestedRange {
	var out []spec.NestedRange
	add := func(name, s string) {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, spec.NestedRange{Name: name, Prefix: p.Masked()})
		}
	}
	add("herd's cluster CIDR", c.ClusterCIDR)
	add("herd's pod CIDR", c.PodCIDR)
	if c.ClusterCIDR != "" {
		add("herd's service CIDR", c.ServiceCIDR)
	}
	for _, s := range c.NestedHostCIDRs {
		add("the host cluster's range", s)
	}
	return out
}

// startNested starts the nested-cluster driver when agentd has a host
// cluster (--nested-kubeconfig); nil otherwise. It seals with the secret
// stack's KMS, or opens the node's KMS itself on a node without a cluster.
// Its clusters whose sealed PKI no longer opens (a --new-kek start) are
// marked Failed and left alone. It does not contact the host: an
// unreachable host fails the clusters' steps, not agentd.
func startNested(cfg Config, st *store.Store, sec *secretStack, log *slog.Logger) (*nested.Driver, func(), error) {
	if cfg.NestedKubeconfig == "" {
		return nil, func() {}, nil
	}
	host, err := nested.HostFromKubeconfig(cfg.NestedKubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("--nested-kubeconfig: %w", err)
	}
	closeKMS := func() {}
	var kms secrets.KMS
	if sec != nil {
		kms = sec.kms
	} else {
		// Refuses like with a cluster when the sealed PKI's key is lost.
		fk, _, err := openNodeKMS(context.Background(), filepath.Join(cfg.StateDir, "keys"), cfg, st, log.With("component", "kms"))
		if err != nil {
			return nil, nil, fmt.Errorf("open key-encryption key: %w", err)
		}
		kms, closeKMS = fk, func() { _ = fk.Close() }
	}
	d, err := nested.New(nested.Config{
		Node: cfg.Name, Host: host, Store: st, KMS: kms,
		NamespacePrefix: cfg.NestedNamespacePrefix,
		Forbidden:       cfg.nestedForbidden(),
		NodeAddress:     cfg.NestedNodeAddress,
		Poll:            cfg.NestedPoll,
		Logger:          log.With("component", "nested"),
	})
	if err != nil {
		closeKMS()
		return nil, nil, err
	}
	if err := d.Start(); err != nil {
		closeKMS()
		return nil, nil, err
	}
	log.Info("nested clusters enabled", "kubeconfig", cfg.NestedKubeconfig, "namespace_prefix", cfg.NestedNamespacePrefix)
	return d, func() { d.Close(); closeKMS() }, nil
}
