// Command herdctl is the herd operator CLI.
//
// Each subcommand lives in its own file and is registered in the commands
// table below; a subcommand receives the arguments that follow its name.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// command is one top-level herdctl subcommand.
type command struct {
	summary string
	run     func(args []string, stdout io.Writer) error
}

// commands is the subcommand table. Add new subcommands here.
var commands = map[string]command{
	"certs":      {summary: "create the herd CA and node/client certificates", run: runCerts},
	"node":       {summary: "show a node's identity, capacity and readiness", run: runNode},
	"health":     {summary: "show a node's standard gRPC health: agentd, containerd, store", run: runHealth},
	"pods":       {summary: "list the pods on a node", run: runPods},
	"logs":       {summary: "print a pod container's log", run: runLogs},
	"nodes":      {summary: "list the cluster's members as a node sees them", run: runNodes},
	"services":   {summary: "list the cluster's services with cluster IPs and endpoints", run: runServices},
	"clusters":   {summary: "list the nested Kubernetes clusters a node owns, or print one's kubeconfig", run: runClusters},
	"secrets":    {summary: "list secrets (never their values) or rotate a node's key-encryption key", run: runSecrets},
	"gossip-key": {summary: "write a new gossip encryption key for agentd --gossip-key", run: runGossipKey},
	"cluster":    {summary: "cluster-wide operations: rotate-gossip-key", run: runCluster},

	"deployments": {summary: "list the cluster's deployments with their replica counts, revision and phase", run: runDeployments},
	"deployment":  {summary: "show a deployment's replicas, placement, strategy and history, or --watch its rollout", run: runDeployment},

	"volumes": {summary: "list a node's volumes with their size, use and the pods mounting them", run: runVolumes},
	"volume":  {summary: "back up a volume's files to a tar on stdout, or restore them from one on stdin", run: runVolume},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usage returns the top-level help text.
func usage() string {
	var b strings.Builder
	b.WriteString("herdctl - operate a herd of agentd nodes\n\n")
	b.WriteString("Usage:\n  herdctl <command> [arguments]\n\nCommands:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(tw, "  %s\t%s\n", name, commands[name].summary)
	}
	tw.Flush()
	b.WriteString("\nRun 'herdctl <command> -h' for help on a command.\n")
	return b.String()
}

// usageError reports invalid command-line usage; run prints the message
// followed by the relevant usage text and exits with status 2.
type usageError struct {
	msg   string
	usage string
}

func (e *usageError) Error() string { return e.msg }

func newUsageError(usage, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), usage: usage}
}

// run executes herdctl with args (without the program name) and returns
// the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if cmd, ok := commands[args[1]]; ok {
				return report(cmd.run([]string{"-h"}, stdout), stderr)
			}
		}
		fmt.Fprint(stdout, usage())
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "herdctl: unknown command %q\n\n%s", name, usage())
		return 2
	}
	return report(cmd.run(args[1:], stdout), stderr)
}

func report(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "herdctl: %s\n\n%s", ue.msg, ue.usage)
		return 2
	}
	fmt.Fprintf(stderr, "herdctl: %v\n", err)
	return 1
}
