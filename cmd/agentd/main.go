// Command agentd is herd's node daemon: it runs pods on containerd and
// serves the herd.v1 API over mTLS.
//
// Exit status: 0 after a clean stop (or -h, --version), 1 when agentd
// fails, 2 for a bad command line or --config file, 3 when an address it
// must listen on is in use (so that a supervisor or a test harness can pick
// another without reading the log).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/herd-project/terraform-provider-herd/agentd/agent"
)

var version = "dev"

const (
	exitFailure   = 1
	exitUsage     = 2
	exitAddrInUse = 3
)

func main() {
	// Before the command line and --config file, which may hold keys.
	if err := agent.DisableCoreDumps(); err != nil {
		fmt.Fprintln(os.Stderr, "agentd:", err)
		os.Exit(exitFailure)
	}
	cmd, err := agent.ParseCommandLine(os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "agentd:", err)
		os.Exit(exitUsage)
	case cmd.ShowVersion:
		fmt.Println("agentd", version)
		return
	}
	cfg := cmd.Config
	cfg.Version = version
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cmd.LogLevel}))

	os.Exit(run(cfg, log))
}

// run runs agentd until SIGINT or SIGTERM and returns the exit status; it is
// apart from main so that its deferred calls run before os.Exit.
func run(cfg agent.Config, log *slog.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, log); err != nil {
		log.Error("agentd failed", "err", err)
		if errors.Is(err, syscall.EADDRINUSE) {
			return exitAddrInUse
		}
		return exitFailure
	}
	return 0
}
