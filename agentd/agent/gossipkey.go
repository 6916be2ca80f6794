package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
)

// mGossipKey is the node-to-node method of gossip key rotation.
const mGossipKey = "gossip.key"

// checksumKeyCopy is where a node that took its secret checksum key from
// the gossip key keeps a copy of it before the gossip key changes, so that
// the checksums do not change with it.
const checksumKeyCopy = "secret-checksum.key"

// Rotation phases, run on every live member before the next.
const (
	phaseInstall = "install"
	phaseUse     = "use"
	phaseRemove  = "remove"
)

type gossipKeyReq struct {
	Phase string `json:"phase"`
	Key   []byte `json:"key"`
}

// gossipKeys rotates the cluster's gossip key (server.GossipKeyRotator)
// and serves this node's part of a rotation.
type gossipKeys struct {
	cfg   Config
	cl    *cluster.Cluster
	calls *peers.Caller
	log   *slog.Logger
}

func newGossipKeys(cfg Config, cl *cluster.Cluster, p *peerStack, log *slog.Logger) *gossipKeys {
	g := &gossipKeys{cfg: cfg, cl: cl, calls: p.calls, log: log.With("component", "gossip-key")}
	p.handlers.Handle(mGossipKey, g.handle)
	return g
}

// Rotate makes a new key and takes every live member through the phases.
func (g *gossipKeys) Rotate(ctx context.Context) (members, notReached []string, err error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, fmt.Errorf("make a key: %w", err)
	}
	for _, m := range g.cl.Members() {
		if m.State == cluster.StateAlive {
			members = append(members, m.Name)
		} else {
			notReached = append(notReached, m.Name)
		}
	}
	if len(members) == 0 {
		members = []string{g.cl.Name()}
	}
	sort.Strings(members)
	sort.Strings(notReached)
	for _, phase := range []string{phaseInstall, phaseUse, phaseRemove} {
		b, err := json.Marshal(gossipKeyReq{Phase: phase, Key: key})
		if err != nil {
			return nil, nil, err
		}
		for _, m := range members {
			if _, err := g.calls.Call(ctx, m, mGossipKey, b); err != nil {
				return nil, nil, fmt.Errorf("%s the new key on %s (phases before reached every member; nothing is lost, run it again): %w", phase, m, err)
			}
		}
	}
	return members, notReached, nil
}

func (g *gossipKeys) handle(_ context.Context, from string, b []byte) ([]byte, error) {
	var req gossipKeyReq
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errors.New("bad gossip key request")
	}
	switch req.Phase {
	case phaseInstall:
		if err := g.keepChecksumKey(); err != nil {
			return nil, err
		}
		if err := g.cl.InstallKey(req.Key); err != nil {
			return nil, err
		}
	case phaseUse:
		if err := g.cl.UseKey(req.Key); err != nil {
			return nil, err
		}
		// The next start uses the new key: members drop the old one next.
		if err := writeKeyFile(g.cfg.GossipKeyFile, req.Key); err != nil {
			return nil, fmt.Errorf("write --gossip-key: %w", err)
		}
	case phaseRemove:
		if err := g.cl.RemoveOtherKeys(req.Key); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown gossip key phase %q", req.Phase)
	}
	g.log.Info("gossip key rotation", "phase", req.Phase, "by", from)
	return nil, nil
}

// keepChecksumKey saves the key the secret checksums derive from before
// the gossip key file changes, when that file is where it comes from.
func (g *gossipKeys) keepChecksumKey() error {
	if g.cfg.SecretChecksumKeyFile != "" {
		return nil
	}
	path := filepath.Join(g.cfg.StateDir, checksumKeyCopy)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key, err := g.cfg.gossipKey()
	if err != nil {
		return err
	}
	if err := writeKeyFile(path, key); err != nil {
		return fmt.Errorf("keep the secret checksum key: %w", err)
	}
	return nil
}

// writeKeyFile replaces a key file atomically (base64, 0600).
func writeKeyFile(path string, key []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
