package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herd-project/terraform-provider-herd/agentd/agent"
)

// hardeningChildEnv makes the test binary act as the child of
// TestDisableCoreDumps: PR_SET_DUMPABLE would otherwise change the process
// running every other test.
const hardeningChildEnv = "HERD_TEST_HARDENING_CHILD"

// After DisableCoreDumps the process is not dumpable and its core size
// limit is 0, soft and hard; the process it started from is untouched.
func TestDisableCoreDumps(t *testing.T) {
	if os.Getenv(hardeningChildEnv) == "1" {
		hardeningChild()
		return
	}
	t.Parallel()
	// The parent's state is whatever the runner gave it (a CI sandbox may
	// start it non-dumpable); the child must not change it.
	before, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		t.Fatalf("parent dumpable: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDisableCoreDumps$", "-test.count=1")
	cmd.Env = append(os.Environ(), hardeningChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && strings.HasPrefix(k, "child.") {
			got[strings.TrimPrefix(k, "child.")] = v
		}
	}
	want := map[string]string{"err": "<nil>", "dumpable": "0", "core.cur": "0", "core.max": "0", "limits": "0 0"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("child %s = %q, want %q\nchild output:\n%s", k, got[k], w, out)
		}
	}
	// The parent (this test process) was not changed.
	if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != before {
		t.Errorf("parent dumpable = %d, %v; want %d as before the child ran", d, err, before)
	}
}

// hardeningChild disables core dumps and prints what the kernel reports.
func hardeningChild() {
	fmt.Printf("child.err=%v\n", agent.DisableCoreDumps())
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		fmt.Printf("child.dumpable=error %v\n", err)
	} else {
		fmt.Printf("child.dumpable=%d\n", d)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &rl); err != nil {
		fmt.Printf("child.core.cur=error %v\n", err)
	} else {
		fmt.Printf("child.core.cur=%d\nchild.core.max=%d\n", rl.Cur, rl.Max)
	}
	// /proc/self/limits: "Max core file size  0  0  bytes".
	b, _ := os.ReadFile("/proc/self/limits")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max core file size"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				fmt.Printf("child.limits=%s %s\n", f[0], f[1])
			}
		}
	}
}
