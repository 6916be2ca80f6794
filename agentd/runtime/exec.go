package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
)

// MaxExecOutput caps the output Exec keeps (the kubelet keeps 10 KiB of a
// probe's output too): the first bytes, the rest is dropped.
const MaxExecOutput = 10 << 10

// ErrExecTimeout is wrapped by Exec's error when the command ran out of
// time and was killed.
var ErrExecTimeout = errors.New("command timed out")

// ExecResult is how a command run in a container ended.
type ExecResult struct {
	Code uint32
	// Output is stdout and stderr (in no reliable order between the two),
	// at most MaxExecOutput bytes.
	Output []byte
	// Truncated says that output beyond MaxExecOutput was dropped.
	Truncated bool
}

// Exec runs argv in the running task of the herd-managed container id,
// with the container's own process settings (user, environment, working
// directory, capabilities), as `ctr task exec` does. It returns once the
// command exited; after timeout (0: none) the command is SIGKILLed and the
// error wraps ErrExecTimeout. A non-zero exit is not an error: it is in
// the result.
func (r *Runtime) Exec(ctx context.Context, id string, argv []string, timeout time.Duration) (ExecResult, error) {
	if len(argv) == 0 {
		return ExecResult{}, fmt.Errorf("exec in %s: no command", id)
	}
	c, err := r.LoadContainer(ctx, id)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s: %w", id, err)
	}
	ctx = r.Context(ctx)
	spec, err := c.c.Spec(ctx)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s: read container spec: %w", id, err)
	}
	if spec.Process == nil {
		return ExecResult{}, fmt.Errorf("exec in %s: the container spec has no process", id)
	}
	task, err := c.c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ExecResult{}, fmt.Errorf("exec in %s: task: %w", id, ErrNotFound)
		}
		return ExecResult{}, fmt.Errorf("exec in %s: task: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Terminal = false
	pspec.Args = append([]string(nil), argv...)

	out := &cappedBuffer{max: MaxExecOutput}
	proc, err := task.Exec(ctx, newExecID(), &pspec, cio.NewCreator(cio.WithStreams(nil, out, out)))
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s: %w", id, err)
	}
	// The exec process must go whatever happens next: delete it on a
	// context of its own so that a canceled ctx still cleans up.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
		defer cancel()
		if _, err := proc.Delete(dctx); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("delete exec process", "container", id, "err", err)
		}
	}()
	statusC, err := proc.Wait(ctx)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s: wait: %w", id, err)
	}
	if err := proc.Start(ctx); err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s: start %q: %w", id, argv[0], err)
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case st := <-statusC:
		code, _, err := st.Result()
		if err != nil {
			return ExecResult{}, fmt.Errorf("exec in %s: %w", id, err)
		}
		// The exit can overtake the last output: let the copiers finish.
		proc.IO().Wait()
		data, truncated := out.result()
		return ExecResult{Code: code, Output: data, Truncated: truncated}, nil
	case <-expired:
		r.killExec(ctx, proc, statusC, id)
		data, truncated := out.result()
		return ExecResult{Code: 137, Output: data, Truncated: truncated}, fmt.Errorf("exec in %s: %q: %w after %s", id, argv[0], ErrExecTimeout, timeout)
	case <-ctx.Done():
		r.killExec(ctx, proc, statusC, id)
		return ExecResult{}, fmt.Errorf("exec in %s: %w", id, ctx.Err())
	}
}

// killExec SIGKILLs an exec process and waits (bounded) for its exit, so
// that the delete that follows does not find it running.
func (r *Runtime) killExec(ctx context.Context, proc client.Process, statusC <-chan client.ExitStatus, id string) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	defer cancel()
	if err := proc.Kill(kctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("kill exec process", "container", id, "err", err)
		return
	}
	select {
	case <-statusC:
	case <-kctx.Done():
	}
}

// newExecID returns a fresh exec process ID (containerd requires one per
// task, unique among its running execs).
func newExecID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "herd-exec-" + hex.EncodeToString(b[:])
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// never blocking the writer (a chatty command must not stall on its pipe).
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	switch {
	case room >= len(p):
		b.buf = append(b.buf, p...)
	default:
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.truncated = true
	}
	return len(p), nil
}

func (b *cappedBuffer) result() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...), b.truncated
}
