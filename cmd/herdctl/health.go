package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const healthUsage = `Usage: herdctl health [--service NAME] [--node NAME@ADDRESS] [TLS flags]

Shows what agentd's standard grpc.health.v1 service reports: agentd as a
whole and each dependency (containerd, store). With --service, only that
one ("" is agentd as a whole). Exits 1 when what is shown is not SERVING.
Any client certificate of the herd CA may ask, admin or not.
`

func runHealth(args []string, stdout io.Writer) error {
	fs := newFlagSet("health")
	var cf connFlags
	cf.register(fs)
	service := fs.String("service", "", `one service to check ("" is agentd as a whole)`)
	if _, help, err := parseArgs(fs, args, healthUsage, stdout); help || err != nil {
		return err
	}
	only := false // --service "" asks for agentd as a whole, unlike no --service
	fs.Visit(func(f *flag.Flag) { only = only || f.Name == "service" })
	return cf.call(healthUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		hc := healthpb.NewHealthClient(conn)

		statuses := map[string]healthpb.HealthCheckResponse_ServingStatus{}
		if only {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
			if err != nil {
				return fmt.Errorf("check health of %q: %w", *service, err)
			}
			statuses[*service] = resp.GetStatus()
		} else {
			resp, err := hc.List(ctx, &healthpb.HealthListRequest{})
			if err != nil {
				return fmt.Errorf("list health: %w", err)
			}
			for name, st := range resp.GetStatuses() {
				statuses[name] = st.GetStatus()
			}
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tSTATUS")
		var down []string
		for _, name := range slices.Sorted(maps.Keys(statuses)) {
			shown := name
			if name == "" {
				shown = `"" (agentd)`
			}
			fmt.Fprintf(tw, "%s\t%s\n", shown, statuses[name])
			if statuses[name] != healthpb.HealthCheckResponse_SERVING {
				down = append(down, shown)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(down) > 0 {
			return fmt.Errorf("not serving: %v", down)
		}
		return nil
	})
}
