package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func withLog(w *lockedBuffer) nodeOpt {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// deliver hands env to c the way memberlist does: as a gossip message, or
// as the remote state of a push/pull from member z.
func deliver(t *testing.T, c *Cluster, pushPull bool, env envelope) {
	t.Helper()
	env = signEnv(t, env)
	if pushPull {
		env.From, env.Full = "z", true
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if pushPull {
		(*delegate)(c).MergeRemoteState(b, false)
	} else {
		(*delegate)(c).NotifyMsg(b)
	}
}

func clockOf(c *Cluster) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clock
}

// TestMergeRefusesVersionsFarAhead: through both merge paths memberlist
// calls, an object whose version is more than 2^32 ahead of the receiver's
// clock, or an entry whose sequence number or epoch jumps likewise, is
// neither stored nor moves the clock, and is logged without its value;
// ordinary ones are merged.
func TestMergeRefusesVersionsFarAhead(t *testing.T) {
	var logs lockedBuffer
	a := newNode(t, "a", withLog(&logs))
	join(t, a)
	now := time.Now().UnixNano()
	const secret = "do-not-log-me"
	for _, pushPull := range []bool{false, true} {
		for i, tc := range []struct {
			name   string
			obj    func(clock uint64) uint64 // the object's version, given a's clock
			seq    uint64                    // else an entry: its seq above its epoch...
			epoch  int64                     // ...and its epoch (0: now)
			maxSeq bool                      // seq 2^64-1
			ok     bool
		}{
			{name: "object at 2^64-1", obj: func(uint64) uint64 { return math.MaxUint64 }},
			{name: "object 2^32+1 ahead", obj: func(c uint64) uint64 { return c + 1<<32 + 1 }},
			{name: "object 2^32 ahead", obj: func(c uint64) uint64 { return c + 1<<32 }, ok: true},
			{name: "object next version", obj: func(c uint64) uint64 { return c + 1 }, ok: true},
			{name: "entry at 2^64-1", maxSeq: true},
			{name: "entry 2^32+1 past its epoch", seq: 1<<32 + 1},
			{name: "entry epoch a day ahead", seq: 1, epoch: now + int64(24*time.Hour)},
			{name: "entry next seq", seq: 1, ok: true},
		} {
			t.Run(fmt.Sprintf("%s/pushpull=%v", tc.name, pushPull), func(t *testing.T) {
				key := fmt.Sprintf("k%d-%v", i, pushPull)
				before := clockOf(a)
				if tc.obj != nil {
					v := tc.obj(before)
					deliver(t, a, pushPull, envelope{Objects: []wireObject{{Kind: "service", Key: key, Value: []byte(secret), Version: v, Writer: "z"}}})
					o, stored := a.Get("service", key)
					if stored != tc.ok || (stored && o.Version != v) {
						t.Fatalf("stored %v (%+v), want %v", stored, o, tc.ok)
					}
					after := clockOf(a)
					if tc.ok && after != v {
						t.Errorf("clock %d after accepting version %d", after, v)
					}
					if !tc.ok {
						if after != before {
							t.Errorf("clock moved %d -> %d", before, after)
						}
						if want := fmt.Sprintf("key=%s version=%d", key, v); !strings.Contains(logs.String(), want) {
							t.Errorf("no warning with %q in %s", want, logs.String())
						}
					}
					return
				}
				epoch := tc.epoch
				if epoch == 0 {
					epoch = now
				}
				seq := uint64(epoch) + tc.seq
				if tc.maxSeq {
					seq = math.MaxUint64
				}
				deliver(t, a, pushPull, envelope{Entries: []wireEntry{{Owner: "z", Epoch: epoch, Seq: seq, Kind: "endpoint", Key: key, Value: []byte(secret)}}})
				got, stored := a.EntrySeq("z", "endpoint", key)
				if stored != tc.ok || (stored && got != seq) {
					t.Fatalf("stored %v (seq %d), want %v (seq %d)", stored, got, tc.ok, seq)
				}
				if !tc.ok {
					if want := fmt.Sprintf("key=%s epoch=%d version=%d", key, epoch, seq); !strings.Contains(logs.String(), want) {
						t.Errorf("no warning with %q in %s", want, logs.String())
					}
				}
			})
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("a value was logged: %s", logs.String())
	}
}
