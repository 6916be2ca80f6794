package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"time"
)

const (
	// DefaultCAValidity is the lifetime of a CA certificate created by NewCA.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultLeafValidity is the lifetime of node and client certificates.
	DefaultLeafValidity = 90 * 24 * time.Hour
	// clockSkew is how far NotBefore is back-dated by default so that a
	// freshly issued certificate is accepted by peers whose clock is slightly
	// behind.
	clockSkew = 5 * time.Minute
)

// Option customises a certificate made by NewCA, Issue, IssueNode or
// IssueClient: its validity window, subject, SANs, usages and key.
// Options not given keep herd's defaults (see NewCA and Issue).
type Option func(*options)

type options struct {
	validity  time.Duration
	now       time.Time
	backdate  time.Duration
	notBefore time.Time
	notAfter  time.Time

	organization []string
	units        []string
	dnsNames     []string
	ips          []net.IP
	extKeyUsage  []x509.ExtKeyUsage
	keyUsage     x509.KeyUsage // 0: the profile's default
	pathLen      *int
	keyType      KeyType
	keyEncoding  KeyEncoding
	err          error
}

// WithValidity sets the lifetime of the certificate, counted from now
// (or from WithNotBefore when given). It must be positive.
// WithNotAfter takes precedence over WithValidity.
func WithValidity(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.err = errors.New("pki: validity must be positive")
			return
		}
		o.validity = d
	}
}

// WithNotBefore sets the start of the validity period explicitly
// (default: now minus a few minutes of clock-skew allowance).
func WithNotBefore(t time.Time) Option {
	return func(o *options) { o.notBefore = t }
}

// WithNotAfter sets the end of the validity period explicitly. Together
// with WithNotBefore it lets tests create expired or not-yet-valid
// certificates.
func WithNotAfter(t time.Time) Option {
	return func(o *options) { o.notAfter = t }
}

// WithNow sets the instant the validity period is counted from (default
// time.Now()): NotBefore is now minus the back-date, NotAfter now plus the
// validity.
func WithNow(t time.Time) Option {
	return func(o *options) { o.now = t }
}

// WithBackdate sets how far before now NotBefore lies (default 5 minutes,
// for peers whose clock is a little behind). It must not be negative.
func WithBackdate(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.err = errors.New("pki: back-date must not be negative")
			return
		}
		o.backdate = d
	}
}

// WithOrganization sets the Subject Organization (Kubernetes reads a
// client certificate's groups from it).
func WithOrganization(org ...string) Option {
	return func(o *options) { o.organization = slices.Clone(org) }
}

// WithDNSNames adds DNS subject alternative names.
func WithDNSNames(names ...string) Option {
	return func(o *options) { o.dnsNames = append(o.dnsNames, names...) }
}

// WithIPs adds IP subject alternative names.
func WithIPs(ips ...net.IP) Option {
	return func(o *options) { o.ips = append(o.ips, ips...) }
}

// WithExtKeyUsage sets the extended key usages (e.g. server and/or client
// authentication).
func WithExtKeyUsage(usages ...x509.ExtKeyUsage) Option {
	return func(o *options) { o.extKeyUsage = slices.Clone(usages) }
}

// WithKeyUsage replaces the profile's default key usage bits.
func WithKeyUsage(u x509.KeyUsage) Option {
	return func(o *options) { o.keyUsage = u }
}

// WithPathLen sets a CA's path-length constraint: 0 (herd's default)
// allows leaves only, a negative value sets no constraint at all.
func WithPathLen(n int) Option {
	return func(o *options) { o.pathLen = &n }
}

// WithKeyType selects the algorithm of the generated key (default
// ECDSA P-256). CAs are always ECDSA P-256.
func WithKeyType(t KeyType) Option {
	return func(o *options) { o.keyType = t }
}

// WithKeyEncoding selects how the generated private key is PEM-encoded
// (default PKCS#8).
func WithKeyEncoding(e KeyEncoding) Option {
	return func(o *options) { o.keyEncoding = e }
}

// resolve applies opts over the defaults.
func resolve(defValidity time.Duration, opts []Option) (options, error) {
	o := options{validity: defValidity, backdate: clockSkew}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o, o.err
}

// window resolves the options into a [notBefore, notAfter] window.
func (o options) window() (notBefore, notAfter time.Time, err error) {
	now := o.now
	if now.IsZero() {
		now = time.Now()
	}
	start := now
	notBefore = now.Add(-o.backdate)
	if !o.notBefore.IsZero() {
		notBefore = o.notBefore
		start = o.notBefore
	}
	notAfter = start.Add(o.validity)
	if !o.notAfter.IsZero() {
		notAfter = o.notAfter
	}
	if !notAfter.After(notBefore) {
		return time.Time{}, time.Time{}, errors.New("pki: NotAfter must be after NotBefore")
	}
	return notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second), nil
}
