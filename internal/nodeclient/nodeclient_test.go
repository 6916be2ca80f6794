package nodeclient

import (
	"strings"
	"testing"
)

func TestDialNeedsTLSForTCP(t *testing.T) {
	if _, err := Dial("n", "127.0.0.1:1", TLSMaterial{}); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("want a mutual TLS error, got %v", err)
	}
	conn, err := Dial("n", "unix:///nonexistent.sock", TLSMaterial{})
	if err != nil {
		t.Fatalf("unix dial is lazy and needs no TLS: %v", err)
	}
	conn.Close()
}
