// Package peers lets members of a cluster call each other's gRPC API:
// every clustered agentd publishes the address of its mTLS listener as a
// per-node entry, and a Pool dials any live member that published one,
// with this node's own certificate (node certificates are valid for client
// authentication too) and verifying the member's certificate by its name.
//
// A node started without --listen publishes no address: it serves only its
// local socket, so no other member can drive it (it is left out of Nodes
// and Conn refuses it).
package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// The entry each node publishes: kind KindAgent, key KeyAPI, value
// "IP:PORT" of its mTLS listener.
const (
	KindAgent = "agent"
	KeyAPI    = "api"
)

// ErrNoAddress is Conn's error for a member that is not live or published
// no API address.
var ErrNoAddress = errors.New("peers: member has no API address")

// Members is the part of agentd/cluster.Cluster the pool reads.
type Members interface {
	Name() string
	Entries(kind string) []cluster.Entry
}

// Publisher is the part of agentd/cluster.Cluster Publish writes to.
type Publisher interface {
	PublishLocal(kind, key string, value []byte) error
}

// APIAddr is the address peers dial for a listener bound at listen: the
// listener's host, or nodeIP when it is bound to every address (0.0.0.0,
// ::, or no host).
func APIAddr(listen string, nodeIP netip.Addr) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("API address of %q: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if !nodeIP.IsValid() {
			return "", fmt.Errorf("API address of %q: listening on every address and no node IP", listen)
		}
		host = nodeIP.String()
	}
	return net.JoinHostPort(host, port), nil
}

// Publish publishes this node's API address (see APIAddr). Entries vanish
// when the node dies or restarts, so call it on every start.
func Publish(p Publisher, listen string, nodeIP netip.Addr) (string, error) {
	addr, err := APIAddr(listen, nodeIP)
	if err != nil {
		return "", err
	}
	if err := p.PublishLocal(KindAgent, KeyAPI, []byte(addr)); err != nil {
		return "", fmt.Errorf("publish API address %s: %w", addr, err)
	}
	return addr, nil
}

// TLS is what a pool dials with: the herd CA and this node's own
// certificate and key (PEM).
type TLS struct {
	CA, Cert, Key []byte
	// GetClientCertificate, when set, supplies the certificate at each
	// handshake instead of Cert and Key (a renewed one is then used
	// without a restart).
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Pool holds one client connection per member, dialed on first use.
type Pool struct {
	ms  Members
	tls TLS

	mu     sync.Mutex
	conns  map[string]*peerConn
	closed bool
}

type peerConn struct {
	addr string
	conn *grpc.ClientConn
}

// NewPool returns a pool; it checks the certificate material at once.
func NewPool(ms Members, t TLS) (*Pool, error) {
	// the server name does not matter for the check
	if _, err := pki.ClientTLSConfig(t.CA, t.Cert, t.Key, ms.Name()); err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	return &Pool{ms: ms, tls: t, conns: map[string]*peerConn{}}, nil
}

// addrs lists the API address of every live member that published one.
func (p *Pool) addrs() map[string]string {
	out := map[string]string{}
	for _, e := range p.ms.Entries(KindAgent) {
		if e.Key == KeyAPI && len(e.Value) > 0 {
			out[e.Owner] = string(e.Value)
		}
	}
	return out
}

// Addr is the API address node published, if it is live and published one.
func (p *Pool) Addr(node string) (string, bool) {
	a, ok := p.addrs()[node]
	return a, ok
}

// Nodes lists the live members (this node included) that published an API
// address, sorted.
func (p *Pool) Nodes() []string {
	m := p.addrs()
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Conn returns a connection to node's API: mTLS with this node's
// certificate, the server verified as node (its name is a DNS SAN of every
// node certificate). Connections are cached per node and redialed when the
// node's published address changes; they connect lazily (errors show on
// the first call). ctx is not used for dialing; it is there for callers
// that pass theirs along.
func (p *Pool) Conn(_ context.Context, node string) (*grpc.ClientConn, error) {
	addrs := p.addrs()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("dial %s: peers: pool closed", node)
	}
	// Drop the connections of members that are gone or moved (restarted
	// with another address).
	for n, pc := range p.conns {
		if addrs[n] != pc.addr {
			_ = pc.conn.Close()
			delete(p.conns, n)
		}
	}
	addr, ok := addrs[node]
	if !ok {
		return nil, fmt.Errorf("dial %s: %w", node, ErrNoAddress)
	}
	if pc := p.conns[node]; pc != nil {
		return pc.conn, nil
	}
	tc, err := pki.ClientTLSConfig(p.tls.CA, p.tls.Cert, p.tls.Key, node)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", node, err)
	}
	if p.tls.GetClientCertificate != nil {
		tc.Certificates = nil
		tc.GetClientCertificate = p.tls.GetClientCertificate
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("dial %s at %s: %w", node, addr, err)
	}
	p.conns[node] = &peerConn{addr: addr, conn: conn}
	return conn, nil
}

// Close closes every connection; Conn fails afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for n, pc := range p.conns {
		_ = pc.conn.Close()
		delete(p.conns, n)
	}
}
