package runtime

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeResolver answers Resolve only when its context ends, and fetches
// bodies from body.
type fakeResolver struct {
	remotes.Resolver
	body func() io.ReadCloser
}

func (f *fakeResolver) Resolve(ctx context.Context, _ string) (string, ocispec.Descriptor, error) {
	<-ctx.Done()
	return "", ocispec.Descriptor{}, ctx.Err()
}

func (f *fakeResolver) Fetcher(context.Context, string) (remotes.Fetcher, error) {
	return remotes.FetcherFunc(func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
		return f.body(), nil
	}), nil
}

type seekableNopCloser struct{ *strings.Reader }

func (seekableNopCloser) Close() error { return nil }

// TestPullWatchCheck drives the watchdog with its own clock: each step
// advances it, reads from the open body, and checks.
func TestPullWatchCheck(t *testing.T) {
	const host, image = "registry.test:5000", "registry.test:5000/app:1"
	type step struct {
		advance time.Duration
		read    int  // bytes read from the body before the check
		close   bool // close the body before the check
	}
	repeat := func(n int, s ...step) []step {
		var out []step
		for range n {
			out = append(out, s...)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		open    string // "body": a fetched body is open; "resolve": a resolve waits; "": nothing
		steps   []step
		want    error // nil: the pull goes on through every step
		wantMsg string
	}{
		{
			name:  "slow but steady body outlives the timeout",
			open:  "body",
			steps: repeat(120, step{advance: 5 * time.Second, read: 1}), // 10 min
		},
		{
			name:    "body that stops stalls",
			open:    "body",
			steps:   append(repeat(3, step{advance: 5 * time.Second, read: 1}), repeat(3, step{advance: 5 * time.Second})...),
			want:    ErrPullStalled,
			wantMsg: "image pull stalled: no progress for 10s from " + host + " (pulling " + image + ")",
		},
		{
			name:    "trickle within the stall window runs out the timeout",
			open:    "body",
			steps:   repeat(20, step{advance: 4 * time.Second, read: 1}, step{advance: 4 * time.Second}),
			want:    ErrPullTimedOut,
			wantMsg: "image pull timed out: waited 30s in total for " + host + " without progress (pulling " + image + ")",
		},
		{
			name:    "resolve that never answers stalls",
			open:    "resolve",
			steps:   repeat(3, step{advance: 5 * time.Second}),
			want:    ErrPullStalled,
			wantMsg: "no progress for 10s from " + host,
		},
		{
			name:  "no request open: local work does not count",
			steps: repeat(60, step{advance: 5 * time.Second}),
		},
		{
			name:  "closed body: nothing waits on the registry",
			open:  "body",
			steps: append([]step{{advance: time.Second, read: 1, close: true}}, repeat(60, step{advance: 5 * time.Second})...),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_000_000, 0)
			w := newPullWatch(host, image, 30*time.Second, 10*time.Second, now)
			res := w.resolver(&fakeResolver{body: func() io.ReadCloser {
				return io.NopCloser(strings.NewReader(strings.Repeat("x", 1000)))
			}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var body io.ReadCloser
			switch tc.open {
			case "body":
				f, err := res.Fetcher(ctx, image)
				if err != nil {
					t.Fatal(err)
				}
				if body, err = f.Fetch(ctx, ocispec.Descriptor{}); err != nil {
					t.Fatal(err)
				}
			case "resolve":
				resolved := make(chan struct{})
				go func() {
					defer close(resolved)
					_, _, _ = res.Resolve(ctx, image)
				}()
				defer func() { cancel(); <-resolved }()
				for w.open.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			var got error
			for i, s := range tc.steps {
				if s.read > 0 {
					if _, err := io.ReadFull(body, make([]byte, s.read)); err != nil {
						t.Fatalf("step %d: read: %v", i, err)
					}
				}
				if s.close {
					_ = body.Close()
				}
				now = now.Add(s.advance)
				if got = w.check(now); got != nil {
					break
				}
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("pull canceled: %v", got)
				}
				return
			}
			if !errors.Is(got, tc.want) {
				t.Fatalf("check = %v, want %v", got, tc.want)
			}
			if !strings.Contains(got.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", got, tc.wantMsg)
			}
		})
	}
}

func TestPullWatchBodyKeepsSeeker(t *testing.T) {
	w := newPullWatch("h", "h/i:1", time.Minute, time.Minute, time.Now())
	for _, tc := range []struct {
		name     string
		body     io.ReadCloser
		seekable bool
	}{
		{"seekable", seekableNopCloser{strings.NewReader("abc")}, true},
		{"not seekable", io.NopCloser(strings.NewReader("abc")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := w.body(tc.body).(io.Seeker)
			if ok != tc.seekable {
				t.Errorf("wrapped body is a Seeker: %v, want %v", ok, tc.seekable)
			}
		})
	}
}

// TestPullWatchRun runs the watchdog on the real clock against bodies fed
// by a goroutine: one keeps sending a byte now and then for several stall
// windows, the other stops.
func TestPullWatchRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes int  // sent every 20 ms
		stop  bool // then stop sending without closing
		want  error
	}{
		{name: "slow body keeps the pull alive", bytes: 150},
		{name: "body that stops is canceled", bytes: 5, stop: true, want: ErrPullStalled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			w := newPullWatch("h", "h/i:1", time.Minute, time.Second, time.Now())
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			go func() {
				for range tc.bytes {
					time.Sleep(20 * time.Millisecond)
					if _, err := pw.Write([]byte{'x'}); err != nil {
						return
					}
				}
				if tc.stop {
					<-ctx.Done()
					pw.CloseWithError(ctx.Err())
					return
				}
				pw.Close()
			}()
			res := w.resolver(&fakeResolver{body: func() io.ReadCloser { return pr }})
			f, err := res.Fetcher(ctx, "h/i:1")
			if err != nil {
				t.Fatal(err)
			}
			go w.run(ctx, cancel)
			body, err := f.Fetch(ctx, ocispec.Descriptor{})
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, body)
			body.Close()
			got := context.Cause(ctx)
			if tc.want == nil {
				if err != nil || got != nil || n != int64(tc.bytes) {
					t.Fatalf("read %d bytes, %v; pull canceled: %v", n, err, got)
				}
				return
			}
			if !errors.Is(got, tc.want) {
				t.Fatalf("pull canceled with %v, want %v (read %d bytes, %v)", got, tc.want, n, err)
			}
		})
	}
}

func TestLockContext(t *testing.T) {
	var k keyedMutex
	unlock := k.lock("a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.lockContext(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lockContext on a held key with a canceled context = %v", err)
	}
	// Other keys are free meanwhile.
	unlockB, err := k.lockContext(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	unlock()
	// The abandoned wait released what it took.
	unlockA, err := k.lockContext(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	unlockA()
}

// silentRegistry accepts connections and never answers. It returns its
// host:port.
func silentRegistry(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestPullStallsOnSilentRegistry pulls from a registry that accepts the
// connection and never answers, over plain HTTP and over HTTPS (its TLS
// handshake is never answered either).
func TestPullStallsOnSilentRegistry(t *testing.T) {
	e := newTestEnv(t)
	host := silentRegistry(t)
	for _, tc := range []struct {
		name     string
		insecure bool
	}{
		{"plain HTTP", true},
		{"HTTPS", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config()
			if tc.insecure {
				cfg.Registry.Insecure = append(cfg.Registry.Insecure, host)
			}
			cfg.PullStallTimeout = 300 * time.Millisecond
			rt := e.newRuntime(t, cfg)
			ref := host + "/stall/img:1"
			ctx := testContext(t)
			_, _, err := rt.EnsureImage(ctx, ref)
			if !errors.Is(err, ErrPullStalled) {
				t.Fatalf("EnsureImage = %v, want a stall", err)
			}
			for _, want := range []string{"no progress for 300ms from " + host, "pulling " + ref} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// The pull's lease went with it.
			ls, err := rt.Client().LeasesService().List(rt.Context(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) != 0 {
				t.Errorf("leases left after the stalled pull: %v", ls)
			}
		})
	}
}

// blobProxy serves e's registry on another port, passing every blob body
// through slow (nil: as it is).
func blobProxy(t *testing.T, e *testEnv, slow func(r *http.Request, body io.ReadCloser) io.ReadCloser) string {
	t.Helper()
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: e.reg.Host()})
	proxy.FlushInterval = -1
	proxy.ModifyResponse = func(resp *http.Response) error {
		if slow != nil && resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/blobs/") {
			resp.Body = slow(resp.Request, resp.Body)
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// hangingBody sends nothing until its request ends.
type hangingBody struct {
	io.ReadCloser
	ctx context.Context
}

func (b hangingBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

// trickleBody sends at most 16 KiB every 20 ms.
type trickleBody struct{ io.ReadCloser }

func (b trickleBody) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return b.ReadCloser.Read(p[:min(len(p), 16<<10)])
}

// TestPullBlobs pulls through a proxy that holds back the blobs: one that
// stops sending them stalls the pull; one that sends them slowly, for
// longer than the stall window and the timeout, lets it finish.
func TestPullBlobs(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		name string
		slow func(*http.Request, io.ReadCloser) io.ReadCloser
		want error
	}{
		{
			name: "blob stops",
			slow: func(r *http.Request, body io.ReadCloser) io.ReadCloser { return hangingBody{body, r.Context()} },
			want: ErrPullStalled,
		},
		{
			name: "blob trickles",
			slow: func(_ *http.Request, body io.ReadCloser) io.ReadCloser { return trickleBody{body} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := blobProxy(t, e, tc.slow)
			cfg := e.config()
			cfg.Registry.Insecure = []string{host}
			cfg.PullTimeout, cfg.PullStallTimeout = time.Second, time.Second
			rt := e.newRuntime(t, cfg)
			ref := host + "/herd/busybox:1.35"
			img, pulled, err := rt.EnsureImage(testContext(t), ref)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "from "+host) {
					t.Fatalf("EnsureImage = %v, want %v from %s", err, tc.want, host)
				}
				return
			}
			if err != nil || !pulled || img.Ref != ref {
				t.Fatalf("EnsureImage = %+v, pulled %v, %v", img, pulled, err)
			}
		})
	}
}
