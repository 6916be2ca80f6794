package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A pull's watchdog cancels it when it waits on its registry without
// receiving anything:
//
//   - for the stall window at a stretch (ErrPullStalled): a registry that
//     accepted the connection and stopped answering, whether to the
//     manifest request of the resolve step or in the middle of a layer;
//   - for the pull timeout in total (ErrPullTimedOut): a registry that
//     trickles a few bytes now and then, or answers each of many requests
//     only just before the stall window.
//
// Time in which bytes arrive never counts, so a large image on a slow link
// is pulled however long it takes; nor does time with no registry request
// open (containerd unpacking a layer). Progress is watched where the bytes
// come in: the resolver's Resolve, its fetchers' Fetch and the bodies they
// return are wrapped and counted.

// Defaults of WithPullTimeouts.
const (
	DefaultPullTimeout      = 5 * time.Minute
	DefaultPullStallTimeout = time.Minute
)

// Errors of a pull the watchdog canceled. The errors returned wrap them
// and name the registry host and the image.
var (
	ErrPullStalled  = errors.New("image pull stalled")
	ErrPullTimedOut = errors.New("image pull timed out")
)

// WithPullTimeouts bounds this pull's waits on its registry: it is
// canceled when it receives nothing for stall at a stretch, or for timeout
// in total. Zero keeps the Runtime's (Config.PullTimeout, PullStallTimeout).
func WithPullTimeouts(timeout, stall time.Duration) PullOption {
	return func(o *pullOpts) {
		if timeout > 0 {
			o.timeout = timeout
		}
		if stall > 0 {
			o.stall = stall
		}
	}
}

// pullWatch is the watchdog of one pull.
type pullWatch struct {
	host, image    string
	timeout, stall time.Duration

	// events counts what shows the registry is alive: a request begun or
	// answered, bytes received. open counts requests and bodies open.
	events atomic.Int64
	open   atomic.Int64

	// Only check touches these.
	seen         int64
	lastCheck    time.Time
	lastProgress time.Time
	waited       time.Duration
}

func newPullWatch(host, image string, timeout, stall time.Duration, now time.Time) *pullWatch {
	return &pullWatch{host: host, image: image, timeout: timeout, stall: stall, lastCheck: now, lastProgress: now}
}

// interval is how often run checks: a tenth of the shorter limit, so a
// stall is noticed within 10 % of its window (between 10 ms and 5 s).
func (w *pullWatch) interval() time.Duration {
	return min(max(min(w.stall, w.timeout)/10, 10*time.Millisecond), 5*time.Second)
}

// run checks the pull until ctx ends, and cancels it with the reason when
// a check fails.
func (w *pullWatch) run(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(w.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := w.check(now); err != nil {
				cancel(err)
				return
			}
		}
	}
}

// check accounts for the time since the last check and returns why the
// pull must be canceled, or nil. A period counts as waiting when a request
// was open throughout and nothing happened.
func (w *pullWatch) check(now time.Time) error {
	ev := w.events.Load()
	elapsed := now.Sub(w.lastCheck)
	w.lastCheck = now
	if ev != w.seen || w.open.Load() == 0 {
		w.seen, w.lastProgress = ev, now
		return nil
	}
	w.waited += elapsed
	if now.Sub(w.lastProgress) >= w.stall {
		return fmt.Errorf("%w: no progress for %s from %s (pulling %s)", ErrPullStalled, w.stall, w.host, w.image)
	}
	if w.waited >= w.timeout {
		return fmt.Errorf("%w: waited %s in total for %s without progress (pulling %s)", ErrPullTimedOut, w.timeout, w.host, w.image)
	}
	return nil
}

func (w *pullWatch) begin() { w.open.Add(1); w.events.Add(1) }
func (w *pullWatch) end()   { w.open.Add(-1); w.events.Add(1) }

// resolver wraps r so that w sees its requests and bytes.
func (w *pullWatch) resolver(r remotes.Resolver) remotes.Resolver {
	return &watchedResolver{Resolver: r, w: w}
}

type watchedResolver struct {
	remotes.Resolver // Pusher as it is: pulls do not push
	w                *pullWatch
}

// SetOptions passes client.Pull's options (concurrency, limiter) on.
func (r *watchedResolver) SetOptions(opts ...transfer.ImageResolverOption) {
	if ro, ok := r.Resolver.(remotes.ResolverWithOptions); ok {
		ro.SetOptions(opts...)
	}
}

func (r *watchedResolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	r.w.begin()
	defer r.w.end()
	return r.Resolver.Resolve(ctx, ref)
}

func (r *watchedResolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	f, err := r.Resolver.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &watchedFetcher{f: f, w: r.w}, nil
}

type watchedFetcher struct {
	f remotes.Fetcher
	w *pullWatch
}

func (f *watchedFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	f.w.begin()
	rc, err := f.f.Fetch(ctx, desc)
	if err != nil {
		f.w.end()
		return nil, err
	}
	return f.w.body(rc), nil
}

// FetchByDigest keeps the wrapped fetcher's optional interface.
func (f *watchedFetcher) FetchByDigest(ctx context.Context, dgst digest.Digest, opts ...remotes.FetchByDigestOpts) (io.ReadCloser, ocispec.Descriptor, error) {
	fd, ok := f.f.(remotes.FetcherByDigest)
	if !ok {
		return nil, ocispec.Descriptor{}, fmt.Errorf("fetch %s: fetcher %T cannot fetch by digest", dgst, f.f)
	}
	f.w.begin()
	rc, desc, err := fd.FetchByDigest(ctx, dgst, opts...)
	if err != nil {
		f.w.end()
		return nil, desc, err
	}
	return f.w.body(rc), desc, nil
}

// body counts what is read from rc; the request it answers stays open
// until it is closed. A seekable body stays seekable: content.Copy seeks
// to resume an interrupted download instead of reading it again.
func (w *pullWatch) body(rc io.ReadCloser) io.ReadCloser {
	w.events.Add(1) // the registry answered
	b := &watchedBody{rc: rc, w: w}
	if s, ok := rc.(io.Seeker); ok {
		return &seekableBody{watchedBody: b, s: s}
	}
	return b
}

type watchedBody struct {
	rc     io.ReadCloser
	w      *pullWatch
	closed atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.events.Add(1)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.w.end()
	}
	return b.rc.Close()
}

type seekableBody struct {
	*watchedBody
	s io.Seeker
}

func (b *seekableBody) Seek(offset int64, whence int) (int64, error) {
	return b.s.Seek(offset, whence)
}
