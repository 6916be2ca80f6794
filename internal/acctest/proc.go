package acctest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ShimProcesses returns the PIDs of the live containerd shims serving the
// containerd at address (its gRPC socket path). containerd starts shims as
// separate, daemonized processes with "-address <socket>" on their command
// line; this scans /proc for processes whose executable name starts with
// "containerd-shim" and whose -address argument is exactly address.
// Zombies are not reported.
func ShimProcesses(address string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		args, err := procArgs(pid)
		if err != nil || len(args) == 0 {
			continue // gone, or a kernel thread
		}
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if flagValue(args[1:], "address") != address {
			continue
		}
		if state, _ := procState(pid); state == 'Z' || state == 0 {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// procArgs returns the command line of pid.
func procArgs(pid int) ([]string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, nil
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), nil
}

// flagValue returns the value of the Go-style flag name ("-name v",
// "--name v", "-name=v" or "--name=v") in args, or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// procState returns the state letter of /proc/pid/stat (R, S, Z, ...), or
// 0 if the process is gone.
func procState(pid int) (byte, int) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// "pid (comm) S ppid ...": comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(string(raw[i+1:]))
	if len(fields) < 2 {
		return 0, 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return fields[0][0], ppid
}

// childPIDs returns the live children of pid.
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var children []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid := procState(child); ppid == pid && state != 'Z' {
			children = append(children, child)
		}
	}
	return children
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	state, _ := procState(pid)
	return state != 0 && state != 'Z'
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var mounts []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	return mounts, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space and so on)
// of a /proc/self/mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountUnder lazily unmounts everything mounted at or below dir and
// fails if anything is still mounted there afterwards, so that the caller
// never removes files through a mount.
func UnmountUnder(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mounts {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	left, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("still mounted under %s, not removing it: %v", dir, left))
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool { return errdefs.IsNotFound(err) }
