package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herd-project/terraform-provider-herd/agentd/nested"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
)

// openNodeKMS opens the node's key directory dir like secrets.OpenNodeKMS
// and refuses to start the same way while a nested cluster's sealed PKI
// needs a key-encryption key that is missing or broken. Unlike a secret,
// that PKI cannot be fetched from another node: --new-kek lets agentd
// start anyway, and the nested driver then marks those clusters Failed.
func openNodeKMS(ctx context.Context, dir string, cfg Config, st *store.Store, log *slog.Logger) (*secrets.FileKMS, *secrets.Recovery, error) {
	byKey, err := nested.SealedKeyIDs(st)
	if err != nil {
		return nil, nil, err
	}
	// Missing files first: OpenNodeKMS would create a new current key
	// when no secret needs the lost one, before the refusal.
	if !cfg.NewKEK {
		for _, id := range slices.Sorted(maps.Keys(byKey)) {
			if id == "" || strings.ContainsAny(id, `/\.`) {
				continue // not a file name: CheckSealed below names it
			}
			path := filepath.Join(dir, "kek-"+id)
			if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
				return nil, nil, &nestedKEKLostError{
					KEKLostError: &secrets.KEKLostError{Dir: dir, Path: path, Reason: "is missing"},
					clusters:     byKey[id],
				}
			}
		}
	}
	kms, recovery, err := secrets.OpenNodeKMS(ctx, dir, st, cfg.NewKEK, log)
	if kl := (*secrets.KEKLostError)(nil); errors.As(err, &kl) {
		var clusters []string
		if id, ok := strings.CutPrefix(filepath.Base(kl.Path), "kek-"); ok {
			clusters = byKey[id]
		}
		return nil, nil, &nestedKEKLostError{KEKLostError: kl, clusters: clusters}
	}
	if err != nil {
		return nil, nil, err
	}
	bad, err := nested.CheckSealed(ctx, cfg.Name, st, kms)
	if err != nil {
		_ = kms.Close()
		return nil, nil, err
	}
	if len(bad) == 0 {
		return kms, recovery, nil
	}
	var names []string
	for _, u := range bad {
		names = append(names, u.Cluster)
	}
	if cfg.NewKEK {
		log.Warn("--new-kek: the PKI of these nested clusters cannot be opened and no other node holds a copy: they are marked Failed (their sealed PKI is kept); delete and recreate them, or restore the old key-encryption key",
			"clusters", strings.Join(names, ","))
		return kms, recovery, nil
	}
	_ = kms.Close()
	u := bad[0]
	kl := &secrets.KEKLostError{Dir: dir, Path: filepath.Join(dir, "kek-"+u.KeyID), Reason: "does not open the sealed PKI of nested cluster " + u.Cluster + " (" + u.Err.Error() + ")"}
	if errors.Is(u.Err, secrets.ErrUnknownKey) {
		kl.Reason = "is missing"
	}
	if u.KeyID == "" || strings.ContainsAny(u.KeyID, `/\.`) {
		kl.Path, kl.Reason = "of nested cluster "+u.Cluster, "cannot be named (its sealed data is malformed)"
	}
	return nil, nil, &nestedKEKLostError{KEKLostError: kl, clusters: names}
}

// nestedKEKLostError is secrets' refusal that also names the nested
// clusters whose PKI hangs on the key at fault.
type nestedKEKLostError struct {
	*secrets.KEKLostError
	clusters []string
}

func (e *nestedKEKLostError) Error() string {
	msg := e.KEKLostError.Error()
	if len(e.clusters) == 0 {
		return msg
	}
	return msg + fmt.Sprintf(". The PKI of nested cluster(s) %s is sealed with that key-encryption key too, and no other node holds a copy,"+
		" so --new-kek cannot fetch it back: it marks them Failed (delete and recreate them), while restoring the key loses nothing",
		strings.Join(e.clusters, ", "))
}

func (e *nestedKEKLostError) Unwrap() error { return e.KEKLostError }
