package secrets

import "context"

// RotateKey is run by the caller after the KMS made a new key current:
// every stored data key is re-wrapped with it.
func (r *Replicator) RotateKey(ctx context.Context) (int, error) {
	return r.cfg.Vault.RewrapAll(ctx)
}
