package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// Renew issues a successor of old, a node or client certificate this CA
// signed: the same name, role, namespaces, SANs and usages, with a fresh
// key and a new validity window (the validity options apply, as in
// IssueNode). An expired certificate may be renewed: the CA's signature is
// what is checked, so renewing is how a lapsed node or client gets back.
func (ca *CA) Renew(old *x509.Certificate, opts ...Option) (certPEM, keyPEM []byte, err error) {
	if ca == nil || ca.Cert == nil {
		return nil, nil, errors.New("pki: CA is not loaded")
	}
	if old == nil || old.IsCA {
		return nil, nil, errors.New("pki: renew: not a leaf certificate")
	}
	if err := old.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, nil, fmt.Errorf("pki: renew %q: not signed by this CA: %w", old.Subject.CommonName, err)
	}
	if err := ValidateName(old.Subject.CommonName); err != nil {
		return nil, nil, fmt.Errorf("pki: renew: %w", err)
	}
	if !IsNode(old) {
		if _, err := ClientAccess(old); err != nil {
			return nil, nil, fmt.Errorf("pki: renew %q: %w", old.Subject.CommonName, err)
		}
		if !slices.Contains(old.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			return nil, nil, fmt.Errorf("pki: renew %q: neither a node nor a client certificate", old.Subject.CommonName)
		}
	}
	o, err := herdLeaf(opts)
	if err != nil {
		return nil, nil, err
	}
	o.organization = slices.Clone(old.Subject.Organization)
	o.units = slices.Clone(old.Subject.OrganizationalUnit)
	o.dnsNames = slices.Clone(old.DNSNames)
	o.ips = slices.Clone(old.IPAddresses)
	o.extKeyUsage = slices.Clone(old.ExtKeyUsage)
	return ca.issue(old.Subject.CommonName, o)
}
