package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func (n *node) volumes(t *testing.T) herdv1.VolumeServiceClient {
	t.Helper()
	conn, err := n.agent.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return herdv1.NewVolumeServiceClient(conn)
}

func applyVolume(t *testing.T, vc herdv1.VolumeServiceClient, name, size string) *herdv1.Volume {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: name, Size: size}})
	if err != nil {
		t.Fatalf("ApplyVolume %s: %v", name, err)
	}
	return r.GetVolume()
}

// hostPath is where agentd mounts a volume: <state>/volumes/<uid>/mnt.
func hostPath(n *node, v *herdv1.Volume) string {
	return filepath.Join(n.agent.StateDir, "volumes", v.GetUid(), "mnt")
}

// counterScript keeps a counter in /data/n, appending each value to
// /data/log, and carries on from what it finds.
const counterScript = `trap 'exit 0' TERM; n=$(cat /data/n 2>/dev/null || echo 0); ` +
	`while :; do n=$((n+1)); echo $n > /data/n.tmp; sync /data/n.tmp; mv /data/n.tmp /data/n; echo $n >> /data/log; sleep 0.2; done`

// counter reads the counter's log on the host: every value, in order.
func counter(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not written yet
	}
	if err != nil {
		t.Fatalf("read the counter's log: %v", err)
	}
	var out []int
	for _, l := range strings.Fields(string(b)) {
		v, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("counter log line %q", l)
		}
		out = append(out, v)
	}
	return out
}

// growsPast waits until the counter is past last and checks it never went
// back (every value is larger than the one before it).
func growsPast(t *testing.T, dir string, last int, what string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		vals := counter(t, dir)
		for i := 1; i < len(vals); i++ {
			if vals[i] <= vals[i-1] {
				t.Fatalf("%s: the counter went back from %d to %d", what, vals[i-1], vals[i])
			}
		}
		if len(vals) > 0 && vals[len(vals)-1] > last+2 {
			return vals[len(vals)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the counter did not pass %d (at %v)", what, last, vals[max(0, len(vals)-3):])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func loopsOf(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("losetup", "-j", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -j: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// A counter on a volume never goes back: through three replacements of its
// pod (image changes), agentd's SIGKILL, a containerd restart and a reboot
// (containers killed, loop devices detached, both daemons started again).
func TestVolumeDataSurvives(t *testing.T) {
	t.Parallel()
	ctd := acctest.ContainerdForTest(t) // a private one this test restarts
	n := startNode(t, "vol-survive", func(o *acctest.AgentOptions) { o.Containerd = ctd })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vc := n.volumes(t)
	vol := applyVolume(t, vc, "data", "32Mi")
	dir := hostPath(n, vol)

	img, err := acctest.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	spec := func(image string) *herdv1.PodSpec {
		p := n.pod("counter", counterScript)
		p.Containers[0].Image = image
		p.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}}
		return p
	}
	n.apply(t, spec(n.env.Image))
	n.waitRunning(t, "counter")
	last := growsPast(t, dir, 0, "first pod")
	if got, err := vc.GetVolume(ctx, &herdv1.GetVolumeRequest{Name: "data"}); err != nil || got.GetStatus().GetPhase() != "Bound" || got.GetStatus().GetBoundTo() != "counter" {
		t.Errorf("GetVolume while the pod writes = %v, %v; want Bound to counter", got.GetStatus(), err)
	}

	for i := range 3 {
		ref, err := n.env.Registry.Push(ctx, "herd/busybox", fmt.Sprintf("vol-%d", i), img)
		if err != nil {
			t.Fatal(err)
		}
		n.delete(t, "counter", 5)
		n.apply(t, spec(ref))
		n.waitRunning(t, "counter")
		last = growsPast(t, dir, last, fmt.Sprintf("replacement %d", i+1))
	}
	pid := n.get(t, "counter").GetStatus().GetContainers()[0].GetPid()

	t.Run("agentd SIGKILL", func(t *testing.T) {
		n.agent.Kill()
		last = growsPast(t, dir, last, "agentd down")
		if err := n.agent.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		last = growsPast(t, dir, last, "agentd back")
		if p := n.get(t, "counter"); p.GetStatus().GetContainers()[0].GetPid() != pid {
			t.Errorf("the pod's process changed: %s", fmtPod(p))
		}
		if loops := strings.Count(loopsOf(t, filepath.Join(filepath.Dir(dir), "disk.img")), "\n") + 1; loops != 1 {
			t.Errorf("the volume's image is on %d loop devices after the restart, want 1", loops)
		}
	})

	t.Run("containerd restart", func(t *testing.T) {
		if err := ctd.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		last = growsPast(t, dir, last, "containerd restarted")
		if p := n.get(t, "counter"); p.GetStatus().GetContainers()[0].GetPid() != pid {
			t.Errorf("the pod's process changed: %s", fmtPod(p))
		}
	})

	t.Run("reboot", func(t *testing.T) {
		n.agent.Stop()
		imgPath := filepath.Join(filepath.Dir(dir), "disk.img")
		err := ctd.Reboot(ctx, func() error {
			// What a reboot undoes: the mount and the loop device.
			return volumes.Unmount(ctx, imgPath, dir)
		})
		if err != nil {
			t.Fatal(err)
		}
		if l := loopsOf(t, imgPath); l != "" {
			t.Fatalf("loop device still attached after the detach: %s", l)
		}
		if err := n.agent.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if l := loopsOf(t, imgPath); l == "" {
			t.Errorf("agentd did not attach the volume again")
		}
		n.waitPod(t, "counter", "running again", func(p *herdv1.Pod) bool {
			return running(p) && p.GetStatus().GetContainers()[0].GetPid() != pid
		})
		last = growsPast(t, dir, last, "after the reboot")
	})
}

// A container that writes past its volume's size gets ENOSPC; another pod
// on the node keeps writing to its own volume.
func TestVolumeFullIsENOSPC(t *testing.T) {
	t.Parallel()
	n := startNode(t, "vol-full")
	vc := n.volumes(t)
	applyVolume(t, vc, "small", "8Mi")
	other := applyVolume(t, vc, "other", "16Mi")
	busy := n.pod("busy", counterScript)
	busy.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "other", Path: "/data"}}
	n.apply(t, busy)
	n.waitRunning(t, "busy")
	last := growsPast(t, hostPath(n, other), 0, "the other pod")

	fill := n.pod("fill", `dd if=/dev/zero of=/data/big bs=1M count=32 2>&1; echo "rc=$?"; sleep 3600`)
	fill.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "small", Path: "/data"}}
	n.apply(t, fill)
	out := n.waitLogs(t, "fill", "", "rc=")
	if !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
		t.Errorf("writing 32 MiB into an 8Mi volume: %q, want ENOSPC", out)
	}
	growsPast(t, hostPath(n, other), last, "the other pod after the fill")
}

// Backup then restore into a new volume gives the same files, byte for
// byte; a backup is refused while a pod writes the volume.
func TestVolumeBackupRestore(t *testing.T) {
	t.Parallel()
	n := startNode(t, "vol-backup")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vc := n.volumes(t)
	src := applyVolume(t, vc, "src", "32Mi")
	w := n.pod("writer", `mkdir -p /data/d/e && head -c 3000000 /dev/urandom > /data/d/blob && echo hi > /data/d/e/f && `+
		`ln -s d/e/f /data/link && chmod 0640 /data/d/e/f && echo done; sleep 3600`)
	w.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "src", Path: "/data"}}
	n.apply(t, w)
	n.waitLogs(t, "writer", "", "done")
	stream, err := vc.BackupVolume(ctx, &herdv1.BackupVolumeRequest{Name: "src"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.FailedPrecondition, "writer")
	n.delete(t, "writer", 0)

	var tarball bytes.Buffer
	stream, err = vc.BackupVolume(ctx, &herdv1.BackupVolumeRequest{Name: "src"})
	if err != nil {
		t.Fatal(err)
	}
	// The backup has begun (a first chunk came) and waits for the rest to
	// be read: no new writer may mount the volume meanwhile.
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	tarball.Write(first.GetData())
	w2 := n.pod("writer2", "sleep 3600")
	w2.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "src", Path: "/data"}}
	_, err = n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: w2})
	wantCode(t, err, codes.FailedPrecondition, "being backed up")
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		tarball.Write(c.GetData())
	}
	dst := applyVolume(t, vc, "dst", "32Mi")
	rs, err := vc.RestoreVolume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&herdv1.RestoreVolumeRequest{Name: "dst"}); err != nil {
		t.Fatal(err)
	}
	for b := tarball.Bytes(); len(b) > 0; {
		k := min(len(b), 100_000)
		if err := rs.Send(&herdv1.RestoreVolumeRequest{Data: b[:k]}); err != nil {
			t.Fatal(err)
		}
		b = b[k:]
	}
	res, err := rs.CloseAndRecv()
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	// d, d/e, d/blob, d/e/f and link; 3000000 + 3 bytes of file data.
	if res.GetFiles() != 5 || res.GetBytes() != 3000003 {
		t.Errorf("restore reported %d entries, %d bytes; want 5 and 3000003", res.GetFiles(), res.GetBytes())
	}
	a, b := treeSums(t, hostPath(n, src)), treeSums(t, hostPath(n, dst))
	if a != b {
		t.Errorf("restored tree differs:\nsource:\n%s\nrestored:\n%s", a, b)
	}
	if !strings.Contains(a, "d/blob") || !strings.Contains(a, "link -> d/e/f") {
		t.Errorf("source tree lacks what the pod wrote:\n%s", a)
	}
}

// treeSums describes every file under dir: path, mode, and content hash
// or link target (lost+found is ext4's, not the volume's data).
func treeSums(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "lost+found" {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&sb, "%s -> %s\n", rel, target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			fmt.Fprintf(&sb, "%s %v %s\n", rel, fi.Mode(), hex.EncodeToString(sum[:]))
		default:
			fmt.Fprintf(&sb, "%s %v\n", rel, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// agentd refuses what the provider refuses at plan, and a directory
// without herd's marker is never touched.
func TestVolumeBadInput(t *testing.T) {
	t.Parallel()
	n := startNode(t, "vol-bad")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vc := n.volumes(t)
	// A herd-looking directory that lacks the marker.
	foreign := filepath.Join(n.agent.StateDir, "volumes", "0123456789abcdef0123456789abcdef")
	if err := os.MkdirAll(filepath.Join(foreign, "mnt"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "disk.img"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ size, want string }{
		{"", "size"}, {"abc", "size"}, {"1Ki", "below the minimum of 1Mi"}, {"0", "size"},
	} {
		_, err := vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: "bad", Size: tc.size}})
		wantCode(t, err, codes.InvalidArgument, tc.want)
	}
	applyVolume(t, vc, "data", "16Mi")
	_, err := vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: "data", Size: "8Mi"}})
	wantCode(t, err, codes.InvalidArgument, "cannot shrink")
	if _, err := vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: "data", Size: "16Mi", DeletionProtection: true}}); err != nil {
		t.Fatal(err)
	}
	_, err = vc.DeleteVolume(ctx, &herdv1.DeleteVolumeRequest{Name: "data"})
	wantCode(t, err, codes.FailedPrecondition, "deletion_protection")

	bad := func(mutate func(*herdv1.PodSpec)) error {
		p := n.pod("p", "sleep 3600")
		p.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: "data", Path: "/data"}}
		mutate(p)
		_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: p})
		return err
	}
	wantCode(t, bad(func(p *herdv1.PodSpec) { p.Containers[0].VolumeMounts[0].Path = "/proc/x" }), codes.InvalidArgument, "volume_mounts[0].path", "/proc")
	wantCode(t, bad(func(p *herdv1.PodSpec) {
		p.Containers[0].VolumeMounts = append(p.Containers[0].VolumeMounts, &herdv1.VolumeMount{Volume: "data", Path: "/data/inner", ReadOnly: true})
	}), codes.InvalidArgument, "inside /data")
	wantCode(t, bad(func(p *herdv1.PodSpec) { p.Containers[0].VolumeMounts[0].SubPath = "../up" }), codes.InvalidArgument, "sub_path")
	wantCode(t, bad(func(p *herdv1.PodSpec) { p.Containers[0].VolumeMounts[0].Volume = "elsewhere" }), codes.FailedPrecondition, "elsewhere", "node-local")
	n.apply(t, n.podWith("holder", "data"))
	wantCode(t, bad(func(*herdv1.PodSpec) {}), codes.FailedPrecondition, "holder")
	_, err = vc.ApplyVolume(ctx, &herdv1.ApplyVolumeRequest{Spec: &herdv1.VolumeSpec{Name: "data", Size: "16Mi"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = vc.DeleteVolume(ctx, &herdv1.DeleteVolumeRequest{Name: "data"})
	wantCode(t, err, codes.FailedPrecondition, "holder")
	if pods, _ := n.pods.ListPods(ctx, &herdv1.ListPodsRequest{}); len(pods.GetPods()) != 1 {
		t.Errorf("refused pods left behind: %v", pods.GetPods())
	}

	if err := n.agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := vc.ListVolumes(ctx, &herdv1.ListVolumesRequest{})
	if err != nil || len(l.GetVolumes()) != 1 || l.GetVolumes()[0].GetSpec().GetName() != "data" {
		t.Errorf("ListVolumes = %v, %v; want only data", l.GetVolumes(), err)
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "disk.img")); err != nil || string(b) != "not ours" {
		t.Errorf("the unmarked directory was touched: %q, %v", b, err)
	}
	if l := loopsOf(t, filepath.Join(foreign, "disk.img")); l != "" {
		t.Errorf("the unmarked image was attached: %s", l)
	}
}

// podWith is a pod that sleeps with volume mounted read-write at /data.
func (n *node) podWith(name, volume string) *herdv1.PodSpec {
	p := n.pod(name, "trap 'exit 0' TERM; sleep 3600 & wait")
	p.Containers[0].VolumeMounts = []*herdv1.VolumeMount{{Volume: volume, Path: "/data"}}
	return p
}
