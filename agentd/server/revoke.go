package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// DenyList says whether a certificate is revoked, by its serial number
// (lowercase hex, as SerialHex writes it).
type DenyList interface {
	Revoked(serial string) bool
}

// SerialHex is the form a certificate serial has in the deny list.
func SerialHex(c *x509.Certificate) string { return strings.ToLower(c.SerialNumber.Text(16)) }

// revokedErr refuses a revoked certificate; it names the certificate so
// that its holder knows which one to replace.
func revokedErr(c *x509.Certificate) error {
	return fmt.Errorf("certificate %q (serial %s) is revoked", c.Subject.CommonName, SerialHex(c))
}

// CheckRevoked is a tls.Config VerifyConnection step: a revoked leaf is
// refused at the handshake. d may be nil (nothing is revoked).
func CheckRevoked(d DenyList, certs []*x509.Certificate) error {
	if d == nil || len(certs) == 0 {
		return nil
	}
	if d.Revoked(SerialHex(certs[0])) {
		return revokedErr(certs[0])
	}
	return nil
}

// Revocations is the deny list agentd keeps (in the cluster store, so
// every member has it).
type Revocations interface {
	DenyList
	// Revoke adds serial; created is false when it was there already.
	Revoke(ctx context.Context, r *herdv1.RevokedCertificate) (kept *herdv1.RevokedCertificate, created bool, err error)
	List() []*herdv1.RevokedCertificate
}

// SetRevocations gives the server the deny list.
func (s *Server) SetRevocations(r Revocations) { s.revoked = r }

const (
	maxSerialHex    = 40 // RFC 5280: at most 20 octets
	maxRevokeReason = 256
)

// RevokeCertificate puts a certificate on the deny list.
func (s *Server) RevokeCertificate(ctx context.Context, req *herdv1.RevokeCertificateRequest) (*herdv1.RevokeCertificateResponse, error) {
	if s.revoked == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node keeps no deny list")
	}
	serial := strings.ToLower(strings.TrimSpace(req.GetSerial()))
	n, ok := new(big.Int).SetString(serial, 16)
	switch {
	case serial == "" || len(serial) > maxSerialHex || !ok || n.Sign() <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "serial: want a positive hex number of at most %d digits, got %q", maxSerialHex, req.GetSerial())
	case len(req.GetName()) > 63:
		return nil, status.Errorf(codes.InvalidArgument, "name: at most 63 characters, got %d", len(req.GetName()))
	case len(req.GetReason()) > maxRevokeReason || !utf8.ValidString(req.GetReason()):
		return nil, status.Errorf(codes.InvalidArgument, "reason: at most %d characters of UTF-8", maxRevokeReason)
	}
	by := "local"
	if c, ok := CallerFrom(ctx); ok {
		by = c.Name
	}
	r := &herdv1.RevokedCertificate{
		Serial:    n.Text(16), // canonical: no leading zeros
		Name:      req.GetName(),
		Reason:    req.GetReason(),
		RevokedAt: timestamppb.Now(),
		RevokedBy: by,
	}
	kept, created, err := s.revoked.Revoke(ctx, r)
	if err != nil {
		return nil, s.status(err, "revoke certificate "+r.GetSerial())
	}
	if created {
		s.log.Warn("certificate revoked", "serial", kept.GetSerial(), "name", kept.GetName(), "by", by)
	}
	return &herdv1.RevokeCertificateResponse{Revoked: kept, Created: created}, nil
}

// ListRevokedCertificates lists the deny list.
func (s *Server) ListRevokedCertificates(context.Context, *herdv1.ListRevokedCertificatesRequest) (*herdv1.ListRevokedCertificatesResponse, error) {
	if s.revoked == nil {
		return &herdv1.ListRevokedCertificatesResponse{}, nil
	}
	return &herdv1.ListRevokedCertificatesResponse{Revoked: s.revoked.List()}, nil
}
