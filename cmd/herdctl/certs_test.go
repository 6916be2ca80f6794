package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// certs runs "herdctl certs ARGS..." and returns its output.
func certs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runCerts(args, &out)
	return out.String(), err
}

func mustCerts(t *testing.T, args ...string) string {
	t.Helper()
	out, err := certs(t, args...)
	if err != nil {
		t.Fatalf("certs %v: %v", args, err)
	}
	return out
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

// assertKeyPair checks that the key file holds the key of the certificate.
func assertKeyPair(t *testing.T, certPath, keyPath string) {
	t.Helper()
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Errorf("%s / %s do not form a key pair: %v", certPath, keyPath, err)
	}
}

func caPool(t *testing.T, dir string) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return ca, pool
}

func TestCertsInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out := mustCerts(t, "init", "--dir", dir, "--name", "test CA")
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	for _, p := range []string{certPath, keyPath} {
		if !strings.Contains(out, "wrote "+p) {
			t.Errorf("output does not mention %s:\n%s", p, out)
		}
	}
	assertMode(t, dir, 0o700)
	assertMode(t, keyPath, 0o600)
	assertMode(t, certPath, 0o644)
	assertKeyPair(t, certPath, keyPath)
	ca := readCert(t, certPath)
	if !ca.IsCA || ca.Subject.CommonName != "test CA" {
		t.Errorf("CA: IsCA=%v CN=%q", ca.IsCA, ca.Subject.CommonName)
	}
	if d := time.Until(ca.NotAfter); d < 3649*24*time.Hour || d > 3651*24*time.Hour {
		t.Errorf("CA validity %v, want about 10 years", d)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("unexpected files in %s: %v", dir, entries)
	}

	// A second init is refused and leaves the CA untouched.
	_, err := certs(t, "init", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second init: error = %v, want refusal mentioning --force", err)
	}
	if !readCert(t, certPath).Equal(ca) {
		t.Fatal("refused init modified ca.pem")
	}
	// Also refused when only the key is left over.
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if _, err := certs(t, "init", "--dir", dir); err == nil {
		t.Fatal("init overwrote an existing ca-key.pem")
	}

	out = mustCerts(t, "init", "--dir", dir, "--force", "--days", "30")
	if !strings.Contains(out, "replaced") {
		t.Errorf("forced init does not warn about replacing the CA:\n%s", out)
	}
	ca2 := readCert(t, certPath)
	if ca2.Equal(ca) || ca2.Subject.CommonName != "herd CA" {
		t.Errorf("forced init: CN=%q, same cert=%v", ca2.Subject.CommonName, ca2.Equal(ca))
	}
	if d := time.Until(ca2.NotAfter); d > 30*24*time.Hour || d < 29*24*time.Hour {
		t.Errorf("--days 30: validity %v", d)
	}
	assertKeyPair(t, certPath, keyPath)
	assertMode(t, keyPath, 0o600)
}

func TestCertsDefaultDir(t *testing.T) {
	t.Run("HERD_CERTS_DIR", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "from-env")
		t.Setenv("HERD_CERTS_DIR", dir)
		mustCerts(t, "init")
		mustCerts(t, "client", "alice")
		for _, f := range []string{"ca.pem", "ca-key.pem", "alice.pem", "alice-key.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("./certs", func(t *testing.T) {
		t.Setenv("HERD_CERTS_DIR", "")
		wd := t.TempDir()
		t.Chdir(wd)
		out := mustCerts(t, "init")
		if !strings.Contains(out, filepath.Join("certs", "ca.pem")) {
			t.Errorf("output: %s", out)
		}
		if _, err := os.Stat(filepath.Join(wd, "certs", "ca-key.pem")); err != nil {
			t.Error(err)
		}
	})
}

func TestCertsNode(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", "--dir", dir)
	ca, roots := caPool(t, dir)

	// Flags may come before or after NAME; --ip/--dns repeat or take lists.
	out := mustCerts(t, "node", "--dir", dir, "node-1", "--ip", "10.1.2.3", "--ip", "fd00::1,127.0.0.1",
		"--dns", "node-1.herd.lan", "--days", "10")
	certPath, keyPath := filepath.Join(dir, "node-1.pem"), filepath.Join(dir, "node-1-key.pem")
	for _, s := range []string{"wrote " + certPath, "wrote " + keyPath, "10.1.2.3", "node-1.herd.lan"} {
		if !strings.Contains(out, s) {
			t.Errorf("output does not mention %q:\n%s", s, out)
		}
	}
	assertMode(t, keyPath, 0o600)
	assertMode(t, certPath, 0o644)
	assertKeyPair(t, certPath, keyPath)

	c := readCert(t, certPath)
	if c.Subject.CommonName != "node-1" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if want := []string{"node-1", "node-1.herd.lan"}; !slices.Equal(c.DNSNames, want) {
		t.Errorf("DNS SANs = %v, want %v", c.DNSNames, want)
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.1.2.3", "fd00::1", "127.0.0.1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %v, want %v", ips, want)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(c.ExtKeyUsage, want) {
		t.Errorf("EKU = %v, want %v", c.ExtKeyUsage, want)
	}
	if pki.IsAdmin(c) {
		t.Error("node certificate is admin")
	}
	if d := time.Until(c.NotAfter); d > 10*24*time.Hour || d < 9*24*time.Hour {
		t.Errorf("--days 10: validity %v", d)
	}
	if err := c.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	for _, name := range []string{"node-1", "node-1.herd.lan", "10.1.2.3", "fd00::1", "127.0.0.1"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	for _, name := range []string{"node-2", "10.1.2.4"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err == nil {
			t.Errorf("verifies for %s", name)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node certificate is not valid for client auth: %v", err)
	}

	// Re-issuing needs --force.
	if _, err := certs(t, "node", "node-1", "--ip", "10.1.2.3", "--dir", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite without --force: error = %v", err)
	}
	if !readCert(t, certPath).Equal(c) {
		t.Fatal("refused re-issue modified the certificate")
	}
	mustCerts(t, "node", "node-1", "--ip", "10.9.9.9", "--dir", dir, "--force")
	if c2 := readCert(t, certPath); c2.Equal(c) || !c2.IPAddresses[0].Equal(net.ParseIP("10.9.9.9")) {
		t.Error("--force did not re-issue the certificate")
	}
	assertKeyPair(t, certPath, keyPath)
	assertMode(t, keyPath, 0o600)
}

func TestCertsClient(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", "--dir", dir)
	ca, roots := caPool(t, dir)
	for _, tt := range []struct {
		name   string
		args   []string
		admin  bool
		access pki.Access
	}{
		{name: "alice", args: []string{"client", "alice", "--admin", "--dir", dir}, admin: true, access: pki.Access{Role: pki.RoleAdmin}},
		{name: "terraform", args: []string{"client", "--dir", dir, "terraform"}, access: pki.Access{Role: pki.RoleOperator}},
		{name: "root", args: []string{"client", "root", "--role", "admin", "--dir", dir}, admin: true, access: pki.Access{Role: pki.RoleAdmin}},
		{name: "web-ops", args: []string{"client", "web-ops", "--role", "operator", "--namespace", "web,shop", "--dir", dir},
			access: pki.Access{Role: pki.RoleOperator, Namespaces: []string{"shop", "web"}}},
		{name: "watcher", args: []string{"client", "watcher", "--role", "viewer", "--namespace", "web", "--grant-logs", "--dir", dir},
			access: pki.Access{Role: pki.RoleViewer, Namespaces: []string{"web"}, Logs: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := mustCerts(t, tt.args...)
			certPath, keyPath := filepath.Join(dir, tt.name+".pem"), filepath.Join(dir, tt.name+"-key.pem")
			if !strings.Contains(out, "wrote "+certPath) || !strings.Contains(out, "wrote "+keyPath) {
				t.Errorf("output:\n%s", out)
			}
			assertMode(t, keyPath, 0o600)
			assertMode(t, certPath, 0o644)
			assertKeyPair(t, certPath, keyPath)
			c := readCert(t, certPath)
			if c.Subject.CommonName != tt.name {
				t.Errorf("CN = %q", c.Subject.CommonName)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("EKU = %v, want [ClientAuth]", c.ExtKeyUsage)
			}
			if got := pki.IsAdmin(c); got != tt.admin {
				t.Errorf("IsAdmin = %v, want %v", got, tt.admin)
			}
			if got, err := pki.ClientAccess(c); err != nil || !reflect.DeepEqual(got, tt.access) {
				t.Errorf("ClientAccess = %+v, %v; want %+v", got, err, tt.access)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client certificate does not verify: %v", err)
			}
			if d := time.Until(c.NotAfter); d > 90*24*time.Hour || d < 89*24*time.Hour {
				t.Errorf("default validity %v, want 90 days", d)
			}
		})
	}
	// --days beyond the CA's lifetime is limited to the CA's expiry.
	out := mustCerts(t, "client", "long", "--days", "100000", "--dir", dir)
	if c := readCert(t, filepath.Join(dir, "long.pem")); !c.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("NotAfter %v, want CA expiry %v", c.NotAfter, ca.NotAfter)
	}
	if !strings.Contains(out, "limited by the CA") {
		t.Errorf("output does not mention the clamp:\n%s", out)
	}
}

func TestCertsErrors(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", "--dir", dir)
	mustCerts(t, "node", "taken", "--ip", "10.0.0.1", "--dir", dir)
	empty := t.TempDir()

	tests := []struct {
		name      string
		args      []string
		want      string
		wantUsage bool // a *usageError (exit status 2)
	}{
		{name: "no subcommand", args: nil, want: "missing subcommand", wantUsage: true},
		{name: "unknown subcommand", args: []string{"rotate"}, want: `unknown subcommand "rotate"`, wantUsage: true},
		{name: "unknown flag", args: []string{"node", "n1", "--ip", "10.0.0.1", "--bogus", "--dir", dir}, want: "bogus", wantUsage: true},
		{name: "node without name", args: []string{"node", "--ip", "10.0.0.1", "--dir", dir}, want: "missing NAME", wantUsage: true},
		{name: "node with two names", args: []string{"node", "a", "b", "--ip", "10.0.0.1", "--dir", dir}, want: "expected one NAME", wantUsage: true},
		{name: "node without ip", args: []string{"node", "n1", "--dir", dir}, want: "--ip is required", wantUsage: true},
		{name: "node with bad ip", args: []string{"node", "n1", "--ip", "10.0.0.300", "--dir", dir}, want: `invalid --ip "10.0.0.300"`, wantUsage: true},
		{name: "node with bad dns", args: []string{"node", "n1", "--ip", "10.0.0.1", "--dns", "bad_name", "--dir", dir}, want: "invalid DNS name"},
		{name: "uppercase name", args: []string{"node", "Node1", "--ip", "10.0.0.1", "--dir", dir}, want: `invalid name "Node1"`},
		{name: "underscore name", args: []string{"client", "a_b", "--dir", dir}, want: `invalid name "a_b"`},
		{name: "leading hyphen", args: []string{"client", "--dir", dir, "--", "-ab"}, want: `invalid name "-ab"`},
		{name: "trailing hyphen", args: []string{"client", "ab-", "--dir", dir}, want: `invalid name "ab-"`},
		{name: "dotted name", args: []string{"client", "a.b", "--dir", dir}, want: `invalid name "a.b"`},
		{name: "too long name", args: []string{"client", strings.Repeat("a", 64), "--dir", dir}, want: "longer than 63"},
		{name: "reserved ca", args: []string{"node", "ca", "--ip", "10.0.0.1", "--dir", dir, "--force"}, want: "reserved for the CA"},
		{name: "reserved -key suffix", args: []string{"client", "taken-key", "--dir", dir, "--force"}, want: "reserved for key files"},
		{name: "zero days", args: []string{"client", "c1", "--days", "0", "--dir", dir}, want: "--days", wantUsage: true},
		{name: "init extra argument", args: []string{"init", "extra", "--dir", dir}, want: `unexpected argument "extra"`, wantUsage: true},
		{name: "init empty name", args: []string{"init", "--name", " ", "--dir", empty}, want: "--name", wantUsage: true},
		{name: "no CA", args: []string{"client", "c1", "--dir", empty}, want: "certs init"},
		{name: "unknown role", args: []string{"client", "c1", "--role", "root", "--dir", dir}, want: `unknown role "root"`, wantUsage: true},
		{name: "admin and viewer", args: []string{"client", "c1", "--admin", "--role", "viewer", "--dir", dir}, want: "contradict", wantUsage: true},
		{name: "logs for an operator", args: []string{"client", "c1", "--grant-logs", "--dir", dir}, want: "the logs grant is for viewers"},
		{name: "admin of a namespace", args: []string{"client", "c1", "--admin", "--namespace", "web", "--dir", dir}, want: "an admin holds every namespace"},
		{name: "bad namespace", args: []string{"client", "c1", "--role", "viewer", "--namespace", "Web", "--dir", dir}, want: "namespace: invalid name"},
		{name: "existing client", args: []string{"client", "taken", "--dir", dir}, want: "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadDir(dir)
			_, err := certs(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			var ue *usageError
			if got := errors.As(err, &ue); got != tt.wantUsage {
				t.Errorf("usage error = %v, want %v (%v)", got, tt.wantUsage, err)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(before) {
				t.Errorf("failed command changed %s: %d -> %d entries", dir, len(before), len(after))
			}
		})
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("failed commands wrote into %s: %v", empty, entries)
	}
}

func TestCertsHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"node", "-h"}, {"client", "--help"}, {"init", "-help"}} {
		out, err := certs(t, args...)
		if err != nil || !strings.Contains(out, "herdctl certs node") {
			t.Errorf("certs %v: err=%v output=%q", args, err, out)
		}
	}
}

// TestCertsMutualTLS issues certificates with the CLI and uses them, loaded
// from disk, for a real mTLS handshake over 127.0.0.1.
func TestCertsMutualTLS(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", "--dir", dir)
	mustCerts(t, "node", "node-1", "--ip", "127.0.0.1", "--dir", dir)
	mustCerts(t, "client", "alice", "--admin", "--dir", dir)
	mustCerts(t, "client", "bob", "--dir", dir)

	load := func(name string) []byte {
		b, err := pki.LoadPEMOrFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caPEM := load("ca.pem")
	serverCfg, err := pki.ServerTLSConfig(caPEM, load("node-1.pem"), load("node-1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		client, serverName string
		wantOK, wantAdmin  bool
	}{
		{client: "alice", serverName: "node-1", wantOK: true, wantAdmin: true},
		{client: "bob", serverName: "127.0.0.1", wantOK: true, wantAdmin: false},
		{client: "bob", serverName: "node-2", wantOK: false},
	} {
		t.Run(tt.client+"@"+tt.serverName, func(t *testing.T) {
			clientCfg, err := pki.ClientTLSConfig(caPEM, load(tt.client+".pem"), load(tt.client+"-key.pem"), tt.serverName)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				err   error
				state tls.ConnectionState
			}
			done := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.Close()
				conn := c.(*tls.Conn)
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if err := conn.Handshake(); err != nil {
					done <- result{err: err}
					return
				}
				_, err = io.Copy(conn, conn)
				done <- result{err: err, state: conn.ConnectionState()}
			}()

			echoErr := func() error {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), clientCfg)
				if err != nil {
					return err
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(conn, "hello herd\n"); err != nil {
					return err
				}
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil {
					return err
				}
				if line != "hello herd\n" {
					return errors.New("echo mismatch: " + line)
				}
				return conn.CloseWrite()
			}()
			res := <-done
			if !tt.wantOK {
				if echoErr == nil || res.err == nil {
					t.Fatalf("connection not refused: client err=%v server err=%v", echoErr, res.err)
				}
				return
			}
			if echoErr != nil || res.err != nil {
				t.Fatalf("client err=%v server err=%v", echoErr, res.err)
			}
			if len(res.state.VerifiedChains) == 0 {
				t.Fatal("no verified client chain on the server")
			}
			leaf := res.state.VerifiedChains[0][0]
			if leaf.Subject.CommonName != tt.client || pki.IsAdmin(leaf) != tt.wantAdmin {
				t.Errorf("server saw CN=%q admin=%v, want %q admin=%v", leaf.Subject.CommonName, pki.IsAdmin(leaf), tt.client, tt.wantAdmin)
			}
		})
	}
}

// certs renew replaces a node's and a client's files with a successor of
// the same identity and a new key, for the default 90 days or --days.
func TestCertsRenew(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", "--dir", dir)
	mustCerts(t, "node", "node-a", "--ip", "10.0.0.5", "--dir", dir, "--days", "1")
	mustCerts(t, "client", "wes", "--role", "viewer", "--namespace", "web", "--grant-logs", "--dir", dir, "--days", "1")
	for _, tc := range []struct {
		name, days string
		want       time.Duration
	}{{"node-a", "", 90 * 24 * time.Hour}, {"wes", "30", 30 * 24 * time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			certPath, keyPath := filepath.Join(dir, tc.name+".pem"), filepath.Join(dir, tc.name+"-key.pem")
			old := readCert(t, certPath)
			oldKey, err := os.ReadFile(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"renew", tc.name, "--dir", dir}
			if tc.days != "" {
				args = append(args, "--days", tc.days)
			}
			out := mustCerts(t, args...)
			if !strings.Contains(out, "renewed") {
				t.Errorf("output %q does not say renewed", out)
			}
			got := readCert(t, certPath)
			newKey, err := os.ReadFile(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if got.SerialNumber.Cmp(old.SerialNumber) == 0 || string(newKey) == string(oldKey) {
				t.Error("serial or key unchanged")
			}
			if got.Subject.String() != old.Subject.String() || fmt.Sprint(got.IPAddresses, got.DNSNames, got.ExtKeyUsage) != fmt.Sprint(old.IPAddresses, old.DNSNames, old.ExtKeyUsage) {
				t.Errorf("renewed %v %v %v %v, want %v %v %v %v", got.Subject, got.IPAddresses, got.DNSNames, got.ExtKeyUsage, old.Subject, old.IPAddresses, old.DNSNames, old.ExtKeyUsage)
			}
			if d := time.Until(got.NotAfter); d > tc.want || d < tc.want-24*time.Hour {
				t.Errorf("renewed validity %v, want %v", d, tc.want)
			}
			if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v, %v", fi.Mode(), err)
			}
		})
	}
	if _, err := certs(t, "renew", "nobody", "--dir", dir); err == nil {
		t.Error("renew of a certificate that does not exist succeeded")
	}
}
