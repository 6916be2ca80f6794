package acctest

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// TestWebapp runs the server the image holds: it answers with its
// revision and hostname over keep-alive, /ready fails under READY=fail,
// and SIGTERM logs TERM and exits 0.
func TestWebapp(t *testing.T) {
	bin, err := buildWebapp()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "webapp")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ready string
		code  int
	}{{"", http.StatusOK}, {"fail", http.StatusServiceUnavailable}} {
		addr, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := strings.Cut(addr, ":")
		var out strings.Builder
		cmd := exec.Command(path)
		cmd.Env = []string{"PORT=" + port, "REVISION=7", "READY=" + tc.ready}
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		cl := &http.Client{Timeout: 2 * time.Second}
		var body string
		err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			resp, err := cl.Get("http://" + addr + "/")
			if err != nil {
				return false, nil //nolint:nilerr // not listening yet: poll again
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			return true, nil
		})
		if err != nil || body != "7 "+host+"\n" {
			t.Fatalf("GET /: %q (%v), want %q", body, err, "7 "+host+"\n")
		}
		resp, err := cl.Get("http://" + addr + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("READY=%q: /ready answered %d, want %d", tc.ready, resp.StatusCode, tc.code)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "TERM ") {
			t.Errorf("no TERM line in the output:\n%s", out.String())
		}
	}
	if _, err := WebappImage(); err != nil {
		t.Fatal(err)
	}
}
