package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// ServerTLSConfig returns the TLS configuration of an mTLS server (agentd):
// TLS 1.3 only, presenting certPEM/keyPEM, and requiring a client
// certificate that chains to the CA(s) in caPEM.
//
// Client certificate EKU: crypto/tls already verifies client certificates
// against ClientCAs with KeyUsages = [ExtKeyUsageClientAuth]
// (crypto/tls handshake_server*.go), so a certificate whose EKU list lacks
// ClientAuth (e.g. ServerAuth only) is rejected by Go itself. However
// crypto/x509 treats a certificate with no EKU extension at all, or with
// ExtKeyUsageAny, as valid for every usage. VerifyConnection therefore also
// requires the client leaf to list ExtKeyUsageClientAuth explicitly, as all
// certificates issued by IssueClient and IssueNode do.
func ServerTLSConfig(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool, cert, err := poolAndPair(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		VerifyConnection: requireLeafEKU(x509.ExtKeyUsageClientAuth, "client"),
	}, nil
}

// ClientTLSConfig returns the TLS configuration of an mTLS client: TLS 1.3
// only, presenting certPEM/keyPEM, trusting only the CA(s) in caPEM, and
// verifying that the server certificate is valid for serverName. serverName
// is the node's name (or one of its IP addresses); this is how a client
// checks that it is talking to that particular node, not just to any
// certificate holder of the herd CA. As on the server side, the server leaf
// must explicitly list ExtKeyUsageServerAuth.
func ClientTLSConfig(caPEM, certPEM, keyPEM []byte, serverName string) (*tls.Config, error) {
	if serverName == "" {
		return nil, errors.New("pki: client TLS config: server name must not be empty")
	}
	pool, cert, err := poolAndPair(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          pool,
		ServerName:       serverName,
		VerifyConnection: requireLeafEKU(x509.ExtKeyUsageServerAuth, "server"),
	}, nil
}

// poolAndPair parses what both ends of mTLS hold: the CA(s) they trust
// and their own certificate and key.
func poolAndPair(caPEM, certPEM, keyPEM []byte) (*x509.CertPool, tls.Certificate, error) {
	pool, err := caPool(caPEM)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return pool, cert, nil
}

// requireLeafEKU returns a VerifyConnection callback that requires the
// peer's leaf certificate to list eku explicitly. It runs after the standard
// chain verification, for full handshakes and resumptions alike.
func requireLeafEKU(eku x509.ExtKeyUsage, peer string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("pki: %s presented no certificate", peer)
		}
		leaf := cs.PeerCertificates[0]
		if !slices.Contains(leaf.ExtKeyUsage, eku) {
			return fmt.Errorf("pki: %s certificate %q is not valid for %s authentication (missing extended key usage)", peer, leaf.Subject.CommonName, peer)
		}
		return nil
	}
}

func caPool(caPEM []byte) (*x509.CertPool, error) {
	certs, err := parseCertificatesPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("pki: CA bundle: certificate %q is not a CA certificate", c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// keyPair builds a tls.Certificate without tls.X509KeyPair so that key
// parsing errors are ours (and never echo key material).
func keyPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	certs, err := parseCertificatesPEM(certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !keyMatches(certs[0], key) {
		return tls.Certificate{}, fmt.Errorf("pki: private key does not match certificate %q", certs[0].Subject.CommonName)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: certs[0]}, nil
}
