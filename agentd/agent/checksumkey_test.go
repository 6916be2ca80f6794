package agent

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
)

// The secret checksum key comes from its own file when one is given, else
// from the gossip key (so existing clusters keep their checksums); a copy
// of the gossip key gives the same checksums, so the gossip key can then
// change without changing any checksum. Errors never show a key.
func TestChecksumKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, key []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gossip := bytes.Repeat([]byte{1}, 32)
	own := bytes.Repeat([]byte{2}, 32)
	gossipFile := write("gossip.key", gossip)
	copyFile := write("checksum-copy.key", gossip)
	ownFile := write("checksum.key", own)
	short := write("short.key", []byte("0123456789"))
	data := map[string][]byte{"password": []byte("s3cret")}
	sum := func(t *testing.T, c Config) string {
		t.Helper()
		k, err := c.checksumKey()
		if err != nil {
			t.Fatal(err)
		}
		return secrets.Checksum(secrets.DeriveClusterKey(k), data)
	}
	legacy := sum(t, Config{GossipKeyFile: gossipFile})
	if got := sum(t, Config{GossipKeyFile: write("rotated.key", bytes.Repeat([]byte{3}, 32)), SecretChecksumKeyFile: copyFile}); got != legacy {
		t.Errorf("with a copy of the old gossip key and a new gossip key: checksum %s, want %s", got, legacy)
	}
	if got := sum(t, Config{GossipKeyFile: gossipFile, SecretChecksumKeyFile: ownFile}); got == legacy {
		t.Error("a checksum key of its own gives the gossip key's checksums")
	}
	_, err := (&Config{GossipKeyFile: gossipFile, SecretChecksumKeyFile: short}).checksumKey()
	if err == nil || !strings.Contains(err.Error(), "secret checksum key short.key: want 32 bytes") {
		t.Errorf("short key: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "MDEyMzQ1Njc4OQ") {
		t.Error("the error shows the key")
	}
}
