package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0"},
		{512, "512B"},
		{1024, "1Ki"},
		{1536, "1.5Ki"},
		{64 << 20, "64Mi"},
		{1258291, "1.2Mi"},
		{15*(1<<20) + 300<<10, "15Mi"},
		{1<<20 - 1, "1Mi"},
		{3 << 30, "3Gi"},
		{-1, "-"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// openPTY returns the terminal end of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("pty number: %v", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

// TestVolumeUsageErrors: the checks made before any node is asked.
func TestVolumeUsageErrors(t *testing.T) {
	tty := openPTY(t)
	tests := []struct {
		name       string
		args       []string
		stdout     io.Writer // nil: a buffer
		stdin      io.Reader
		wantCode   int
		wantStderr string
	}{
		{name: "no subcommand", args: []string{"volume"}, wantCode: 2, wantStderr: "missing subcommand"},
		{name: "unknown subcommand", args: []string{"volume", "copy", "x"}, wantCode: 2, wantStderr: `unknown subcommand "copy"`},
		{name: "backup without NAME", args: []string{"volume", "backup"}, wantCode: 2, wantStderr: "exactly one volume NAME"},
		{name: "backup to a terminal", args: []string{"volume", "backup", "data", "--node", "n@127.0.0.1:1"}, stdout: tty, wantCode: 2, wantStderr: "standard output is a terminal"},
		{name: "restore from a terminal", args: []string{"volume", "restore", "data", "--node", "n@127.0.0.1:1"}, stdin: tty, wantCode: 2, wantStderr: "standard input is a terminal"},
		{name: "volumes with an argument", args: []string{"volumes", "data"}, wantCode: 2, wantStderr: "no arguments expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			stdout := tt.stdout
			if stdout == nil {
				stdout = &out
			}
			if tt.stdin != nil {
				stdin = tt.stdin
				t.Cleanup(func() { stdin = os.Stdin })
			}
			if code := run(tt.args, stdout, &errb); code != tt.wantCode || !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errb.String(), tt.wantCode, tt.wantStderr)
			}
		})
	}
}

// volNode is an agentd for the volume tests, with its clients.
type volNode struct {
	t     *testing.T
	env   *acctest.Env
	pods  herdv1.PodServiceClient
	vols  herdv1.VolumeServiceClient
	flags []string
}

func (n *volNode) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	n.t.Cleanup(cancel)
	return ctx
}

func (n *volNode) applyVolume(name, size string) {
	n.t.Helper()
	if _, err := n.vols.ApplyVolume(n.ctx(), &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: name, Size: size}}); err != nil {
		n.t.Fatalf("ApplyVolume %s: %v", name, err)
	}
}

// pod applies a pod of one busybox container running script with the
// volume at /data.
func (n *volNode) pod(name, volume string, readOnly bool, restart, script string) {
	n.t.Helper()
	_, err := n.pods.ApplyPod(n.ctx(), &herdv1.ApplyPodRequest{Spec: &herdv1.PodSpec{
		Name: name, RestartPolicy: restart,
		Containers: []*herdv1.ContainerSpec{{
			Name: "main", Image: n.env.Image, Command: []string{"sh", "-c", script},
			VolumeMounts: []*herdv1.VolumeMount{{Volume: volume, Path: "/data", ReadOnly: readOnly}},
		}},
	}})
	if err != nil {
		n.t.Fatalf("ApplyPod %s: %v", name, err)
	}
}

// waitPhase waits until the pod is in phase and returns it.
func (n *volNode) waitPhase(name, phase string) *herdv1.Pod {
	n.t.Helper()
	var last *herdv1.Pod
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		p, err := n.pods.GetPod(n.ctx(), &herdv1.GetPodRequest{Name: name})
		if err == nil {
			last = p
			if p.GetStatus().GetPhase() == phase {
				return p
			}
			if ph := p.GetStatus().GetPhase(); ph == "Failed" && phase != "Failed" {
				n.t.Fatalf("pod %s failed: %v\nlog:\n%s", name, p.GetStatus(), n.logs(name))
			}
		}
	}
	n.t.Fatalf("pod %s did not become %s; last: %v", name, phase, last)
	return nil
}

func (n *volNode) logs(pod string) string {
	n.t.Helper()
	s, err := n.pods.PodLogs(n.ctx(), &herdv1.PodLogsRequest{Pod: pod})
	if err != nil {
		n.t.Fatalf("PodLogs %s: %v", pod, err)
	}
	var b strings.Builder
	for {
		c, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			n.t.Fatalf("PodLogs %s: %v", pod, err)
		}
		b.Write(c.GetData())
	}
}

func (n *volNode) deletePod(name string) {
	n.t.Helper()
	zero := int64(0)
	if _, err := n.pods.DeletePod(n.ctx(), &herdv1.DeletePodRequest{Name: name, GracePeriodSeconds: &zero}); err != nil {
		n.t.Fatalf("DeletePod %s: %v", name, err)
	}
}

// run runs herdctl with the node's flags after args.
func (n *volNode) run(stdout io.Writer, args ...string) (code int, stderr string) {
	var errb bytes.Buffer
	code = run(append(args, n.flags...), stdout, &errb)
	return code, errb.String()
}

// treeScript prints every entry of the volume but lost+found (made by mkfs,
// different in every image) with its mode, owner, size and mtime, then the
// SHA-256 of every regular file.
const treeScript = `cd /data && find . -path ./lost+found -prune -o -print | sort | while read f; do stat -c '%A %u:%g %s %Y %N' "$f"; done && ` +
	`find . -path ./lost+found -prune -o -type f -print | sort | xargs sha256sum`

// volumeTable returns the fields of the row of herdctl volumes for
// default/name.
func (n *volNode) volumeTable(name string) []string {
	n.t.Helper()
	var out bytes.Buffer
	if code, stderr := n.run(&out, "volumes"); code != 0 {
		n.t.Fatalf("volumes: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAMESPACE NAME SIZE USED PHASE BOUND-TO READERS" {
		n.t.Fatalf("volumes header %q", got)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "default" && f[1] == name {
			return f
		}
	}
	n.t.Fatalf("volumes lists no default/%s:\n%s", name, out.String())
	return nil
}

// TestVolumeBackupRestore: a volume a pod filled is listed with its size,
// backed up to a tar and restored into a second volume, where a pod finds
// the same tree (modes, owners, sizes, mtimes, symlink, contents). Backup is
// refused, naming the pod, while a pod writes the volume; so is a restore.
func TestVolumeBackupRestore(t *testing.T) {
	env := acctest.SharedEnv(t)
	a := env.Agent(t, "ctl-vol")
	conn, err := a.Conn()
	if err != nil {
		t.Fatal(err)
	}
	n := &volNode{
		t: t, env: env,
		pods:  herdv1.NewPodServiceClient(conn),
		vols:  herdv1.NewVolumeServiceClient(conn),
		flags: []string{"--node", a.ID(), "--ca-cert", env.Certs.CAFile, "--cert", env.Certs.ClientCertFile, "--key", env.Certs.ClientKeyFile},
	}
	// Registered after the agent's: runs before it stops. Pods go first,
	// then the volumes, so that their mounts and loop devices go too.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		zero := int64(0)
		for _, p := range []string{"writer", "busy", "read-data", "read-copy"} {
			_, _ = n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: p, GracePeriodSeconds: &zero})
		}
		for _, v := range []string{"data", "copy"} {
			if _, err := n.vols.DeleteVolume(ctx, &herdv1.DeleteVolumeRequest{Name: v}); err != nil {
				t.Logf("cleanup: delete volume %s: %v", v, err)
			}
		}
		conn.Close()
	})

	n.applyVolume("data", "64Mi")
	n.pod("writer", "data", false, "Never",
		`set -e; mkdir -p /data/sub/deep; echo hello > /data/a.txt; chmod 640 /data/a.txt; touch -t 202001020304.05 /data/a.txt; `+
			`head -c 1200000 /dev/urandom > /data/sub/b.bin; chown 1000:1000 /data/sub/b.bin; `+
			`head -c 5000 /dev/zero > /data/sub/deep/c.bin; ln -s ../a.txt /data/sub/link; chmod 700 /data/sub/deep`)
	n.waitPhase("writer", "Succeeded")
	n.deletePod("writer")

	row := n.volumeTable("data")
	t.Logf("volumes row: %q", row)
	if len(row) != 7 || row[2] != "64Mi" || row[4] != "Available" || row[5] != "-" || row[6] != "-" {
		t.Errorf("volumes row for data: %q; want size 64Mi, Available, no pods", row)
	}
	if !strings.HasSuffix(row[3], "Mi") {
		t.Errorf("data's USED %q: want at least the 1.2 MB written, in Mi", row[3])
	}

	// Back up to a file, as a shell's "> file.tar" would give it.
	tarPath := filepath.Join(t.TempDir(), "data.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	code, stderr := n.run(f, "volume", "backup", "data")
	f.Close()
	if code != 0 {
		t.Fatalf("volume backup: exit %d: %s", code, stderr)
	}
	entries, fileBytes := readTar(t, tarPath)
	for _, w := range []string{"a.txt", "sub/", "sub/b.bin", "sub/deep/", "sub/deep/c.bin", "sub/link"} {
		if _, ok := entries[w]; !ok {
			t.Errorf("the backup lacks %s; it has %v", w, entries)
		}
	}

	n.applyVolume("copy", "64Mi")
	in, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	stdin = in
	t.Cleanup(func() { stdin = os.Stdin })
	var out bytes.Buffer
	if code, stderr := n.run(&out, "volume", "restore", "copy"); code != 0 {
		t.Fatalf("volume restore: exit %d: %s", code, stderr)
	}
	if want := fmt.Sprintf("restored %d files (%d bytes) into default/copy\n", len(entries), fileBytes); out.String() != want {
		t.Errorf("volume restore printed %q, want %q", out.String(), want)
	}

	n.pod("read-data", "data", true, "Never", treeScript)
	n.pod("read-copy", "copy", true, "Never", treeScript)
	n.waitPhase("read-data", "Succeeded")
	n.waitPhase("read-copy", "Succeeded")
	orig, cp := n.logs("read-data"), n.logs("read-copy")
	t.Logf("tree of data and of its restored copy:\n%s", orig)
	if orig != cp {
		t.Errorf("the restored tree differs from the original:\noriginal:\n%s\ncopy:\n%s", orig, cp)
	}
	hello := sha256.Sum256([]byte("hello\n"))
	for _, w := range []string{hex.EncodeToString(hello[:]) + "  ./a.txt", "-rw-r----- 0:0 6 1577934245 ./a.txt", "-rw-r--r-- 1000:1000 1200000 ", "drwx------ 0:0", "'./sub/link' -> '../a.txt'"} {
		if !strings.Contains(orig, w) {
			t.Errorf("the original's tree lacks %q:\n%s", w, orig)
		}
	}
	n.deletePod("read-data")
	n.deletePod("read-copy")

	// A pod writing the volume: backup and restore are refused and say
	// which pod holds it.
	n.pod("busy", "data", false, "Always", "sleep 3600")
	n.waitPhase("busy", "Running")
	row = n.volumeTable("data")
	if len(row) != 7 || row[4] != "Bound" || row[5] != "busy" {
		t.Errorf("volumes row for data while busy writes it: %q; want Bound to busy", row)
	}
	var refused bytes.Buffer
	code, stderr = n.run(&refused, "volume", "backup", "data")
	t.Logf("backup while busy writes: exit %d: %s", code, stderr)
	if code != 1 || !strings.Contains(stderr, "backup of volume default/data refused") || !strings.Contains(stderr, "read-write by pod busy") {
		t.Errorf("backup while busy writes: exit %d, stderr %q; want 1, refused, naming pod busy", code, stderr)
	}
	if refused.Len() != 0 {
		t.Errorf("a refused backup wrote %d bytes to stdout", refused.Len())
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code, stderr = n.run(&out, "volume", "restore", "data")
	if code != 1 || !strings.Contains(stderr, "restore of volume default/data refused") || !strings.Contains(stderr, "busy") {
		t.Errorf("restore while busy writes: exit %d, stderr %q; want 1, refused, naming pod busy", code, stderr)
	}
}

// readTar returns a tar's entry names (without "./") with their types and
// the bytes of its regular files.
func readTar(t *testing.T, path string) (map[string]byte, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string]byte{}
	var size int64
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, size
		}
		if err != nil {
			t.Fatalf("read the backup: %v", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if name == "" || name == "lost+found/" {
			continue
		}
		entries[name] = h.Typeflag
		if h.Typeflag == tar.TypeReg {
			size += h.Size
		}
	}
}
