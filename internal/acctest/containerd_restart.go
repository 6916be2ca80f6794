package acctest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// Restart stops the daemon (SIGTERM) and starts it again on the same
// directory, as a service restart does: containers keep running under
// their shims, and the new daemon reconnects to them. Client returns the
// new connection afterwards.
func (c *Containerd) Restart(ctx context.Context) error { return c.restart(ctx, false, nil) }

// Reboot is Restart as a machine's reboot sees it: the container processes
// and their shims are SIGKILLed while the daemon is down, then between runs
// (to undo what else a reboot undoes, e.g. detach loop devices), then the
// daemon starts again and finds the tasks dead.
func (c *Containerd) Reboot(ctx context.Context, between func() error) error {
	return c.restart(ctx, true, between)
}

func (c *Containerd) restart(ctx context.Context, reboot bool, between func() error) error {
	if c.client != nil {
		_ = c.client.Close()
		c.client = nil
	}
	if err := c.stopDaemon(); err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	if reboot {
		if err := c.killShims(); err != nil {
			return fmt.Errorf("restart containerd: %w", err)
		}
	}
	if between != nil {
		if err := between(); err != nil {
			return fmt.Errorf("restart containerd: %w", err)
		}
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	if err := c.launch(bin, filepath.Join(c.Dir, "config.toml")); err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	if err := c.waitServing(ctx); err != nil {
		return fmt.Errorf("restart containerd: %w%s", err, c.logTail())
	}
	return nil
}
