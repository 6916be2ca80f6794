package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DisableCoreDumps keeps agentd's memory out of core dumps and away from
// same-user ptrace: it holds node and CA keys, registry credentials and
// decrypted secrets. The core size limit goes to 0 (soft and hard, so a
// child cannot raise it), and the process becomes non-dumpable, which also
// covers a core_pattern pipe that ignores RLIMIT_CORE. Call it first
// thing, before any key is read.
func DisableCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("disable core dumps: set RLIMIT_CORE to 0: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("disable core dumps: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
