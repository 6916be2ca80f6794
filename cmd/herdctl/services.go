package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

const servicesUsage = `Usage: herdctl services [--namespace NS] [--node NAME@ADDRESS] [TLS flags]

Lists the cluster's services as the given node sees them: type, cluster IP,
ports (port:node port/protocol -> target), ready endpoints of all endpoints,
and whether every live member holds the current version.
`

func runServices(args []string, stdout io.Writer) error {
	fs := newFlagSet("services")
	var cf connFlags
	cf.register(fs)
	ns := fs.String("namespace", "", "only this namespace (default: all)")
	if _, help, err := parseArgs(fs, args, servicesUsage, stdout); help || err != nil {
		return err
	}
	return cf.call(servicesUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewServiceServiceClient(conn).ListServices(ctx, &herdv1.ListServicesRequest{Namespace: *ns})
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tTYPE\tCLUSTER IP\tPORTS\tENDPOINTS\tSYNCED")
		for _, s := range resp.GetServices() {
			sp, st := s.GetSpec(), s.GetStatus()
			ip := st.GetClusterIp()
			if ip == "" {
				ip = "None"
			}
			ready := 0
			for _, e := range st.GetEndpoints() {
				if e.GetReady() {
					ready++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%v\n", sp.GetNamespace(), sp.GetName(), sp.GetType(), ip,
				formatPorts(sp.GetPorts()), ready, len(st.GetEndpoints()), st.GetSynced())
		}
		return tw.Flush()
	})
}

func formatPorts(ports []*herdv1.ServicePort) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		s := fmt.Sprint(p.GetPort())
		if p.GetNodePort() != 0 {
			s += fmt.Sprintf(":%d", p.GetNodePort())
		}
		s += "/" + p.GetProtocol()
		switch {
		case p.GetTargetPortName() != "":
			s += "->" + p.GetTargetPortName()
		case p.GetTargetPort() != 0 && p.GetTargetPort() != p.GetPort():
			s += fmt.Sprintf("->%d", p.GetTargetPort())
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}
