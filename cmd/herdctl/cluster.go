package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

const gossipKeyUsage = `Usage: herdctl gossip-key FILE

Writes a new 32-byte gossip encryption key (base64, mode 0600) for
agentd --gossip-key. Every member of a cluster needs the same key.
`

func runGossipKey(args []string, stdout io.Writer) error {
	fs := newFlagSet("gossip-key")
	force := fs.Bool("force", false, "overwrite an existing file")
	pos, help, err := parseArgs(fs, args, gossipKeyUsage, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return newUsageError(gossipKeyUsage, "gossip-key: exactly one FILE is required")
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate gossip key: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(pos[0], flags, 0o600)
	if err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}
	if _, err := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(key)); err != nil {
		f.Close()
		return fmt.Errorf("write gossip key: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (gossip key, 0600)\n", pos[0])
	return nil
}

const nodesUsage = `Usage: herdctl nodes [--node NAME@ADDRESS] [TLS flags]

Lists the cluster's members as the given node sees them: gossip address,
node IP, pod CIDR, health, and the CPU and memory each member's published
capacity leaves free for new pods (what the deployment scheduler places by;
"-" until the member has published it).
`

func runNodes(args []string, stdout io.Writer) error {
	fs := newFlagSet("nodes")
	var cf connFlags
	cf.register(fs)
	if _, help, err := parseArgs(fs, args, nodesUsage, stdout); help || err != nil {
		return err
	}
	return cf.call(nodesUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewClusterServiceClient(conn).ListMembers(ctx, &herdv1.ListMembersRequest{})
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tNODE IP\tPOD CIDR\tFREE CPU\tFREE MEMORY\tGOSSIP")
		for _, m := range resp.GetMembers() {
			cpu, mem := "-", "-"
			if f := m.GetFree(); f != nil {
				cpu, mem = capacity.FormatCPU(f.GetCpuMillis()), capacity.FormatMemory(f.GetMemoryBytes())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetName(), m.GetState(), m.GetNodeIp(), m.GetPodCidr(), cpu, mem, m.GetGossipAddress())
		}
		return tw.Flush()
	})
}
