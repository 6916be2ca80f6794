package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// herdctl certs revoke on one member of a real cluster of two: the other
// member refuses the certificate on a new connection, and the member it
// was revoked through refuses it on the connection already open; both list
// it; revoking again keeps the first entry.
func TestCertsRevoke(t *testing.T) {
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{Names: []string{"ctl-r1", "ctl-r2"}})
	a, b := c.Nodes[0], c.Nodes[1]
	dir := t.TempDir()
	certPEM, keyPEM, err := env.Certs.CA.IssueClientAccess("eve", pki.Access{Role: pki.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "eve.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	eve, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	serial := eve.SerialNumber.Text(16)
	dialEve := func(n *acctest.ClusterNode) herdv1.PodServiceClient {
		t.Helper()
		tc, err := n.Agent.ClientTLS(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("passthrough:///"+n.Agent.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return herdv1.NewPodServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	open := dialEve(a)
	if _, err := open.ListPods(ctx, &herdv1.ListPodsRequest{}); err != nil {
		t.Fatalf("eve before the revocation: %v", err)
	}
	admin := func(n *acctest.ClusterNode) []string {
		return []string{"--node", n.Agent.ID(), "--ca-cert", env.Certs.CAFile, "--cert", env.Certs.ClientCertFile, "--key", env.Certs.ClientKeyFile}
	}
	var out, errb bytes.Buffer
	if code := run(append([]string{"certs", "revoke", "eve", "--dir", dir, "--reason", "left the team"}, admin(a)...), &out, &errb); code != 0 {
		t.Fatalf("certs revoke: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "revoked certificate eve (serial "+serial+")") {
		t.Errorf("revoke output: %s", out.String())
	}

	// An open connection gets the call refused as revoked; a new one is
	// refused in the handshake, where TLS has only its generic alert.
	refused := func(what, want string, call func() error) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := call()
			if err != nil && strings.Contains(err.Error(), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v, want refused as revoked", what, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	refused("the open connection to the member it was revoked through", "is revoked", func() error {
		_, err := open.ListPods(ctx, &herdv1.ListPodsRequest{})
		return err
	})
	refused("a new connection to the other member", "tls: bad certificate", func() error {
		_, err := dialEve(b).ListPods(ctx, &herdv1.ListPodsRequest{})
		return err
	})

	out.Reset()
	if code := run(append([]string{"certs", "revoked"}, admin(b)...), &out, &errb); code != 0 {
		t.Fatalf("certs revoked: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{serial, "eve", "left the team", "acctest"} { // acctest: the admin certificate's name
		if !strings.Contains(out.String(), w) {
			t.Errorf("certs revoked on the other member lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if code := run(append([]string{"certs", "revoke", "--serial", strings.ToUpper(serial)}, admin(b)...), &out, &errb); code != 0 {
		t.Fatalf("second revoke: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "was revoked already") || !strings.Contains(out.String(), "eve") {
		t.Errorf("second revoke output: %s", out.String())
	}
	// The admin certificate still works.
	if _, err := a.Pods.ListPods(ctx, &herdv1.ListPodsRequest{}); err != nil {
		t.Errorf("admin after the revocation: %v", err)
	}
}
