package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// certReloadInterval bounds how often the certificate files are looked at:
// a renewed certificate is served within about this long.
const certReloadInterval = time.Second

// certReloader serves the node certificate from its files and picks up a
// renewed one without a restart: on a handshake at most once a second it
// looks at the files' size and modification time, and when they changed
// it loads them again. A new pair is taken only if it is whole and sound
// (the key matches, it carries the node's name and chains to the CA);
// otherwise the one in use stays, and the problem is logged once.
type certReloader struct {
	certSrc, keySrc string // paths; inline PEM never changes
	name            string
	roots           *x509.CertPool
	log             *slog.Logger

	mu       sync.Mutex
	cur      *tls.Certificate
	stamp    string // of the files cur was loaded from, or of a refused pair
	lastLook time.Time
}

func newCertReloader(certSrc, keySrc, name string, caPEM []byte, log *slog.Logger) (*certReloader, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--ca-cert: no certificate in it")
	}
	r := &certReloader{certSrc: certSrc, keySrc: keySrc, name: name, roots: roots, log: log}
	stamp := r.fileStamp()
	c, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur, r.stamp, r.lastLook = c, stamp, time.Now()
	return r, nil
}

// fileStamp identifies the files' current content by size and mtime; ""
// for inline PEM.
func (r *certReloader) fileStamp() string {
	var b strings.Builder
	for _, src := range []string{r.certSrc, r.keySrc} {
		if strings.HasPrefix(strings.TrimSpace(src), "-----BEGIN") {
			return ""
		}
		fi, err := os.Stat(src)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", src)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", src, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// load reads and checks the pair.
func (r *certReloader) load() (*tls.Certificate, error) {
	certPEM, err := pki.LoadPEMOrFile(r.certSrc)
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	keyPEM, err := pki.LoadPEMOrFile(r.keySrc)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--cert, --key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	if err := leaf.VerifyHostname(r.name); err != nil {
		return nil, fmt.Errorf("--cert does not carry the node name %q (issue it with `herdctl certs node %s --ip ...`): %w", r.name, r.name, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("--cert is not a valid node certificate of the herd CA in --ca-cert: %w", err)
	}
	pair.Leaf = leaf
	return &pair, nil
}

// current returns the certificate to present, reloading it first when
// its files changed.
func (r *certReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.lastLook) < certReloadInterval {
		return r.cur
	}
	r.lastLook = now
	stamp := r.fileStamp()
	if stamp == "" || stamp == r.stamp {
		return r.cur
	}
	r.stamp = stamp // tried once per change: a bad pair is not re-read each second
	c, err := r.load()
	if err != nil {
		r.log.Warn("node certificate files changed but cannot be used; keeping the one in use", "err", err,
			"serving_serial", r.cur.Leaf.SerialNumber.Text(16), "serving_expires", r.cur.Leaf.NotAfter)
		return r.cur
	}
	r.cur = c
	r.log.Info("node certificate reloaded", "serial", c.Leaf.SerialNumber.Text(16), "expires", c.Leaf.NotAfter)
	return c
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

func (r *certReloader) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current(), nil
}
