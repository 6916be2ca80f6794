// Package nodeclient dials agentd for herdctl. A node is named by its id,
// NAME@ADDRESS (see internal/nodeid): ADDRESS is host:port (mutual TLS; the
// node's certificate must carry NAME) or unix:///path (the local plaintext
// socket).
package nodeclient

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// ParseNodeID splits NAME@ADDRESS and checks both halves.
func ParseNodeID(id string) (name, addr string, err error) { return nodeid.Parse(id) }

// TLSMaterial is the herd CA and a client certificate and key, PEM-encoded.
type TLSMaterial struct {
	CA, Cert, Key []byte
}

// Empty reports whether no TLS material was configured.
func (m TLSMaterial) Empty() bool { return len(m.CA) == 0 && len(m.Cert) == 0 && len(m.Key) == 0 }

// LoadTLS reads each value as PEM content or a file path.
func LoadTLS(ca, cert, key string) (TLSMaterial, error) {
	var m TLSMaterial
	var err error
	if ca != "" {
		if m.CA, err = pki.LoadPEMOrFile(ca); err != nil {
			return m, fmt.Errorf("CA certificate: %w", err)
		}
	}
	if cert != "" {
		if m.Cert, err = pki.LoadPEMOrFile(cert); err != nil {
			return m, fmt.Errorf("client certificate: %w", err)
		}
	}
	if key != "" {
		if m.Key, err = pki.LoadPEMOrFile(key); err != nil {
			return m, fmt.Errorf("client key: %w", err)
		}
	}
	return m, nil
}

// Dial returns a lazily connecting client for the node: no network traffic
// happens until the first call.
func Dial(name, addr string, m TLSMaterial, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if nodeid.IsUnix(addr) {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
		return grpc.NewClient(addr, opts...)
	}
	if len(m.CA) == 0 || len(m.Cert) == 0 || len(m.Key) == 0 {
		return nil, fmt.Errorf("node %s at %s needs mutual TLS: set the CA certificate, client certificate and client key", name, addr)
	}
	tc, err := pki.ClientTLSConfig(m.CA, m.Cert, m.Key, name)
	if err != nil {
		return nil, err
	}
	// TLS failures reach the caller as a *HandshakeError, not only as text.
	opts = append(opts, (&handshakeRecorder{}).dialOptions(credentials.NewTLS(tc))...)
	// An explicit scheme: "host:port" alone would parse as scheme "host".
	return grpc.NewClient("dns:///"+addr, opts...)
}
