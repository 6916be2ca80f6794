package cluster

import (
	"fmt"
	"testing"
	"time"
)

// TestEntrySeq: the sequence number of an entry, on its owner and on a
// peer: it grows with every change (a withdrawal leaves a tombstone that
// still has one), an unchanged republish keeps it, and the owner's next
// life continues above its earlier one.
func TestEntrySeq(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	join(t, a)
	join(t, b, a)
	waitMembers(t, []string{"a", "b"}, a, b)

	if _, ok := a.EntrySeq("a", "endpoint", "web"); ok {
		t.Fatal("a seq before anything was published")
	}
	seenBy := func(c *Cluster, want uint64) func() string {
		return func() string {
			got, ok := c.EntrySeq("a", "endpoint", "web")
			if !ok || got != want {
				return fmt.Sprintf("%s holds seq %d (present %v), want %d", c.Name(), got, ok, want)
			}
			return ""
		}
	}
	if err := a.PublishLocal("endpoint", "web", []byte("1")); err != nil {
		t.Fatal(err)
	}
	s1, ok := a.EntrySeq("a", "endpoint", "web")
	if !ok {
		t.Fatal("no seq after PublishLocal")
	}
	eventually(t, 10*time.Second, seenBy(b, s1))

	if err := a.PublishLocal("endpoint", "web", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.EntrySeq("a", "endpoint", "web"); got != s1 {
		t.Errorf("unchanged republish moved seq %d -> %d", s1, got)
	}
	if err := a.WithdrawLocal("endpoint", "web"); err != nil {
		t.Fatal(err)
	}
	s2, ok := a.EntrySeq("a", "endpoint", "web")
	if !ok || s2 <= s1 {
		t.Fatalf("after withdraw: seq %d (present %v), want > %d", s2, ok, s1)
	}
	eventually(t, 10*time.Second, seenBy(b, s2))
	if got := b.Entries("endpoint"); len(got) != 0 {
		t.Errorf("b still lists a withdrawn entry: %v", got)
	}

	// a restarts: b drops its entries of the earlier life, and the new
	// life's numbers are above the old ones.
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	a2 := newNode(t, "a")
	join(t, a2, b)
	if err := a2.PublishLocal("endpoint", "web", []byte("2")); err != nil {
		t.Fatal(err)
	}
	s3, _ := a2.EntrySeq("a", "endpoint", "web")
	if s3 <= s2 {
		t.Fatalf("next life's seq %d not above the earlier life's %d", s3, s2)
	}
	eventually(t, 20*time.Second, seenBy(b, s3))
}
