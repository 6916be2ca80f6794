package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// secretReq stands for a payload that must never appear in an error text.
var secretReq = []byte("s3cr3t-payload")

// echoFrom answers "<from>:<req>".
func echoFrom(_ context.Context, from string, req []byte) ([]byte, error) {
	return append([]byte(from+":"), req...), nil
}

func failing(context.Context, string, []byte) ([]byte, error) {
	return nil, errors.New("boom: no such secret")
}

// trap fails the test when called: c must never see a call addressed to
// another member.
func trap(t *testing.T, name string) func(context.Context, string, []byte) ([]byte, error) {
	return func(_ context.Context, from string, _ []byte) ([]byte, error) {
		t.Errorf("%s got a call from %s addressed to another member", name, from)
		return nil, nil
	}
}

func pendingCalls(c *Cluster) int {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	return len(c.pending)
}

func TestCall(t *testing.T) {
	a, b, c := cluster3(t)
	for _, n := range []*Cluster{a, b} {
		n.Handle("echo", echoFrom)
		n.Handle("fail", failing)
	}
	for _, m := range []string{"echo", "fail", "nope", "block"} {
		c.Handle(m, trap(t, "c"))
	}
	handlerCtxDone := make(chan error, 1)
	b.Handle("block", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		<-ctx.Done() // the caller's deadline travels with the request
		handlerCtxDone <- ctx.Err()
		return nil, ctx.Err()
	})

	a.Handle("block", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		<-ctx.Done() // a self call's handler gets the caller's context
		return nil, ctx.Err()
	})

	isNil := func(err error) string {
		if err != nil {
			return fmt.Sprintf("error %v", err)
		}
		return ""
	}
	is := func(target error) func(error) string {
		return func(err error) string {
			if !errors.Is(err, target) {
				return fmt.Sprintf("error %v, want %v", err, target)
			}
			return ""
		}
	}
	remote := func(node string) func(error) string {
		return func(err error) string {
			var re *RemoteError
			if !errors.As(err, &re) {
				return fmt.Sprintf("error %v (%T), want *RemoteError", err, err)
			}
			want := RemoteError{Node: node, Method: "fail", Msg: "boom: no such secret"}
			if *re != want {
				return fmt.Sprintf("RemoteError %+v, want %+v", *re, want)
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		from    *Cluster
		to      string
		method  string
		timeout time.Duration
		want    string
		check   func(error) string
	}{
		{"echo", a, "b", "echo", 0, "a:" + string(secretReq), isNil},
		{"echo back", b, "a", "echo", 0, "b:" + string(secretReq), isNil},
		{"self", a, "a", "echo", 0, "a:" + string(secretReq), isNil},
		{"unknown member", a, "nobody", "echo", 0, "", is(ErrNoMember)},
		{"no handler", a, "b", "nope", 0, "", is(ErrNoHandler)},
		{"no handler on self", a, "a", "nope", 0, "", is(ErrNoHandler)},
		{"handler error", a, "b", "fail", 0, "", remote("b")},
		{"handler error on self", b, "b", "fail", 0, "", remote("b")},
		{"timeout", a, "b", "block", 300 * time.Millisecond, "", is(context.DeadlineExceeded)},
		{"timeout on self", a, "a", "block", 300 * time.Millisecond, "", is(context.DeadlineExceeded)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if tt.timeout > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tt.timeout)
			}
			defer cancel()
			got, err := tt.from.Call(ctx, tt.to, tt.method, secretReq)
			if why := tt.check(err); why != "" {
				t.Fatal(why)
			}
			if string(got) != tt.want {
				t.Errorf("answer %q, want %q", got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), string(secretReq)) {
				t.Errorf("error text carries the payload: %v", err)
			}
		})
	}
	select {
	case err := <-handlerCtxDone:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("blocked handler's context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("blocked handler's context was not cancelled")
	}
	for _, n := range []*Cluster{a, b, c} {
		if p := pendingCalls(n); p != 0 {
			t.Errorf("%s keeps %d pending calls", n.Name(), p)
		}
	}

	// Replacing a handler takes effect; removing it makes the method unknown.
	b.Handle("echo", func(context.Context, string, []byte) ([]byte, error) { return []byte("v2"), nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := a.Call(ctx, "b", "echo", nil); err != nil || string(got) != "v2" {
		t.Errorf("replaced handler: %q %v", got, err)
	}
	b.Handle("echo", nil)
	if _, err := a.Call(ctx, "b", "echo", nil); !errors.Is(err, ErrNoHandler) {
		t.Errorf("removed handler: %v", err)
	}
}

func TestCallLargePayload(t *testing.T) {
	// 2 MiB of random bytes (a secret does not compress) takes a while to
	// LZW-compress under -race: give the stream memberlist's default timeout.
	slow := withTune(func(mc *memberlist.Config) { mc.TCPTimeout = 10 * time.Second })
	a, b := newNode(t, "a", slow), newNode(t, "b", slow)
	join(t, a)
	join(t, b, a)
	waitMembers(t, []string{"a", "b"}, a, b)
	b.Handle("echo", func(_ context.Context, _ string, req []byte) ([]byte, error) { return req, nil })
	b.Handle("huge", func(context.Context, string, []byte) ([]byte, error) {
		return make([]byte, maxCallPayload+1), nil
	})

	big := make([]byte, 2<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	got, err := a.Call(ctx, "b", "echo", big)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("2 MiB echo came back as %d different bytes", len(got))
	}
	t.Logf("2 MiB round trip in %v", time.Since(start))

	if _, err := a.Call(ctx, "b", "echo", make([]byte, maxCallPayload+1)); err == nil || errors.Is(err, ctx.Err()) {
		t.Errorf("oversized request: %v", err)
	}
	var re *RemoteError
	if _, err := a.Call(ctx, "b", "huge", nil); !errors.As(err, &re) || !strings.Contains(re.Msg, "exceeds") {
		t.Errorf("oversized response: %v", err)
	}
}

func TestCallConcurrent(t *testing.T) {
	a, b, c := cluster3(t)
	for _, n := range []*Cluster{a, b, c} {
		n.Handle("echo", func(_ context.Context, from string, req []byte) ([]byte, error) {
			time.Sleep(10 * time.Millisecond) // let calls overlap
			return fmt.Appendf(nil, "%s<-%s:%s", n.Name(), from, req), nil
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	targets := []string{"b", "c", "a"}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := targets[i%len(targets)]
			req := fmt.Sprintf("req-%d", i)
			got, err := a.Call(ctx, to, "echo", []byte(req))
			if want := to + "<-a:" + req; err != nil || string(got) != want {
				t.Errorf("call %d: %q %v, want %q", i, got, err, want)
			}
		}()
	}
	wg.Wait()
	if p := pendingCalls(a); p != 0 {
		t.Errorf("a keeps %d pending calls", p)
	}
}

func TestCallLateAndStrayReplies(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	join(t, a)
	join(t, b, a)
	waitMembers(t, []string{"a", "b"}, a, b)
	release := make(chan struct{})
	b.Handle("slow", func(context.Context, string, []byte) ([]byte, error) {
		<-release // ignores its context
		return []byte("late"), nil
	})

	// A reply naming the right id but coming from another member does not
	// answer the call.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := a.Call(ctx, "b", "slow", nil)
		done <- err
	}()
	var id uint64
	eventually(t, 5*time.Second, func() string {
		a.callMu.Lock()
		defer a.callMu.Unlock()
		for k := range a.pending {
			id = k
			return ""
		}
		return "no pending call"
	})
	forged, err := encodeCall(msgReply, callHeader{ID: id, From: "c"}, []byte("forged"))
	if err != nil {
		t.Fatal(err)
	}
	(*delegate)(a).NotifyMsg(forged)
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call answered by a forged reply: %v", err)
	}
	close(release)

	// The late reply (if any is sent) and one for an id never used are
	// dropped, and nothing stays behind.
	stray, _ := encodeCall(msgReply, callHeader{ID: id + 12345, From: "b"}, []byte("stray"))
	(*delegate)(a).NotifyMsg(stray)
	time.Sleep(500 * time.Millisecond)
	if p := pendingCalls(a); p != 0 {
		t.Errorf("a keeps %d pending calls", p)
	}
}

func TestCallMemberGone(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	join(t, a)
	join(t, b, a)
	waitMembers(t, []string{"a", "b"}, a, b)
	entered := make(chan struct{})
	cancelled := make(chan struct{})
	b.Handle("block", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), "b", "block", nil) // no deadline
		done <- err
	}()
	<-entered
	if err := b.Shutdown(); err != nil {
		t.Fatalf("shutting down b: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("Shutdown did not cancel the handler's context")
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoMember) {
			t.Errorf("call to a member that died: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("call to a member that died still waits")
	}

	// After Shutdown, calls fail at once.
	a.Handle("echo", echoFrom)
	if err := a.Shutdown(); err != nil {
		t.Fatalf("shutting down a: %v", err)
	}
	if _, err := a.Call(context.Background(), "a", "echo", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Shutdown: %v", err)
	}
}

func TestCallMessageFraming(t *testing.T) {
	a := newNode(t, "a")
	join(t, a)
	// Gossip envelopes still decode next to call messages.
	env, _ := json.Marshal(envelope{Objects: []wireObject{{Kind: "service", Key: "old", Value: []byte("v"), Version: 5, Writer: "z"}}})
	(*delegate)(a).NotifyMsg(env)
	if o, ok := a.Get("service", "old"); !ok || string(o.Value) != "v" {
		t.Errorf("envelope after adding calls: %+v %v", o, ok)
	}

	msg, err := encodeCall(msgCall, callHeader{ID: 7, From: "x", Method: "m", Timeout: 9}, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	kind, h, p, err := decodeCall(msg)
	if err != nil || kind != msgCall || h != (callHeader{ID: 7, From: "x", Method: "m", Timeout: 9}) || string(p) != "payload" {
		t.Errorf("round trip: %d %+v %q %v", kind, h, p, err)
	}
	msg[len(msg)-1] = 'X' // memberlist may reuse its buffer: the payload is a copy
	if string(p) != "payload" {
		t.Error("decoded payload aliases the message")
	}
	for _, bad := range [][]byte{
		{},
		{msgCall},
		{msgCall, 0xff},
		{msgReply, 50, '{'},
		{msgReply, 2, 'n', 'o'},
	} {
		if _, _, _, err := decodeCall(bad); err == nil {
			t.Errorf("decodeCall(%q) accepted", bad)
		}
		(*delegate)(a).NotifyMsg(bad) // logged and dropped, no panic
	}
}
