package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// certsRevoke puts a certificate on the cluster's deny list.
func certsRevoke(args []string, stdout io.Writer) error {
	fs := newFlagSet("certs revoke")
	var cf connFlags
	cf.register(fs)
	dir := fs.String("dir", defaultCertsDir(), "directory holding NAME.pem")
	serial := fs.String("serial", "", "the serial number (hex) instead of NAME")
	reason := fs.String("reason", "", "why, for the deny list")
	pos, help, err := parseArgs(fs, args, certsUsage, stdout)
	if err != nil || help {
		return err
	}
	var name string
	switch {
	case *serial != "" && len(pos) > 0:
		return newUsageError(certsUsage, "certs revoke: give NAME or --serial, not both")
	case *serial == "" && len(pos) != 1:
		return newUsageError(certsUsage, "certs revoke: give one NAME (DIR/NAME.pem) or --serial HEX")
	case *serial == "":
		name = pos[0]
		path := filepath.Join(*dir, name+".pem")
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("certs revoke: %w", err)
		}
		c, err := pki.ParseCertificatePEM(b)
		if err != nil {
			return fmt.Errorf("certs revoke: %s: %w", path, err)
		}
		*serial = c.SerialNumber.Text(16)
		name = c.Subject.CommonName
	}
	return cf.call(certsUsage, 30*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewClusterServiceClient(conn).RevokeCertificate(ctx, &herdv1.RevokeCertificateRequest{
			Serial: *serial, Name: name, Reason: *reason,
		})
		if err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
		r := resp.GetRevoked()
		if resp.GetCreated() {
			fmt.Fprintf(stdout, "revoked certificate %s (serial %s)\n", describeName(r.GetName()), r.GetSerial())
		} else {
			fmt.Fprintf(stdout, "certificate %s (serial %s) was revoked already, at %s by %s\n",
				describeName(r.GetName()), r.GetSerial(), r.GetRevokedAt().AsTime().Format(time.RFC3339), r.GetRevokedBy())
		}
		return nil
	})
}

// certsRevoked lists the deny list.
func certsRevoked(args []string, stdout io.Writer) error {
	fs := newFlagSet("certs revoked")
	var cf connFlags
	cf.register(fs)
	pos, help, err := parseArgs(fs, args, certsUsage, stdout)
	if err != nil || help {
		return err
	}
	if len(pos) > 0 {
		return newUsageError(certsUsage, "certs revoked: no arguments expected, got %s", strings.Join(pos, " "))
	}
	return cf.call(certsUsage, 30*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewClusterServiceClient(conn).ListRevokedCertificates(ctx, &herdv1.ListRevokedCertificatesRequest{})
		if err != nil {
			return fmt.Errorf("list revoked certificates: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERIAL\tNAME\tREVOKED\tBY\tREASON")
		for _, r := range resp.GetRevoked() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.GetSerial(), describeName(r.GetName()),
				r.GetRevokedAt().AsTime().Format(time.RFC3339), r.GetRevokedBy(), r.GetReason())
		}
		return tw.Flush()
	})
}

func describeName(n string) string {
	if n == "" {
		return "-"
	}
	return n
}
