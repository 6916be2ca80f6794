package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
)

const (
	// seqBytes are written in seqBlock blocks, then fsynced once.
	seqBytes = 64 << 20
	seqBlock = 1 << 20
	// syncOps 4 KiB writes, each followed by an fsync.
	syncOps   = 200
	syncBlock = 4 << 10
	// volumeImage is large enough for the sequential file and its journal.
	volumeImage = 256 << 20
)

// BenchmarkVolumeIO compares writing inside a volume (an ext4 image on a
// loop device, made and mounted by agentd/volumes as agentd does) with
// writing in a plain directory of the filesystem the image lives on: the
// state filesystem (BENCH_STATE_DIR, default $TMPDIR). Each iteration is
// one round of both sides, in alternating order so drift on a shared
// machine hits both alike: 64 MiB in 1 MiB writes then one fsync (MB/s),
// and 200 4 KiB write+fsync pairs (ops/s). Figures are medians; overhead
// is how much lower the volume's figure is, in percent of the plain one.
func BenchmarkVolumeIO(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("loop devices and mounts need root")
	}
	dir := b.TempDir()
	if base := os.Getenv("BENCH_STATE_DIR"); base != "" {
		d, err := os.MkdirTemp(base, "herd-bench-vol-") //nolint:usetesting // b.TempDir cannot choose the filesystem
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	img, mnt, plain := filepath.Join(dir, "volume.img"), filepath.Join(dir, "mnt"), filepath.Join(dir, "plain")
	for _, d := range []string{mnt, plain} {
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := volumes.CreateImage(ctx, img, volumeImage); err != nil {
		b.Fatal(err)
	}
	if err := volumes.Mount(ctx, img, mnt); err != nil {
		b.Fatal(err)
	}
	// Runs before the directory's removal: the mount and its loop device
	// go first.
	b.Cleanup(func() {
		if err := volumes.Unmount(context.Background(), img, mnt); err != nil {
			b.Errorf("unmount the benchmark volume: %v", err)
		}
	})
	var st unix.Statfs_t
	if err := unix.Statfs(plain, &st); err == nil {
		b.Logf("state filesystem: type %#x, block size %d", st.Type, st.Bsize)
	}

	block := make([]byte, seqBlock)
	if _, err := rand.Read(block); err != nil {
		b.Fatal(err)
	}
	sides := []struct {
		name string
		dir  string
		seq  []float64
		ops  []float64
	}{{name: "volume", dir: mnt}, {name: "host", dir: plain}}
	for i := 0; b.Loop(); i++ {
		for k := range sides {
			s := &sides[(i+k)%len(sides)]
			seq, err := seqWrite(s.dir, block)
			if err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			ops, err := syncWrites(s.dir, block[:syncBlock])
			if err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			s.seq = append(s.seq, seq)
			s.ops = append(s.ops, ops)
		}
	}
	vs, hs := medianF(sides[0].seq), medianF(sides[1].seq)
	vo, ho := medianF(sides[0].ops), medianF(sides[1].ops)
	b.ReportMetric(vs, "volume-seq-MBps")
	b.ReportMetric(hs, "host-seq-MBps")
	b.ReportMetric(overheadPct(vs, hs), "seq-overhead-pct")
	b.ReportMetric(vo, "volume-fsync-ops")
	b.ReportMetric(ho, "host-fsync-ops")
	b.ReportMetric(overheadPct(vo, ho), "fsync-overhead-pct")
}

// overheadPct is how much lower got is than base, in percent of base.
func overheadPct(got, base float64) float64 { return (base - got) / base * 100 }

// seqWrite writes seqBytes to a new file in dir in blocks, fsyncs it and
// returns MB/s (10^6 bytes) from open to the end of the fsync. The file is
// removed afterwards and the filesystem synced, so the next measurement
// does not pay for this one's leftovers.
func seqWrite(dir string, block []byte) (float64, error) {
	path := filepath.Join(dir, "seq")
	t0 := time.Now()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("sequential write: %w", err)
	}
	for n := 0; n < seqBytes; n += len(block) {
		if _, err := f.Write(block); err != nil {
			f.Close()
			return 0, fmt.Errorf("sequential write: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("sequential write: fsync: %w", err)
	}
	d := time.Since(t0)
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("sequential write: %w", err)
	}
	if err := removeAndSync(dir, path); err != nil {
		return 0, err
	}
	return float64(seqBytes) / 1e6 / d.Seconds(), nil
}

// syncWrites appends syncOps blocks to a new file in dir, each followed by
// an fsync, and returns the pairs per second.
func syncWrites(dir string, block []byte) (float64, error) {
	path := filepath.Join(dir, "small")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("write+fsync: %w", err)
	}
	t0 := time.Now()
	for range syncOps {
		if _, err := f.Write(block); err != nil {
			f.Close()
			return 0, fmt.Errorf("write+fsync: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, fmt.Errorf("write+fsync: fsync: %w", err)
		}
	}
	d := time.Since(t0)
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("write+fsync: %w", err)
	}
	if err := removeAndSync(dir, path); err != nil {
		return 0, err
	}
	return float64(syncOps) / d.Seconds(), nil
}

func removeAndSync(dir, path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
