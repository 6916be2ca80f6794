package acctest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WebappRepo and WebappTag name the webapp test image in the registry.
const (
	WebappRepo = "herd/webapp"
	WebappTag  = "1"
	// WebappPath is where the image holds the server.
	WebappPath = "/bin/webapp"
)

var webapp struct {
	once sync.Once
	img  v1.Image
	err  error

	mu     sync.Mutex
	pushed map[*Env]string
}

// WebappImage returns the busybox image (BusyboxImage) with one more layer
// holding /bin/webapp: the static HTTP server of internal/acctest/webapp,
// built once per process. Its config runs it: Cmd ["/bin/webapp"]. The
// server answers GET / with "$REVISION $(hostname)\n", GET /ready with 200
// (503 when READY=fail) and shuts down gracefully on SIGTERM, logging
// "TERM <time>".
func WebappImage() (v1.Image, error) {
	webapp.once.Do(func() { webapp.img, webapp.err = buildWebappImage() })
	return webapp.img, webapp.err
}

// WebappImage pushes the webapp image to the Env's registry (once) and
// returns its reference.
func (e *Env) WebappImage(ctx context.Context) (string, error) {
	webapp.mu.Lock()
	defer webapp.mu.Unlock()
	if ref, ok := webapp.pushed[e]; ok {
		return ref, nil
	}
	img, err := WebappImage()
	if err != nil {
		return "", err
	}
	ref, err := e.Registry.Push(ctx, WebappRepo, WebappTag, img)
	if err != nil {
		return "", err
	}
	if webapp.pushed == nil {
		webapp.pushed = map[*Env]string{}
	}
	webapp.pushed[e] = ref
	return ref, nil
}

func buildWebappImage() (v1.Image, error) {
	bin, err := buildWebapp()
	if err != nil {
		return nil, err
	}
	base, err := BusyboxImage()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: strings.TrimPrefix(WebappPath, "/"), Mode: 0o755,
		Size: int64(len(bin)), ModTime: imageEpoch, Format: tar.FormatUSTAR,
	}); err != nil {
		return nil, fmt.Errorf("build webapp image: %w", err)
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, fmt.Errorf("build webapp image: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build webapp image: %w", err)
	}
	layerTar := buf.Bytes()
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
	)
	if err != nil {
		return nil, fmt.Errorf("build webapp image: layer: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: imageEpoch}, CreatedBy: "herd acctest: webapp"},
	})
	if err != nil {
		return nil, fmt.Errorf("build webapp image: append layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build webapp image: config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Cmd = []string{WebappPath}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("build webapp image: set config: %w", err)
	}
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("build webapp image: digest: %w", err)
	}
	return img, nil
}

// buildWebapp compiles the server statically (the image has no libc) and
// returns the binary; the build directory is removed at once.
func buildWebapp() ([]byte, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-acctest-webapp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "webapp")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./internal/acctest/webapp")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build webapp: %w\n%s", err, b)
	}
	if err := checkStaticAMD64(out); err != nil {
		return nil, fmt.Errorf("build webapp: %w", err)
	}
	return os.ReadFile(out)
}

// Answer is one response the load client got.
type Answer struct {
	At       time.Time
	Client   string // "new" (a connection per request) or "keepalive"
	Revision string // the first word of the body
	Host     string // the second word: the replica's hostname
}

// Failure is one request that got no answer.
type Failure struct {
	At     time.Time
	Client string
	Err    string
}

// LoadResult is everything a Load saw, each list in time order.
type LoadResult struct {
	Answers  []Answer
	Failures []Failure
}

// Revisions counts the answers by revision.
func (r LoadResult) Revisions() map[string]int {
	out := map[string]int{}
	for _, a := range r.Answers {
		out[a.Revision]++
	}
	return out
}

// Load sends requests to one address without pause, from inside a lab
// node's network namespace, over two clients at once: one opens a new
// connection per request, the other keeps one connection alive
// (net/http's Transport). The Transport retries an idempotent request
// whose reused connection the server closed before answering, as every
// HTTP client does; any other error, and any answer but 200, is a Failure.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	res LoadResult
}

// StartLoad starts a load on http://addr/ from inside n's namespace; Stop
// ends it.
func StartLoad(n *LabNode, addr string) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	url := "http://" + addr + "/"

	keep := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         n.Dial,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
		},
	}
	fresh := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       n.Dial,
			DisableKeepAlives: true,
		},
	}
	for _, c := range []struct {
		name string
		cl   *http.Client
	}{{"new", fresh}, {"keepalive", keep}} {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.cl.CloseIdleConnections()
			for ctx.Err() == nil {
				l.once(ctx, c.name, c.cl, url)
			}
		}()
	}
	return l
}

func (l *Load) once(ctx context.Context, client string, cl *http.Client, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		l.fail(client, err)
		return
	}
	resp, err := cl.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			l.fail(client, err)
		}
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil && ctx.Err() != nil:
		return
	case err != nil:
		l.fail(client, fmt.Errorf("read body: %w", err))
		return
	case resp.StatusCode != http.StatusOK:
		l.fail(client, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body))))
		return
	}
	rev, host, _ := strings.Cut(strings.TrimSpace(string(body)), " ")
	l.mu.Lock()
	l.res.Answers = append(l.res.Answers, Answer{At: time.Now(), Client: client, Revision: rev, Host: host})
	l.mu.Unlock()
}

func (l *Load) fail(client string, err error) {
	l.mu.Lock()
	l.res.Failures = append(l.res.Failures, Failure{At: time.Now(), Client: client, Err: err.Error()})
	l.mu.Unlock()
}

// Snapshot returns what the load saw so far.
func (l *Load) Snapshot() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LoadResult{Answers: append([]Answer(nil), l.res.Answers...), Failures: append([]Failure(nil), l.res.Failures...)}
}

// Stop ends the load and returns what it saw.
func (l *Load) Stop() LoadResult {
	l.cancel()
	l.wg.Wait()
	return l.Snapshot()
}

// Summary is a short account of a result for test logs: answers per
// revision and client, and the failures (at most five of them).
func (r LoadResult) Summary() string {
	counts := map[string]int{}
	for _, a := range r.Answers {
		counts[a.Client+"/"+a.Revision]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d answers", len(r.Answers))
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, counts[k])
	}
	fmt.Fprintf(&b, "; %d failures", len(r.Failures))
	for i, f := range r.Failures {
		if i == 5 {
			b.WriteString(" …")
			break
		}
		fmt.Fprintf(&b, "; %s %s: %s", f.At.Format("15:04:05.000"), f.Client, f.Err)
	}
	return b.String()
}
