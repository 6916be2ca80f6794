// Command demo keeps herd's embedded demo environment running: a private
// containerd, a loopback registry serving a busybox image, self-issued
// certificates and one agentd. scripts/demo.sh starts it in the background,
// applies examples/quickstart against it, and stops it on `make demo-down`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

func main() {
	dir := flag.String("dir", ".demo", "directory for the demo's env file and logs")
	registry := flag.String("registry", "127.0.0.1:5050", "loopback address of the demo registry")
	listen := flag.String("listen", "127.0.0.1:7443", "agentd's mTLS address")
	name := flag.String("name", "demo", "node name")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*dir, *registry, *listen, *name, log); err != nil {
		log.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

func run(dir, registry, listen, name string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	env, err := acctest.NewEnv(sctx, acctest.WithAddr(registry))
	if err != nil {
		return fmt.Errorf("start containerd and registry: %w", err)
	}
	defer env.Close()
	opts := env.AgentOptions(name)
	opts.Listen = listen
	opts.Namespace = "herd"
	agent, err := acctest.StartAgent(sctx, opts)
	if err != nil {
		return fmt.Errorf("start agentd: %w", err)
	}
	defer func() {
		agent.Stop()
		_ = os.RemoveAll(agent.Opts.Dir)
	}()
	log.Info("demo up", "node", agent.ID(), "image", env.Image, "agentd_log", agent.LogFile)

	envFile := fmt.Sprintf(`export HERD_CA_CERT=%q
export HERD_CLIENT_CERT=%q
export HERD_CLIENT_KEY=%q
export HERD_NODE=%q
export TF_VAR_node_name=%q
export TF_VAR_node_address=%q
export TF_VAR_image=%q
export HERD_DEMO_AGENTD_LOG=%q
`, env.Certs.CAFile, env.Certs.ClientCertFile, env.Certs.ClientKeyFile, agent.ID(), name, agent.Addr, env.Image, agent.LogFile)
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(envFile), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("demo stopping")
	_ = os.Remove(filepath.Join(dir, "ready"))
	return nil
}
