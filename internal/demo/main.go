// Command demo keeps herd's embedded demo environment running: a private
// containerd, a loopback registry serving a busybox image, self-issued
// certificates and one agentd — a one-node cluster, so that services work —
// inside a network namespace of its own (its bridge, routes and nftables
// table never touch the host's network). scripts/demo.sh starts it in the
// background, applies examples/quickstart against it, and stops it on
// `make demo-down`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
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
	name := flag.String("name", "demo", "node name")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*dir, *registry, *name, log); err != nil {
		log.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

func run(dir, registry, name string, log *slog.Logger) error {
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
	// The node: a network namespace on a lab bridge, reaching the loopback
	// registry through a relay; agentd is reached through a 127.0.0.1
	// forwarder (agent.Addr).
	lab, err := acctest.NewLab(netip.MustParsePrefix("10.201.0.0/24"))
	if err != nil {
		return fmt.Errorf("create the node's network namespace: %w", err)
	}
	defer lab.Close()
	node, err := lab.AddNode(name)
	if err != nil {
		return fmt.Errorf("create the node's network namespace: %w", err)
	}
	relay, err := node.Relay(env.Registry.Host(), env.Registry.Host())
	if err != nil {
		return fmt.Errorf("relay the registry into the node: %w", err)
	}
	defer relay.Close()
	key := filepath.Join(dir, "gossip.key")
	if err := acctest.WriteGossipKey(key); err != nil {
		return err
	}
	opts := env.AgentOptions(name)
	opts.Namespace = "herd"
	opts.Node = node
	opts.ExtraArgs = acctest.ClusterArgs(node, netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/16"), key, "")
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
export HERD_DEMO_NETNS=%q
`, env.Certs.CAFile, env.Certs.ClientCertFile, env.Certs.ClientKeyFile, agent.ID(), name, agent.Addr, env.Image, agent.LogFile, node.Path())
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
