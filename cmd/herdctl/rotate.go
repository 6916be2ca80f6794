package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

const clusterUsage = `Usage: herdctl cluster rotate-gossip-key [--node NAME@ADDRESS] [TLS flags]

rotate-gossip-key replaces the gossip encryption key on every live member
without downtime (admin certificate). The node asked makes a new key and,
over the members' mutual TLS, has every member install it, then encrypt
with it and rewrite its --gossip-key file, then drop the old key. The new
key is never shown. Secret checksums do not change: a member that took its
checksum key from the gossip key keeps a copy of the old one in its state
dir. Members that are dead or gone at the time are listed: give them the
new --gossip-key file (copy it from a member) before they start again.
`

func runCluster(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return newUsageError(clusterUsage, "cluster: missing subcommand")
	}
	switch args[0] {
	case "rotate-gossip-key":
		return clusterRotateGossipKey(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, clusterUsage)
		return err
	default:
		return newUsageError(clusterUsage, "cluster: unknown subcommand %q", args[0])
	}
}

func clusterRotateGossipKey(args []string, stdout io.Writer) error {
	fs := newFlagSet("cluster rotate-gossip-key")
	var cf connFlags
	cf.register(fs)
	pos, help, err := parseArgs(fs, args, clusterUsage, stdout)
	if err != nil || help {
		return err
	}
	if len(pos) > 0 {
		return newUsageError(clusterUsage, "cluster rotate-gossip-key: no arguments expected, got %s", strings.Join(pos, " "))
	}
	return cf.call(clusterUsage, 2*time.Minute, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewClusterServiceClient(conn).RotateGossipKey(ctx, &herdv1.RotateGossipKeyRequest{})
		if err != nil {
			return fmt.Errorf("rotate gossip key: %w", err)
		}
		fmt.Fprintf(stdout, "gossip key rotated on %d members: %s\n", len(resp.GetMembers()), strings.Join(resp.GetMembers(), ", "))
		if nr := resp.GetNotReached(); len(nr) > 0 {
			fmt.Fprintf(stdout, "not reached (dead or gone): %s: copy a member's --gossip-key file to them before they start\n", strings.Join(nr, ", "))
		}
		return nil
	})
}
