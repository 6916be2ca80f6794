package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeclient"
)

// conn flags shared by the commands that talk to agentd.
type connFlags struct {
	node, ca, cert, key string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.node, "node", os.Getenv("HERD_NODE"), "node id NAME@ADDRESS (env HERD_NODE)")
	fs.StringVar(&c.ca, "ca-cert", os.Getenv("HERD_CA_CERT"), "herd CA certificate, PEM or path (env HERD_CA_CERT)")
	fs.StringVar(&c.cert, "cert", os.Getenv("HERD_CLIENT_CERT"), "client certificate, PEM or path (env HERD_CLIENT_CERT)")
	fs.StringVar(&c.key, "key", os.Getenv("HERD_CLIENT_KEY"), "client key, PEM or path (env HERD_CLIENT_KEY)")
}

func (c *connFlags) dial(usage string) (*grpc.ClientConn, error) {
	if c.node == "" {
		return nil, newUsageError(usage, "--node (or HERD_NODE) is required")
	}
	name, addr, err := nodeclient.ParseNodeID(c.node)
	if err != nil {
		return nil, err
	}
	m, err := nodeclient.LoadTLS(c.ca, c.cert, c.key)
	if err != nil {
		return nil, err
	}
	return nodeclient.Dial(name, addr, m)
}

// call dials the node and runs fn with the connection and a context that
// ends after timeout (never, if timeout is 0), closing both afterwards.
func (c *connFlags) call(usage string, timeout time.Duration, fn func(ctx context.Context, conn *grpc.ClientConn) error) error {
	conn, err := c.dial(usage)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return fn(ctx, conn)
}

const nodeUsage = `Usage: herdctl node [--node NAME@ADDRESS] [TLS flags]

Shows a node: version, capacity, readiness and labels.
`

func runNode(args []string, stdout io.Writer) error {
	fs := newFlagSet("node")
	var cf connFlags
	cf.register(fs)
	if _, help, err := parseArgs(fs, args, nodeUsage, stdout); help || err != nil {
		return err
	}
	return cf.call(nodeUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		n, err := herdv1.NewNodeServiceClient(conn).GetNode(ctx, &herdv1.GetNodeRequest{})
		if err != nil {
			return fmt.Errorf("get node: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "name\t%s\n", n.GetName())
		fmt.Fprintf(tw, "ready\t%v %s\n", n.GetReady(), n.GetNotReadyReason())
		fmt.Fprintf(tw, "agent\t%s (%s/%s, kernel %s, containerd %s, namespace %s)\n", n.GetAgentVersion(), n.GetOs(), n.GetArch(), n.GetKernelVersion(), n.GetContainerdVersion(), n.GetContainerdNamespace())
		fmt.Fprintf(tw, "capacity\tcpu %dm, memory %d bytes\n", n.GetCapacity().GetCpuMillis(), n.GetCapacity().GetMemoryBytes())
		fmt.Fprintf(tw, "allocatable\tcpu %dm, memory %d bytes\n", n.GetAllocatable().GetCpuMillis(), n.GetAllocatable().GetMemoryBytes())
		fmt.Fprintf(tw, "labels\t%s\n", formatLabels(n.GetLabels()))
		return tw.Flush()
	})
}

const podsUsage = `Usage: herdctl pods [--node NAME@ADDRESS] [--selector k=v,...] [TLS flags]

Lists the pods on a node with their phase and restarts.
`

func runPods(args []string, stdout io.Writer) error {
	fs := newFlagSet("pods")
	var cf connFlags
	cf.register(fs)
	var selector stringList
	fs.Var(&selector, "selector", "label filter k=v (repeatable or comma-separated; all must match)")
	if _, help, err := parseArgs(fs, args, podsUsage, stdout); help || err != nil {
		return err
	}
	sel := map[string]string{}
	for _, kv := range selector {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return newUsageError(podsUsage, "--selector %q: want key=value", kv)
		}
		sel[k] = v
	}
	return cf.call(podsUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewPodServiceClient(conn).ListPods(ctx, &herdv1.ListPodsRequest{LabelSelector: sel})
		if err != nil {
			return fmt.Errorf("list pods: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPHASE\tCONTAINERS\tRESTARTS\tAGE")
		for _, p := range resp.GetPods() {
			var restarts int32
			running := 0
			for _, c := range p.GetStatus().GetContainers() {
				restarts += c.GetRestartCount()
				if c.GetState() == "running" {
					running++
				}
			}
			age := "-"
			if st := p.GetStatus().GetStartTime(); st != nil {
				age = time.Since(st.AsTime()).Round(time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\n", p.GetSpec().GetName(), p.GetStatus().GetPhase(), running, len(p.GetSpec().GetContainers()), restarts, age)
		}
		return tw.Flush()
	})
}

const logsUsage = `Usage: herdctl logs POD [--container NAME] [--tail N] [--follow] [--node NAME@ADDRESS] [TLS flags]

Prints a container's log (the pod's only container by default).
`

func runLogs(args []string, stdout io.Writer) error {
	fs := newFlagSet("logs")
	var cf connFlags
	cf.register(fs)
	container := fs.String("container", "", "container name (default: the pod's only container)")
	tail := fs.Int64("tail", 0, "only the last N lines (0: all that is kept)")
	follow := fs.Bool("follow", false, "keep streaming new output")
	pos, help, err := parseArgs(fs, args, logsUsage, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return newUsageError(logsUsage, "logs: exactly one POD name is required")
	}
	timeout := 30 * time.Second
	if *follow {
		timeout = 0 // a followed stream runs until the pod or the user ends it
	}
	return cf.call(logsUsage, timeout, func(ctx context.Context, conn *grpc.ClientConn) error {
		stream, err := herdv1.NewPodServiceClient(conn).PodLogs(ctx, &herdv1.PodLogsRequest{
			Pod: pos[0], Container: *container, Follow: *follow, TailLines: *tail,
		})
		if err != nil {
			return fmt.Errorf("logs of %s: %w", pos[0], err)
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("logs of %s: %w", pos[0], err)
			}
			if _, err := stdout.Write(chunk.GetData()); err != nil {
				return err
			}
		}
	})
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
