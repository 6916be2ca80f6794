package bench

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuOf is the user plus system CPU time a finished command used,
// including the children it waited for (the provider it started).
func cpuOf(ps *os.ProcessState) time.Duration {
	return ps.UserTime() + ps.SystemTime()
}

// debugProvider starts the provider binary in debug mode and returns it
// with the TF_REATTACH_PROVIDERS value that makes OpenTofu use it (the
// address rewritten to OpenTofu's registry host), so that the CLI's CPU
// can be read apart from the provider's.
func debugProvider(b *testing.B, bin string, env []string) (*exec.Cmd, string) {
	cmd := exec.Command(bin, "-debug")
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the provider in debug mode: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		v, ok := strings.CutPrefix(line, "TF_REATTACH_PROVIDERS='")
		if !ok {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(strings.TrimSuffix(v, "'")), &m); err != nil {
			b.Fatalf("provider reattach line %q: %v", line, err)
		}
		re := map[string]json.RawMessage{}
		for k, v := range m {
			re[strings.Replace(k, "registry.terraform.io/", "registry.opentofu.org/", 1)] = v
		}
		j, err := json.Marshal(re)
		if err != nil {
			b.Fatal(err)
		}
		go func() { // keep the pipe drained
			for sc.Scan() {
			}
		}()
		return cmd, string(j)
	}
	b.Fatalf("the provider in debug mode printed no TF_REATTACH_PROVIDERS: %v", sc.Err())
	return nil, ""
}
