package agent

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// peerCredListener admits on the unix socket only peers the kernel says
// are root or in the socket's group (SO_PEERCRED): the socket's file mode
// is the first guard, this is the one that holds if the mode is changed.
type peerCredListener struct {
	net.Listener
	gid int // -1: root only
	log *slog.Logger
}

// Accept returns the next admitted connection; refused ones are closed
// and logged.
func (l *peerCredListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil {
			err = l.admit(cred)
		}
		if err == nil {
			return c, nil
		}
		l.log.Warn("local socket: connection refused", "err", err)
		_ = c.Close()
	}
}

func (l *peerCredListener) admit(cred *unix.Ucred) error {
	if cred.Uid == 0 {
		return nil
	}
	if l.gid >= 0 {
		if int(cred.Gid) == l.gid {
			return nil
		}
		groups, err := supplementaryGroups(int(cred.Pid))
		if err == nil && groups[l.gid] {
			return nil
		}
	}
	return fmt.Errorf("peer uid %d gid %d (pid %d) is not root or in the socket's group", cred.Uid, cred.Gid, cred.Pid)
}

func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	return cred, nil
}

// supplementaryGroups reads a process's groups from /proc (the kernel's
// peer credentials carry only the primary group).
func supplementaryGroups(pid int) (map[int]bool, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		out := map[int]bool{}
		for _, g := range strings.Fields(rest) {
			if n, err := strconv.Atoi(g); err == nil {
				out[n] = true
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("/proc/%d/status: no Groups line", pid)
}

// socketGroup resolves --socket-group (a group name or number); "" is -1,
// root only.
func socketGroup(v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(v)
	if err != nil {
		return 0, fmt.Errorf("--socket-group %q: %w", v, err)
	}
	return strconv.Atoi(g.Gid)
}

// shareSocket gives the socket to group gid with mode 0660.
func shareSocket(path string, gid int) error {
	if gid < 0 {
		return nil
	}
	if err := os.Chown(path, 0, gid); err != nil {
		return fmt.Errorf("chgrp %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}
