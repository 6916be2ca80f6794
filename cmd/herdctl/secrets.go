package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

const secretsUsage = `Usage: herdctl secrets [list] [--namespace NS] [--node NAME@ADDRESS] [TLS flags]
       herdctl secrets rotate-key --node NAME@ADDRESS [TLS flags]

list (the default) shows the cluster's secrets without their values: type,
keys, version, checksum, the members that hold them and whether every
matching member holds the current version.

rotate-key makes a new key-encryption key current on the node and re-wraps
every data key stored there; secrets stay readable throughout. Run it on
each node (each node has its own key). The old key file stays until it is
retired.

Both need an admin client certificate (herdctl certs client NAME --admin).
`

func runSecrets(args []string, stdout io.Writer) error {
	fs := newFlagSet("secrets")
	var cf connFlags
	cf.register(fs)
	ns := fs.String("namespace", "", "only this namespace (default: all)")
	pos, help, err := parseArgs(fs, args, secretsUsage, stdout)
	if help || err != nil {
		return err
	}
	action := "list"
	switch len(pos) {
	case 0:
	case 1:
		action = pos[0]
	default:
		return newUsageError(secretsUsage, "secrets: one action at most, got %q", pos)
	}
	if action != "list" && action != "rotate-key" {
		return newUsageError(secretsUsage, "secrets: unknown action %q (list or rotate-key)", action)
	}
	return cf.call(secretsUsage, 60*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := herdv1.NewSecretServiceClient(conn)
		if action == "rotate-key" {
			resp, err := client.RotateKey(ctx, &herdv1.RotateKeyRequest{})
			if err != nil {
				return fmt.Errorf("rotate key: %w", err)
			}
			fmt.Fprintf(stdout, "new key-encryption key %s; %d secrets re-wrapped\n", resp.GetKeyId(), resp.GetRewrapped())
			return nil
		}
		resp, err := client.ListSecrets(ctx, &herdv1.ListSecretsRequest{Namespace: *ns})
		if err != nil {
			return fmt.Errorf("list secrets: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tTYPE\tKEYS\tVERSION\tCHECKSUM\tHELD BY\tSYNCED")
		for _, s := range resp.GetSecrets() {
			m, st := s.GetMeta(), s.GetStatus()
			var holders []string
			for _, mv := range st.GetMembers() {
				holders = append(holders, mv.GetNode())
			}
			sort.Strings(holders)
			sum := st.GetChecksum()
			if len(sum) > 24 {
				sum = sum[:24] + "…"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%v\n", m.GetNamespace(), m.GetName(), m.GetType(),
				strings.Join(m.GetKeys(), ","), st.GetVersion(), sum, strings.Join(holders, ","), st.GetSynced())
		}
		return tw.Flush()
	})
}
