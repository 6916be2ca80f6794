package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/pods"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
)

// secretStack is the node's secret machinery: the key-encryption key, the
// sealed vault in bbolt and the replicator that serves the API.
type secretStack struct {
	kms *secrets.FileKMS
	rep *secrets.Replicator
}

// prepareSecrets opens the node's KEK (created at first start, 0600, under
// the state dir) and the vault, and registers the replication handlers
// with the node-to-node calls (mTLS between members, PeerService.Call).
func prepareSecrets(cfg Config, cl *cluster.Cluster, calls secrets.Peers, st *store.Store, log *slog.Logger) (*secretStack, error) {
	checksumKey, err := cfg.checksumKey()
	if err != nil {
		return nil, err
	}
	kms, recovery, err := openNodeKMS(context.Background(), filepath.Join(cfg.StateDir, "keys"), cfg, st, log.With("component", "kms"))
	if err != nil {
		return nil, fmt.Errorf("open key-encryption key: %w", err)
	}
	labels := func() map[string]string {
		l, err := st.GetNodeLabels()
		if err != nil {
			log.Warn("read node labels", "err", err)
		}
		return l
	}
	rep, err := secrets.NewReplicator(secrets.Config{
		Vault:      secrets.NewVault(st, kms),
		Peers:      calls,
		Labels:     labels,
		ClusterKey: secrets.DeriveClusterKey(checksumKey),
		Resync:     cfg.SecretResync,
		Recovery:   recovery,
		Logger:     log.With("component", "secrets"),
	})
	if err != nil {
		_ = kms.Close()
		return nil, err
	}
	if err := cl.SetLabels(labels()); err != nil {
		_ = kms.Close()
		return nil, fmt.Errorf("publish node labels: %w", err)
	}
	return &secretStack{kms: kms, rep: rep}, nil
}

// source is the pod manager's view of the vault; nil without a cluster.
func (s *secretStack) source() pods.SecretSource {
	if s == nil {
		return nil
	}
	return secretSource{s.rep}
}

func (s *secretStack) close() {
	s.rep.Close()
	_ = s.kms.Close()
}

// rewrapper is another holder of data keys wrapped by the node's KMS.
type rewrapper interface {
	RewrapKeys(ctx context.Context) (int, error)
}

// secretAPI adapts the stack to the server.
type secretAPI struct {
	*secrets.Replicator
	kms *secrets.FileKMS
	// alsoSealed holds other material sealed with the same KMS (nested
	// clusters' PKI); a rotation re-wraps it too. May be nil.
	alsoSealed rewrapper
}

// RotateKey makes a new key-encryption key current and re-wraps every data
// key the node holds with it: secrets', and the nested clusters'.
func (a secretAPI) RotateKey(ctx context.Context) (string, int, error) {
	id, err := a.kms.Rotate(ctx)
	if err != nil {
		return "", 0, err
	}
	n, err := a.Replicator.RotateKey(ctx)
	if err != nil || a.alsoSealed == nil {
		return id, n, err
	}
	m, err := a.alsoSealed.RewrapKeys(ctx)
	return id, n + m, err
}

// secretSource adapts the replicator to the pod manager.
type secretSource struct{ rep *secrets.Replicator }

func (s secretSource) Secret(ctx context.Context, namespace, name string) (pods.SecretData, error) {
	rec, data, err := s.rep.Reveal(ctx, namespace, name)
	if err != nil {
		if !errors.Is(err, secrets.ErrNotHeld) {
			return pods.SecretData{}, err
		}
		why, _ := s.rep.Why(ctx, namespace, name)
		if why == "" {
			why = "secret " + secrets.SecretKey(namespace, name) + " is not held by this node"
		}
		return pods.SecretData{}, fmt.Errorf("%s: %w", why, pods.ErrSecretUnavailable)
	}
	return pods.SecretData{Type: rec.Type, Data: data, Checksum: rec.Checksum}, nil
}

// publishingLabels stores node labels and publishes them to the cluster,
// so that secret selectors see them, then lets the secrets re-evaluate.
type publishingLabels struct {
	st  *store.Store
	cl  *cluster.Cluster
	sec *secretStack
}

func (p publishingLabels) GetNodeLabels() (map[string]string, error) { return p.st.GetNodeLabels() }

func (p publishingLabels) SetNodeLabels(l map[string]string) error {
	if err := p.st.SetNodeLabels(l); err != nil {
		return err
	}
	if err := p.cl.SetLabels(maps.Clone(l)); err != nil {
		return fmt.Errorf("publish node labels: %w", err)
	}
	p.sec.rep.Kick()
	return nil
}
