package agent

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// In the re-executed test binary: dial the socket in HERD_PEERCRED_DIAL
// and print what the server says, or "closed".
func init() {
	path := os.Getenv("HERD_PEERCRED_DIAL")
	if path == "" {
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		os.Stdout.WriteString("dial: " + err.Error())
		os.Exit(0)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, _ := io.ReadAll(c)
	if len(b) == 0 {
		b = []byte("closed")
	}
	os.Stdout.Write(b)
	os.Exit(0)
}

// dialAs connects to the socket from a process running as uid:gid and
// returns what it read.
func dialAs(t *testing.T, exe, path string, uid, gid uint32) string {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "HERD_PEERCRED_DIAL="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dial as %d:%d: %v", uid, gid, err)
	}
	return strings.TrimSpace(string(out))
}

// The socket admits root and the configured group by the peer's kernel
// credentials, even when its file mode would let anyone connect.
func TestPeerCredListener(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as other users")
	}
	// A directory other users can reach, holding a copy of this test
	// binary (go's build directory is private) and the sockets.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "dialer.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name     string
		gid      int
		uid, pg  uint32
		admitted bool
	}{
		{"root", -1, 0, 0, true},
		{"nobody, root only", -1, 65534, 65534, false},
		{"nobody in the socket's group", 65534, 65534, 65534, true},
		{"another group", 65533, 65534, 65534, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("s%d.sock", i))
			ulis, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			// Mode lets anyone in: the credentials check must hold alone.
			if err := os.Chmod(path, 0o666); err != nil {
				t.Fatal(err)
			}
			lis := &peerCredListener{Listener: ulis, gid: tc.gid, log: slog.New(slog.DiscardHandler)}
			defer lis.Close()
			go func() {
				for {
					c, err := lis.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte("welcome"))
					c.Close()
				}
			}()
			got := dialAs(t, exe, path, tc.uid, tc.pg)
			want := "closed"
			if tc.admitted {
				want = "welcome"
			}
			if got != want {
				t.Errorf("uid %d gid %d read %q, want %q", tc.uid, tc.pg, got, want)
			}
		})
	}
}

func TestSocketGroup(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", -1, false},
		{"0", 0, false},
		{"1234", 1234, false},
		{"root", 0, false},
		{"no-such-group-herd", 0, true},
	} {
		got, err := socketGroup(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("socketGroup(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
