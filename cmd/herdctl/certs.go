package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

const certsUsage = `Usage:
  herdctl certs init   [--dir DIR] [--name "herd CA"] [--days N] [--force]
  herdctl certs node   NAME --ip IP [--ip IP...] [--dns NAME...] [--dir DIR] [--days N] [--force]
  herdctl certs client NAME [--role admin|operator|viewer] [--namespace NS...] [--grant-logs]
                       [--admin] [--dir DIR] [--days N] [--force]
  herdctl certs renew  NAME [--dir DIR] [--days N]
  herdctl certs revoke NAME|--serial HEX [--reason TEXT] [--dir DIR] --node ID [connection flags]
  herdctl certs revoked --node ID [connection flags]

Subcommands:
  init     create the herd CA: DIR/ca.pem and DIR/ca-key.pem
  node     issue an agentd node certificate (server and client auth):
           DIR/NAME.pem and DIR/NAME-key.pem, signed by the CA in DIR
  client   issue a client certificate (client auth): DIR/NAME.pem and
           DIR/NAME-key.pem, with a role (default operator):
             admin     everything (--admin is --role admin)
             operator  pods, deployments and services, their status and
                       logs, in the --namespace given (repeatable or
                       comma-separated; none: every namespace)
             viewer    read-only status in its namespaces; no logs
                       unless --grant-logs
           Secrets, node labels, joins and nested clusters are admin-only.
  renew    replace DIR/NAME.pem and DIR/NAME-key.pem with a successor: the
           same name, role, namespaces and addresses, a new key and a new
           validity (also for an expired certificate). agentd picks up a
           renewed node certificate within seconds, without a restart.
  revoke   put DIR/NAME.pem (or the certificate of serial HEX) on the
           cluster's deny list, through the node --node (an admin
           certificate: --ca-cert, --cert, --key or HERD_* as for the other
           commands). Every member refuses it within seconds, on new
           connections and on the ones already open.
  revoked  list the deny list.

Node and client certificates last 90 days unless --days says otherwise.

DIR defaults to $HERD_CERTS_DIR, or ./certs. NAME must be an RFC 1123 label
(lowercase letters, digits and '-', at most 63 characters, starting and
ending with a letter or digit). Private keys are written with mode 0600.
Existing files are never overwritten unless --force is given.
`

const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
	// leafDays is the default lifetime of node and client certificates.
	leafDays = 90
)

// certsRenew issues a successor of DIR/NAME.pem and replaces both files
// (the key first, each atomically).
func certsRenew(args []string, stdout io.Writer) error {
	fs := newFlagSet("certs renew")
	var c commonFlags
	addCommonFlags(fs, &c, leafDays)
	pos, help, err := parseArgs(fs, args, certsUsage, stdout)
	if err != nil || help {
		return err
	}
	name, err := onePositionalName("certs renew", pos)
	if err != nil {
		return err
	}
	validity, err := c.validity()
	if err != nil {
		return err
	}
	ca, err := loadCA(c.dir)
	if err != nil {
		return err
	}
	certPath := filepath.Join(c.dir, name+".pem")
	b, err := os.ReadFile(certPath)
	if err != nil {
		return fmt.Errorf("certs renew: %w", err)
	}
	old, err := pki.ParseCertificatePEM(b)
	if err != nil {
		return fmt.Errorf("certs renew: %s: %w", certPath, err)
	}
	certPEM, keyPEM, err := ca.Renew(old, pki.WithValidity(validity))
	if err != nil {
		return fmt.Errorf("certs renew: %w", err)
	}
	kind := "client"
	if pki.IsNode(old) {
		kind = "node"
	}
	c.force = true // renewing is replacing
	return writeLeaf(stdout, c, ca, name, "renewed "+kind, certPEM, keyPEM, validity)
}

// runCerts implements "herdctl certs".
func runCerts(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return newUsageError(certsUsage, "certs: missing subcommand")
	}
	switch args[0] {
	case "init":
		return certsInit(args[1:], stdout)
	case "node":
		return certsNode(args[1:], stdout)
	case "client":
		return certsClient(args[1:], stdout)
	case "renew":
		return certsRenew(args[1:], stdout)
	case "revoke":
		return certsRevoke(args[1:], stdout)
	case "revoked":
		return certsRevoked(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, certsUsage)
		return err
	default:
		return newUsageError(certsUsage, "certs: unknown subcommand %q", args[0])
	}
}

// defaultCertsDir is $HERD_CERTS_DIR, or "certs" (relative to the working
// directory).
func defaultCertsDir() string {
	if d := os.Getenv("HERD_CERTS_DIR"); d != "" {
		return d
	}
	return "certs"
}

// commonFlags are shared by every certs subcommand.
type commonFlags struct {
	dir   string
	days  int
	force bool
}

func addCommonFlags(fs *flag.FlagSet, c *commonFlags, defaultDays int) {
	fs.StringVar(&c.dir, "dir", defaultCertsDir(), "certificate directory")
	fs.IntVar(&c.days, "days", defaultDays, "validity in days")
	fs.BoolVar(&c.force, "force", false, "overwrite existing files")
}

func (c *commonFlags) validity() (time.Duration, error) {
	if c.days < 1 {
		return 0, newUsageError(certsUsage, "--days must be at least 1 (got %d)", c.days)
	}
	return time.Duration(c.days) * 24 * time.Hour, nil
}

func certsInit(args []string, stdout io.Writer) error {
	fs := newFlagSet("certs init")
	var c commonFlags
	addCommonFlags(fs, &c, 3650)
	name := fs.String("name", "herd CA", "CA common name")
	pos, help, err := parseArgs(fs, args, certsUsage, stdout)
	if err != nil || help {
		return err
	}
	if len(pos) != 0 {
		return newUsageError(certsUsage, "certs init: unexpected argument %q", pos[0])
	}
	validity, err := c.validity()
	if err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return newUsageError(certsUsage, "certs init: --name must not be empty")
	}
	certPath, keyPath := filepath.Join(c.dir, caCertFile), filepath.Join(c.dir, caKeyFile)
	existed, err := anyExists(certPath, keyPath)
	if err != nil {
		return err
	}
	if existed != "" && !c.force {
		return fmt.Errorf("a CA already exists in %s (%s); use --force to replace it, which invalidates every certificate it issued", c.dir, existed)
	}
	ca, err := pki.NewCA(*name, pki.WithValidity(validity))
	if err != nil {
		return err
	}
	if err := writeFiles(c.dir, certPath, ca.CertPEM, keyPath, ca.KeyPEM); err != nil {
		return err
	}
	if existed != "" {
		fmt.Fprintf(stdout, "replaced the existing CA in %s: certificates issued by the old CA are no longer trusted\n", c.dir)
	}
	fmt.Fprintf(stdout, "wrote %s (CA certificate %q, expires %s)\n", certPath, ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(stdout, "wrote %s (CA private key, mode 0600: keep it secret)\n", keyPath)
	return nil
}

func certsNode(args []string, stdout io.Writer) error {
	fs := newFlagSet("certs node")
	var c commonFlags
	addCommonFlags(fs, &c, leafDays)
	var ipArgs, dnsArgs stringList
	fs.Var(&ipArgs, "ip", "IP address SAN (repeatable, required)")
	fs.Var(&dnsArgs, "dns", "additional DNS name SAN (repeatable)")
	pos, help, err := parseArgs(fs, args, certsUsage, stdout)
	if err != nil || help {
		return err
	}
	name, err := onePositionalName("certs node", pos)
	if err != nil {
		return err
	}
	if len(ipArgs) == 0 {
		return newUsageError(certsUsage, "certs node: at least one --ip is required (the address clients use to reach the node)")
	}
	ips := make([]net.IP, 0, len(ipArgs))
	for _, s := range ipArgs {
		ip := net.ParseIP(s)
		if ip == nil {
			return newUsageError(certsUsage, "certs node: invalid --ip %q", s)
		}
		ips = append(ips, ip)
	}
	return issueLeaf(stdout, c, name, "node", func(ca *pki.CA, validity pki.Option) ([]byte, []byte, error) {
		return ca.IssueNode(name, ips, dnsArgs, validity)
	})
}

func certsClient(args []string, stdout io.Writer) error {
	fs := newFlagSet("certs client")
	var c commonFlags
	addCommonFlags(fs, &c, leafDays)
	admin := fs.Bool("admin", false, "grant the admin role (--role admin)")
	role := fs.String("role", "", "admin, operator or viewer (default operator)")
	logs := fs.Bool("grant-logs", false, "let a viewer read pod logs")
	var namespaces stringList
	fs.Var(&namespaces, "namespace", "a namespace the certificate may use (repeatable; none: every namespace)")
	pos, help, err := parseArgs(fs, args, certsUsage, stdout)
	if err != nil || help {
		return err
	}
	name, err := onePositionalName("certs client", pos)
	if err != nil {
		return err
	}
	a := pki.Access{Role: pki.RoleOperator, Namespaces: namespaces, Logs: *logs}
	if *role != "" {
		r, err := pki.ParseRole(*role)
		if err != nil {
			return newUsageError(certsUsage, "certs client: --role: %v", err)
		}
		a.Role = r
	}
	if *admin {
		if *role != "" && a.Role != pki.RoleAdmin {
			return newUsageError(certsUsage, "certs client: --admin and --role %s contradict each other", a.Role)
		}
		a.Role = pki.RoleAdmin
	}
	kind := string(a.Role) + " client"
	if len(a.Namespaces) > 0 {
		kind += " of namespaces " + strings.Join(a.Namespaces, ", ")
	}
	return issueLeaf(stdout, c, name, kind, func(ca *pki.CA, validity pki.Option) ([]byte, []byte, error) {
		return ca.IssueClientAccess(name, a, validity)
	})
}

// issueLeaf has issue sign a certificate for name with the CA in c.dir and
// c's validity, then writes it out as writeLeaf does.
func issueLeaf(stdout io.Writer, c commonFlags, name, kind string, issue func(ca *pki.CA, validity pki.Option) (certPEM, keyPEM []byte, err error)) error {
	validity, err := c.validity()
	if err != nil {
		return err
	}
	ca, err := loadCA(c.dir)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := issue(ca, pki.WithValidity(validity))
	if err != nil {
		return err
	}
	return writeLeaf(stdout, c, ca, name, kind, certPEM, keyPEM, validity)
}

// onePositionalName extracts and validates the single NAME argument.
func onePositionalName(cmd string, pos []string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", newUsageError(certsUsage, "%s: missing NAME", cmd)
	case len(pos) > 1:
		return "", newUsageError(certsUsage, "%s: expected one NAME, got %d arguments (%s)", cmd, len(pos), strings.Join(pos, " "))
	}
	name := pos[0]
	if err := pki.ValidateName(name); err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	// NAME.pem and NAME-key.pem must not collide with the CA files or with
	// another certificate's key file.
	if name == "ca" {
		return "", fmt.Errorf("%s: invalid name %q: reserved for the CA files", cmd, name)
	}
	if strings.HasSuffix(name, "-key") {
		return "", fmt.Errorf("%s: invalid name %q: names ending in \"-key\" are reserved for key files", cmd, name)
	}
	return name, nil
}

// loadCA loads DIR/ca.pem and DIR/ca-key.pem.
func loadCA(dir string) (*pki.CA, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no CA in %s (%s not found): run 'herdctl certs init --dir %s' first", dir, certPath, dir)
	}
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
	}
	return ca, nil
}

// writeLeaf writes DIR/NAME.pem and DIR/NAME-key.pem and reports them.
func writeLeaf(stdout io.Writer, c commonFlags, ca *pki.CA, name, kind string, certPEM, keyPEM []byte, validity time.Duration) error {
	certPath, keyPath := filepath.Join(c.dir, name+".pem"), filepath.Join(c.dir, name+"-key.pem")
	existed, err := anyExists(certPath, keyPath)
	if err != nil {
		return err
	}
	if existed != "" && !c.force {
		return fmt.Errorf("%s already exists; use --force to replace it", existed)
	}
	cert, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		return err
	}
	if err := writeFiles(c.dir, certPath, certPEM, keyPath, keyPEM); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s certificate %s, expires %s%s)\n",
		certPath, kind, describe(cert), cert.NotAfter.Format(time.DateOnly), clampNote(cert, ca, validity))
	fmt.Fprintf(stdout, "wrote %s (private key, mode 0600)\n", keyPath)
	return nil
}

func describe(c *x509.Certificate) string {
	s := "CN=" + c.Subject.CommonName
	if len(c.Subject.Organization) > 0 {
		s += " O=" + strings.Join(c.Subject.Organization, ",")
	}
	if len(c.DNSNames) > 0 {
		s += " DNS=" + strings.Join(c.DNSNames, ",")
	}
	if len(c.IPAddresses) > 0 {
		ips := make([]string, len(c.IPAddresses))
		for i, ip := range c.IPAddresses {
			ips[i] = ip.String()
		}
		s += " IP=" + strings.Join(ips, ",")
	}
	return s
}

func clampNote(cert *x509.Certificate, ca *pki.CA, validity time.Duration) string {
	if cert.NotAfter.Equal(ca.Cert.NotAfter) && time.Until(cert.NotAfter) < validity-time.Hour {
		return ", limited by the CA's expiry"
	}
	return ""
}

// anyExists returns the first of paths that exists, or "".
func anyExists(paths ...string) (string, error) {
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", nil
}

// writeFiles creates dir (mode 0700) if needed and writes the key (0600)
// and then the certificate (0644), each atomically.
func writeFiles(dir, certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, certPEM, 0o644)
}

// writeFileAtomic writes data to a temporary file in the target directory
// and renames it into place, so the file never exists with partial content
// or (for keys) with a wider mode.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
