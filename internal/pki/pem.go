package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// PEM block types. Keys are written as PKCS#8 ("PRIVATE KEY"); the parsers
// also accept SEC 1 ("EC PRIVATE KEY") keys, e.g. produced by openssl.
const (
	pemTypeCertificate = "CERTIFICATE"
	pemTypePKCS8Key    = "PRIVATE KEY"
	pemTypeECKey       = "EC PRIVATE KEY"
)

// errKeyParse is deliberately generic: errors about private keys never wrap
// the underlying parser error so that no key material can leak into logs.
var errKeyParse = errors.New("pki: invalid private key: expected a PEM-encoded ECDSA P-256 key (\"PRIVATE KEY\" or \"EC PRIVATE KEY\")")

// LoadPEMOrFile returns v itself when it (after trimming whitespace) begins
// with "-----BEGIN", i.e. is inline PEM content; otherwise v is taken as the
// path of a file whose content is returned. Errors name the path but never
// include file content.
func LoadPEMOrFile(v string) ([]byte, error) {
	t := strings.TrimSpace(v)
	if t == "" {
		return nil, errors.New("pki: empty PEM value or file path")
	}
	if strings.HasPrefix(t, "-----BEGIN") {
		return []byte(t + "\n"), nil
	}
	b, err := os.ReadFile(t)
	if err != nil {
		// *fs.PathError carries only the operation, the path and the errno.
		return nil, fmt.Errorf("pki: read %s: %w", t, unwrapPathErr(err))
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("pki: %s does not contain PEM data", t)
	}
	return b, nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParseCertificatePEM parses the first CERTIFICATE block in data.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	certs, err := parseCertificatesPEM(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// parseCertificatesPEM parses every CERTIFICATE block in data (leaf first),
// ignoring blocks of other types. It fails if there is none.
func parseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemTypeCertificate {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("pki: no CERTIFICATE PEM block found")
	}
	return certs, nil
}

// ParsePrivateKeyPEM parses the first private-key PEM block in data. Both
// PKCS#8 ("PRIVATE KEY") and SEC 1 ("EC PRIVATE KEY") encodings are
// accepted; the key must be ECDSA P-256. Errors never contain key material.
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	key, typ, err := parseFirstKeyPEM(data)
	switch {
	case typ == "":
		return nil, errors.New("pki: no PRIVATE KEY or EC PRIVATE KEY PEM block found")
	case err != nil:
		return nil, errKeyParse
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errKeyParse
	}
	return ec, nil
}

func encodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: der})
}
