package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

const clustersUsage = `Usage: herdctl clusters [list] [--node NAME@ADDRESS] [TLS flags]
       herdctl clusters kubeconfig NAME [--node NAME@ADDRESS] [TLS flags] > kubeconfig

list (the default) shows the nested Kubernetes clusters the node owns:
phase, the step in progress, the endpoint, ready VMs and ready nested
nodes, and the host namespace.

kubeconfig prints a cluster's admin kubeconfig (it holds a client key:
redirect it to a file only you can read).

Both need an admin client certificate (herdctl certs client NAME --admin).
`

func runClusters(args []string, stdout io.Writer) error {
	fs := newFlagSet("clusters")
	var cf connFlags
	cf.register(fs)
	pos, help, err := parseArgs(fs, args, clustersUsage, stdout)
	if help || err != nil {
		return err
	}
	action := "list"
	if len(pos) > 0 {
		action = pos[0]
	}
	switch {
	case action == "list" && len(pos) <= 1:
	case action == "kubeconfig" && len(pos) == 2:
	case action == "kubeconfig":
		return newUsageError(clustersUsage, "clusters kubeconfig: want exactly one cluster name")
	default:
		return newUsageError(clustersUsage, "clusters: unknown action %q (list or kubeconfig)", action)
	}
	return cf.call(clustersUsage, 30*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := herdv1.NewNestedClusterServiceClient(conn)
		if action == "kubeconfig" {
			resp, err := client.GetNestedClusterKubeconfig(ctx, &herdv1.GetNestedClusterKubeconfigRequest{Name: pos[1]})
			if err != nil {
				return fmt.Errorf("kubeconfig of cluster %s: %w", pos[1], err)
			}
			_, err = stdout.Write(resp.GetKubeconfig())
			return err
		}
		resp, err := client.ListNestedClusters(ctx, &herdv1.ListNestedClustersRequest{})
		if err != nil {
			return fmt.Errorf("list clusters: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tPHASE\tSTEP\tENDPOINT\tVMS READY\tNODES READY\tHOST NAMESPACE")
		for _, c := range resp.GetClusters() {
			st := c.GetStatus()
			vms, nodes := 0, 0
			for _, vm := range st.GetVms() {
				if vm.GetReady() {
					vms++
				}
				if vm.GetNodeReady() {
					nodes++
				}
			}
			endpoint := st.GetEndpoint()
			if endpoint == "" {
				endpoint = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%s\n", c.GetSpec().GetName(), c.GetSpec().GetKubernetesVersion(),
				st.GetPhase(), st.GetStep(), endpoint, vms, len(st.GetVms()), nodes, len(st.GetVms()), st.GetHostNamespace())
		}
		return tw.Flush()
	})
}
