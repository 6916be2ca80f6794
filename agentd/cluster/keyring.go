package cluster

import (
	"bytes"
	"errors"
	"fmt"
)

// Gossip key rotation, memberlist's way: every member installs the new
// key (it then decrypts with either), then every member encrypts with it,
// then every member drops the old one. No member ever receives a message
// it cannot decrypt, so there is no downtime. The order across members is
// the caller's to keep.

// InstallKey adds key to the keys this node decrypts gossip with.
func (c *Cluster) InstallKey(key []byte) error {
	if len(key) != 32 {
		return fmt.Errorf("cluster: install gossip key: want 32 bytes, got %d", len(key))
	}
	if err := c.keyring.AddKey(bytes.Clone(key)); err != nil {
		return fmt.Errorf("cluster: install gossip key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the one this node encrypts with.
func (c *Cluster) UseKey(key []byte) error {
	if !c.hasKey(key) {
		return errors.New("cluster: use gossip key: not installed")
	}
	if err := c.keyring.UseKey(key); err != nil {
		return fmt.Errorf("cluster: use gossip key: %w", err)
	}
	return nil
}

// RemoveOtherKeys drops every key but key, which must be in use.
func (c *Cluster) RemoveOtherKeys(key []byte) error {
	if !bytes.Equal(c.keyring.GetPrimaryKey(), key) {
		return errors.New("cluster: remove old gossip keys: the new key is not in use here yet")
	}
	for _, k := range c.keyring.GetKeys() {
		if bytes.Equal(k, key) {
			continue
		}
		if err := c.keyring.RemoveKey(k); err != nil {
			return fmt.Errorf("cluster: remove an old gossip key: %w", err)
		}
	}
	return nil
}

// KeyCount is how many gossip keys this node holds (1 outside a rotation).
func (c *Cluster) KeyCount() int { return len(c.keyring.GetKeys()) }

func (c *Cluster) hasKey(key []byte) bool {
	for _, k := range c.keyring.GetKeys() {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}
