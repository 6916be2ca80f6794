package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// stdin is what volume restore reads; a variable so tests can give it a
// file.
var stdin io.Reader = os.Stdin

// restoreChunk is the tar data per RestoreVolume message, the size agentd
// sends backups in.
const restoreChunk = 256 << 10

const volumesUsage = `Usage: herdctl volumes [--namespace NS] [--node NAME@ADDRESS] [TLS flags]

Lists the node's volumes: size, bytes in use in the filesystem, phase
(Available, or Bound while a pod mounts it read-write), the pod writing it
and the pods reading it.
`

const volumeUsage = `Usage: herdctl volume backup NAME [--namespace NS] [--node NAME@ADDRESS] [TLS flags] > FILE.tar
       herdctl volume restore NAME [--namespace NS] [--node NAME@ADDRESS] [TLS flags] < FILE.tar

backup writes a tar of the volume's files (mode, owner, mtime) to standard
output, which must not be a terminal. It is refused while a pod mounts the
volume read-write; pods reading it may go on.

restore replaces the volume's files with those of the tar read from
standard input and prints how many it wrote. It is refused while any pod
mounts the volume. The namespace is "default" unless given.
`

func runVolumes(args []string, stdout io.Writer) error {
	fs := newFlagSet("volumes")
	var cf connFlags
	cf.register(fs)
	ns := fs.String("namespace", "", "only this namespace (default: all)")
	pos, help, err := parseArgs(fs, args, volumesUsage, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) > 0 {
		return newUsageError(volumesUsage, "volumes: no arguments expected, got %s", strings.Join(pos, " "))
	}
	return cf.call(volumesUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewVolumeServiceClient(conn).ListVolumes(ctx, &herdv1.ListVolumesRequest{Namespace: *ns})
		if err != nil {
			return fmt.Errorf("list volumes: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tSIZE\tUSED\tPHASE\tBOUND-TO\tREADERS")
		for _, v := range resp.GetVolumes() {
			sp, st := v.GetSpec(), v.GetStatus()
			phase := st.GetPhase()
			if m := st.GetMessage(); m != "" {
				phase += " (" + m + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sp.GetNamespace(), sp.GetName(),
				humanBytes(v.GetSizeBytes()), humanBytes(st.GetUsedBytes()), orDash(phase),
				orDash(st.GetBoundTo()), orDash(strings.Join(st.GetReaders(), ",")))
		}
		return tw.Flush()
	})
}

func runVolume(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return newUsageError(volumeUsage, "volume: missing subcommand (backup or restore)")
	}
	switch args[0] {
	case "backup":
		return volumeBackup(args[1:], stdout)
	case "restore":
		return volumeRestore(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, volumeUsage)
		return err
	default:
		return newUsageError(volumeUsage, "volume: unknown subcommand %q (backup or restore)", args[0])
	}
}

// volumeArgs parses the flags and the one NAME of a volume subcommand.
func volumeArgs(sub string, args []string, stdout io.Writer) (cf connFlags, ns, name string, help bool, err error) {
	fs := newFlagSet("volume " + sub)
	cf.register(fs)
	fs.StringVar(&ns, "namespace", "", "the volume's namespace (default: default)")
	fs.StringVar(&ns, "n", "", "short for --namespace")
	pos, help, err := parseArgs(fs, args, volumeUsage, stdout)
	if help || err != nil {
		return cf, "", "", help, err
	}
	if len(pos) != 1 {
		return cf, "", "", false, newUsageError(volumeUsage, "volume %s: exactly one volume NAME is required", sub)
	}
	return cf, ns, pos[0], false, nil
}

func volumeBackup(args []string, stdout io.Writer) error {
	cf, ns, name, help, err := volumeArgs("backup", args, stdout)
	if help || err != nil {
		return err
	}
	if isTerminal(stdout) {
		return newUsageError(volumeUsage, "volume backup: standard output is a terminal; redirect the tar to a file (herdctl volume backup %s > %s.tar) or a pipe", name, name)
	}
	key := volumeKey(ns, name)
	// No deadline: a large volume takes as long as it takes.
	return cf.call(volumeUsage, 0, func(ctx context.Context, conn *grpc.ClientConn) error {
		stream, err := herdv1.NewVolumeServiceClient(conn).BackupVolume(ctx, &herdv1.BackupVolumeRequest{Namespace: ns, Name: name})
		if err != nil {
			return backupError(key, err)
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return backupError(key, err)
			}
			if _, err := stdout.Write(chunk.GetData()); err != nil {
				return fmt.Errorf("back up volume %s: write the tar: %w", key, err)
			}
		}
	})
}

// backupError says plainly when agentd refused the backup: a refusal is
// about the volume's users, not a fault.
func backupError(key string, err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		return fmt.Errorf("backup of volume %s refused: %s", key, st.Message())
	}
	return fmt.Errorf("back up volume %s: %w", key, err)
}

func volumeRestore(args []string, stdout io.Writer) error {
	cf, ns, name, help, err := volumeArgs("restore", args, stdout)
	if help || err != nil {
		return err
	}
	if isTerminal(stdin) {
		return newUsageError(volumeUsage, "volume restore: standard input is a terminal; give the tar on it (herdctl volume restore %s < %s.tar)", name, name)
	}
	key := volumeKey(ns, name)
	return cf.call(volumeUsage, 0, func(ctx context.Context, conn *grpc.ClientConn) error {
		// Ending the context on return stops the stream if reading stdin
		// fails halfway: agentd then discards the partial restore.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := herdv1.NewVolumeServiceClient(conn).RestoreVolume(ctx)
		if err != nil {
			return fmt.Errorf("restore volume %s: %w", key, err)
		}
		sendErr := stream.Send(&herdv1.RestoreVolumeRequest{Namespace: ns, Name: name})
		buf := make([]byte, restoreChunk)
		for sendErr == nil {
			n, rerr := io.ReadFull(stdin, buf)
			if n > 0 {
				sendErr = stream.Send(&herdv1.RestoreVolumeRequest{Data: buf[:n]})
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("restore volume %s: read the tar from standard input: %w", key, rerr)
			}
		}
		// A Send that fails with io.EOF means agentd ended the stream; its
		// reason comes with CloseAndRecv.
		if sendErr != nil && !errors.Is(sendErr, io.EOF) {
			return fmt.Errorf("restore volume %s: %w", key, sendErr)
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
				return fmt.Errorf("restore of volume %s refused: %s", key, st.Message())
			}
			return fmt.Errorf("restore volume %s: %w", key, err)
		}
		fmt.Fprintf(stdout, "restored %d files (%d bytes) into %s\n", resp.GetFiles(), resp.GetBytes(), key)
		return nil
	})
}

func volumeKey(ns, name string) string {
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + name
}

// isTerminal reports whether f is a file on a terminal: a tar there is
// useless to the user and garbles the screen.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(file.Fd()), unix.TCGETS)
	return err == nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes formats n in binary units as quantities are written: "64Mi",
// "1.2Mi", "512B". Whole numbers keep no decimals; below 10 of a unit one
// decimal is shown.
func humanBytes(n int64) string {
	if n < 0 {
		return "-"
	}
	if n == 0 {
		return "0"
	}
	units := []string{"B", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	i := 0
	for i < len(units)-1 && n >= int64(1)<<(10*(i+1)) {
		i++
	}
	if i == 0 {
		return strconv.FormatInt(n, 10) + "B"
	}
	unit := int64(1) << (10 * i)
	if n%unit == 0 {
		return strconv.FormatInt(n/unit, 10) + units[i]
	}
	x := float64(n) / float64(unit)
	s := strconv.FormatFloat(x, 'f', 0, 64)
	if x < 10 {
		s = strconv.FormatFloat(x, 'f', 1, 64)
	}
	// Rounding may reach the next unit (1023.9Ki): say 1Mi, not 1024Ki.
	if s == "1024" && i < len(units)-1 {
		return "1" + units[i+1]
	}
	return strings.TrimSuffix(s, ".0") + units[i]
}
