package provider

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/nodeclient"
	"github.com/herd-project/terraform-provider-herd/internal/nodeid"
)

// DefaultDialTimeout bounds one connection attempt to a node when the
// provider's dial_timeout is not set.
const DefaultDialTimeout = 10 * time.Second

// ParseNodeID splits a herd_node id NAME@ADDRESS (ADDRESS is "host:port" or
// "unix:///path/to/agentd.sock") and validates both parts.
func ParseNodeID(s string) (name, addr string, err error) { return nodeid.Parse(s) }

// FormatNodeID returns the herd_node id NAME@ADDRESS.
func FormatNodeID(name, addr string) string { return nodeid.Format(name, addr) }

// ParsePodID splits a herd_pod id NODEID/NAME at its last '/'.
func ParsePodID(s string) (nodeID, podName string, err error) { return nodeid.ParsePod(s) }

// FormatPodID returns the herd_pod id NODEID/NAME.
func FormatPodID(nodeID, podName string) string { return nodeid.FormatPod(nodeID, podName) }

// TLSFiles is the client's mTLS material as PEM. A nil field was not
// configured.
type TLSFiles struct {
	CACert     []byte
	ClientCert []byte
	ClientKey  []byte
}

// missing lists, as "attribute (ENV_VAR)", what is not configured.
func (f TLSFiles) missing() []string {
	var out []string
	if f.CACert == nil {
		out = append(out, "ca_cert (HERD_CA_CERT)")
	}
	if f.ClientCert == nil {
		out = append(out, "client_cert (HERD_CLIENT_CERT)")
	}
	if f.ClientKey == nil {
		out = append(out, "client_key (HERD_CLIENT_KEY)")
	}
	return out
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	TLS         TLSFiles
	DialTimeout time.Duration
	UserAgent   string
}

type poolKey struct{ name, addr string }

// Pool hands out gRPC clients for nodes. Connections are created on first
// use and cached per (node name, address); creating one makes no network
// call (the first RPC connects), so a provider can be configured before the
// nodes it will talk to exist. A Pool is safe for concurrent use.
type Pool struct {
	cfg   PoolConfig
	mu    sync.Mutex
	conns map[poolKey]*grpc.ClientConn
	// pods answers herd_pod refreshes from one pod list per node; every
	// connection reports its writes to it.
	pods *podCache
}

// NewPool returns an empty pool.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "terraform-provider-herd"
	}
	return &Pool{cfg: cfg, conns: map[poolKey]*grpc.ClientConn{}, pods: newPodCache()}
}

// DialTimeout is the time allowed for one connection attempt to a node.
func (p *Pool) DialTimeout() time.Duration { return p.cfg.DialTimeout }

// NodeClient returns a NodeService client for the node id NAME@ADDRESS.
func (p *Pool) NodeClient(nodeID string) (herdv1.NodeServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewNodeServiceClient(cc), nil
}

// PodClient returns a PodService client for the node id NAME@ADDRESS.
func (p *Pool) PodClient(nodeID string) (herdv1.PodServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewPodServiceClient(cc), nil
}

// ServiceClient returns a ServiceService client for the node id
// NAME@ADDRESS; any member of a cluster serves its services.
func (p *Pool) ServiceClient(nodeID string) (herdv1.ServiceServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewServiceServiceClient(cc), nil
}

// DeploymentClient returns a DeploymentService client for the node id
// NAME@ADDRESS; any member of a cluster serves its deployments.
func (p *Pool) DeploymentClient(nodeID string) (herdv1.DeploymentServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewDeploymentServiceClient(cc), nil
}

// ClusterClient returns a ClusterService client for the node id NAME@ADDRESS.
func (p *Pool) ClusterClient(nodeID string) (herdv1.ClusterServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewClusterServiceClient(cc), nil
}

// SecretClient returns a SecretService client for the node id
// NAME@ADDRESS; any member of a cluster serves its secrets' metadata, and
// every call needs an admin client certificate.
func (p *Pool) SecretClient(nodeID string) (herdv1.SecretServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewSecretServiceClient(cc), nil
}

// NestedClusterClient returns a NestedClusterService client for the node
// id NAME@ADDRESS: the agentd that owns the nested clusters it builds.
// Every call needs an admin client certificate.
func (p *Pool) NestedClusterClient(nodeID string) (herdv1.NestedClusterServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewNestedClusterServiceClient(cc), nil
}

// VolumeClient returns a VolumeService client for the node id
// NAME@ADDRESS: the agentd that holds the volumes, which are node-local.
func (p *Pool) VolumeClient(nodeID string) (herdv1.VolumeServiceClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return herdv1.NewVolumeServiceClient(cc), nil
}

// HealthClient returns a client of the standard grpc.health.v1 service for
// the node id NAME@ADDRESS: service "" is agentd as a whole, "containerd"
// and "store" its dependencies.
func (p *Pool) HealthClient(nodeID string) (healthpb.HealthClient, error) {
	cc, err := p.Conn(nodeID)
	if err != nil {
		return nil, err
	}
	return healthpb.NewHealthClient(cc), nil
}

// Conn returns the cached connection for nodeID, creating it (without any
// network call) on first use. A TCP address is reached over mTLS with the
// TLS server name set to the node's name, so the node's certificate must
// carry that name; a unix:// address is a local plaintext socket.
func (p *Pool) Conn(nodeID string) (*grpc.ClientConn, error) {
	name, addr, err := nodeid.Parse(nodeID)
	if err != nil {
		return nil, err
	}
	k := poolKey{name, addr}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[k]; ok {
		return cc, nil
	}
	cc, err := p.newConn(name, addr)
	if err != nil {
		return nil, err
	}
	p.conns[k] = cc
	return cc, nil
}

func (p *Pool) newConn(name, addr string) (*grpc.ClientConn, error) {
	if !nodeid.IsUnix(addr) {
		if m := p.cfg.TLS.missing(); len(m) > 0 {
			return nil, fmt.Errorf("node %q at %s is reached over TCP, which requires mutual TLS, but the provider has no %s: "+
				"set them in the provider \"herd\" block or through the environment variables (each takes PEM content or the path of a PEM file), "+
				"or use a local socket address \"unix:///path/to/agentd.sock\"", name, addr, strings.Join(m, ", "))
		}
	}
	tlsm := nodeclient.TLSMaterial{CA: p.cfg.TLS.CACert, Cert: p.cfg.TLS.ClientCert, Key: p.cfg.TLS.ClientKey}
	cc, err := nodeclient.Dial(name, addr, tlsm,
		grpc.WithUserAgent(p.cfg.UserAgent),
		grpc.WithChainUnaryInterceptor(p.pods.unaryInterceptor),
		grpc.WithChainStreamInterceptor(p.pods.streamInterceptor),
		grpc.WithConnectParams(grpc.ConnectParams{
			// Retry quickly: a node may be coming up during the apply that
			// adopts it, and a refresh should not wait minutes on back-off.
			Backoff: backoff.Config{
				BaseDelay:  250 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   5 * time.Second,
			},
			MinConnectTimeout: p.cfg.DialTimeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("node %q at %s: %w", name, addr, err)
	}
	return cc, nil
}

// Close closes every cached connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for k, cc := range p.conns {
		errs = append(errs, cc.Close())
		delete(p.conns, k)
	}
	return errors.Join(errs...)
}
