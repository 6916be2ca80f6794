package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/podnet"
	"github.com/herd-project/terraform-provider-herd/agentd/server"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// storePersister keeps the cluster's state (claimed pod CIDR, replicated
// objects) in agentd's bbolt file.
type storePersister struct{ st *store.Store }

func (p storePersister) Load() ([]byte, error) { return p.st.GetBlob("cluster") }
func (p storePersister) Save(b []byte) error   { return p.st.PutBlob("cluster", b) }

// startCluster joins (or founds) the cluster and waits for the pod CIDR
// claim. A restarted node keeps its claim; joining is retried for a while
// so that nodes may start in any order.
func startCluster(ctx context.Context, cfg Config, st *store.Store, certs *certReloader, deny server.DenyList, log *slog.Logger) (*cluster.Cluster, error) {
	key, err := cfg.gossipKey()
	if err != nil {
		return nil, err
	}
	if certs == nil {
		return nil, errors.New("a clustered node needs its node certificate (--cert, --key): it signs what it gossips")
	}
	id := &cluster.Identity{
		Roots:         certs.roots,
		Current:       certs.current,
		Revoked:       func(c *x509.Certificate) bool { return deny.Revoked(server.SerialHex(c)) },
		AllowUnsigned: cfg.GossipAllowUnsigned,
	}
	gossip := netip.MustParseAddrPort(cfg.GossipListen) // checked by Validate
	nodeIP := nodeIPOf(cfg)
	cl, err := cluster.New(cluster.Config{
		NodeName:     cfg.Name,
		BindAddr:     gossip.Addr().String(),
		BindPort:     int(gossip.Port()),
		SecretKey:    key,
		ClusterCIDR:  netip.MustParsePrefix(cfg.ClusterCIDR),
		NodeCIDRBits: cfg.NodeCIDRBits,
		NodeIP:       nodeIP,
		Persist:      storePersister{st},
		Identity:     id,
		Logger:       log.With("component", "cluster"),
		// Faster failure detection than memberlist's LAN profile, so a dead
		// node's endpoints leave every node's rules within a few seconds
		// (suspicion lasts SuspicionMult × ProbeInterval for small clusters).
		Tune: func(mc *memberlist.Config) {
			mc.ProbeInterval = 500 * time.Millisecond
			mc.ProbeTimeout = 400 * time.Millisecond
			mc.SuspicionMult = 3
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	// Joining and the claim share one deadline.
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var joinErr error
	err = wait.PollUntilContextCancel(startCtx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := cl.Join(ctx, cfg.Join)
		switch {
		case err == nil:
		case ctx.Err() != nil: // cut off by the deadline: keep the last real failure
			if joinErr == nil {
				joinErr = err
			}
			return false, nil
		default:
			joinErr = err
			log.Warn("cluster join failed; retrying", "peers", cfg.Join, "err", err)
			return false, nil
		}
		log.Info("cluster joined", "contacted", n, "pod_cidr", cl.PodCIDR())
		return true, nil
	})
	if err != nil {
		_ = cl.Shutdown()
		if joinErr == nil {
			joinErr = err
		}
		return nil, fmt.Errorf("join cluster via %v: %w", cfg.Join, joinErr)
	}
	if len(cfg.Join) == 0 {
		rejoin(ctx, cl, st, log)
	}
	// Two nodes joining at once can claim the same block before either
	// hears of the other; the cluster resolves it (the lower name keeps
	// it). The pod network is built on the claim, so wait until it has held
	// for a few gossip rounds and no other member claims it.
	var stable time.Time
	last := netip.Prefix{}
	err = wait.PollUntilContextCancel(startCtx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		p := cl.PodCIDR()
		if !p.IsValid() || p != last || claimedByOther(cl, p) {
			last, stable = p, time.Now()
			return false, nil
		}
		return time.Since(stable) >= 2*time.Second, nil
	})
	if err != nil {
		_ = cl.Shutdown()
		return nil, fmt.Errorf("no pod CIDR could be claimed from %s (last: %v): %w", cfg.ClusterCIDR, last, err)
	}
	return cl, nil
}

// peersBlob remembers the gossip addresses of the last live peers, so that
// a node that joined through the API (herd_node's join) finds its cluster
// again after a restart without --join.
const peersBlob = "cluster-peers"

// rejoin contacts the peers remembered from the last run, if any; when
// none answers the node stays a cluster of its own (logged).
func rejoin(ctx context.Context, cl *cluster.Cluster, st *store.Store, log *slog.Logger) {
	b, err := st.GetBlob(peersBlob)
	if err != nil || len(b) == 0 {
		return
	}
	var addrs []string
	if err := json.Unmarshal(b, &addrs); err != nil || len(addrs) == 0 {
		return
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n, err := cl.Join(jctx, addrs); err != nil {
		log.Warn("could not rejoin the peers of the last run; running as a cluster of its own", "peers", addrs, "err", err)
	} else {
		log.Info("rejoined the peers of the last run", "contacted", n)
	}
}

// rememberPeers stores the live peers' gossip addresses when they change.
func rememberPeers(cl *cluster.Cluster, st *store.Store, last *[]string, log *slog.Logger) {
	var addrs []string
	for _, m := range cl.Members() {
		if m.Name != cl.Name() && m.State == cluster.StateAlive && m.Addr.IsValid() {
			addrs = append(addrs, m.Addr.String())
		}
	}
	// An empty list is not stored: a node whose peers all died keeps
	// the addresses to try after its own restart.
	if len(addrs) == 0 || slices.Equal(addrs, *last) {
		return
	}
	b, _ := json.Marshal(addrs)
	if err := st.PutBlob(peersBlob, b); err != nil {
		log.Warn("remember cluster peers", "err", err)
		return
	}
	*last = addrs
}

func claimedByOther(cl *cluster.Cluster, p netip.Prefix) bool {
	for _, m := range cl.Members() {
		if m.Name != cl.Name() && m.PodCIDR == p {
			return true
		}
	}
	return false
}

// routeLoop keeps host-gw routes to every live peer's pod CIDR: when the
// set of peers changes, and every 30 s to repair routes changed behind our
// back. Other cluster events (objects, endpoints) cost a map comparison.
// Only routes herd marked as its own are ever replaced or removed.
func routeLoop(ctx context.Context, cl *cluster.Cluster, st *store.Store, log *slog.Logger) {
	built := cl.PodCIDR() // what the pod network was built on
	warned := false
	events := cl.Subscribe()
	defer cl.Unsubscribe(events)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	var applied map[netip.Prefix]netip.Addr
	var remembered []string
	repair := true
	for {
		rememberPeers(cl, st, &remembered, log)
		peers := map[netip.Prefix]netip.Addr{}
		for _, m := range cl.Members() {
			if m.Name == cl.Name() || m.State != cluster.StateAlive || !m.PodCIDR.IsValid() || !m.NodeIP.IsValid() {
				continue
			}
			peers[m.PodCIDR] = m.NodeIP
		}
		if now := cl.PodCIDR(); now != built && !warned {
			warned = true
			log.Error("the cluster re-assigned this node's pod CIDR after the pod network was built; restart agentd to rebuild it", "built_on", built, "claimed", now)
		}
		if repair || !maps.Equal(peers, applied) {
			if err := podnet.EnsureRoutes(ctx, "", cl.ClusterCIDR(), peers); err != nil {
				if ctx.Err() == nil {
					log.Warn("pod routes", "err", err)
				}
				applied = nil // try again on the next event
			} else {
				applied = peers
			}
		}
		repair = false
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-tick.C:
			repair = true
		}
	}
}

// members adapts the cluster to the ClusterService.
type members struct{ cl *cluster.Cluster }

func (m members) Join(ctx context.Context, addrs []string) (int, error) {
	return m.cl.Join(ctx, addrs)
}

func (m members) ListMembers(context.Context) ([]*herdv1.Member, error) {
	caps := map[string]capacity.Info{}
	for _, e := range m.cl.Entries(capacity.Kind) {
		if e.Key != capacity.Key {
			continue
		}
		if info, err := capacity.Decode(e.Value); err == nil {
			caps[e.Owner] = info
		}
	}
	var out []*herdv1.Member
	for _, mb := range m.cl.Members() {
		hm := &herdv1.Member{Name: mb.Name, State: string(mb.State), Labels: mb.Labels}
		if info, ok := caps[mb.Name]; ok {
			free := info.Free()
			hm.Allocatable = &herdv1.Resources{CpuMillis: info.Allocatable.CPUMillis, MemoryBytes: info.Allocatable.MemoryBytes}
			hm.Free = &herdv1.Resources{CpuMillis: free.CPUMillis, MemoryBytes: free.MemoryBytes}
		}
		if mb.Addr.IsValid() {
			hm.GossipAddress = mb.Addr.String()
		}
		if mb.NodeIP.IsValid() {
			hm.NodeIp = mb.NodeIP.String()
		}
		if mb.PodCIDR.IsValid() {
			hm.PodCidr = mb.PodCIDR.String()
		}
		out = append(out, hm)
	}
	return out, nil
}
