package pki

import (
	"errors"
	"time"
)

const (
	// DefaultCAValidity is the lifetime of a CA certificate created by NewCA.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultLeafValidity is the lifetime of node and client certificates.
	DefaultLeafValidity = 365 * 24 * time.Hour
	// clockSkew is how far NotBefore is back-dated by default so that a
	// freshly issued certificate is accepted by peers whose clock is slightly
	// behind.
	clockSkew = 5 * time.Minute
)

// Option customises a certificate issued by NewCA, IssueNode or IssueClient.
type Option func(*options)

type options struct {
	validity  time.Duration
	notBefore time.Time
	notAfter  time.Time
	err       error
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

// resolveValidity resolves the options into a [notBefore, notAfter] window.
func resolveValidity(now time.Time, defValidity time.Duration, opts []Option) (notBefore, notAfter time.Time, err error) {
	o := options{validity: defValidity}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.err != nil {
		return time.Time{}, time.Time{}, o.err
	}
	start := now
	notBefore = now.Add(-clockSkew)
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
