package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments"
	"github.com/herd-project/terraform-provider-herd/agentd/dns"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	"github.com/herd-project/terraform-provider-herd/agentd/network/podnet"
	"github.com/herd-project/terraform-provider-herd/agentd/pods"
	"github.com/herd-project/terraform-provider-herd/agentd/services"
)

// svcStack is the service machinery of a clustered node: registry,
// endpoint publisher, controller, nftables data plane and DNS.
type svcStack struct {
	reg      *services.Registry
	ctrl     *services.Controller
	dp       *nft.Dataplane
	dns      *dns.Server
	pub      atomic.Pointer[services.EndpointPublisher]
	resolv   string // the pods' resolv.conf
	gateway  netip.Addr
	nodeIP   netip.Addr
	services netip.Prefix
}

// prepareServices builds what must exist before the pod manager: the
// resolv.conf pods get and the bridge with the route to the service range.
func prepareServices(cfg Config, cl *cluster.Cluster, podCIDR netip.Prefix) (*svcStack, error) {
	svcCIDR := netip.MustParsePrefix(cfg.ServiceCIDR) // checked by Validate
	reg, err := services.NewRegistry(cl, services.Config{ServiceCIDR: svcCIDR, Domain: cfg.ClusterDomain})
	if err != nil {
		return nil, err
	}
	s := &svcStack{reg: reg, gateway: podCIDR.Addr().Next(), nodeIP: nodeIPOf(cfg), services: svcCIDR}
	s.resolv = filepath.Join(cfg.StateDir, "resolv.conf")
	if err := os.WriteFile(s.resolv, dns.ResolvConf(s.gateway, "default", cfg.ClusterDomain), 0o644); err != nil {
		return nil, fmt.Errorf("write pod resolv.conf: %w", err)
	}
	if err := podnet.EnsureServiceRoute("", cfg.Bridge, svcCIDR); err != nil {
		return nil, fmt.Errorf("service network: %w", err)
	}
	return s, nil
}

// changed is the pod manager's hook: it forwards to the publisher once it
// runs (the publisher lists every pod when it starts, so nothing is lost).
func (s *svcStack) changed(name string) {
	if p := s.pub.Load(); p != nil {
		p.Changed(name)
	}
}

// start runs the data plane, the controller, the publisher and the DNS.
func (s *svcStack) start(ctx context.Context, cfg Config, cl *cluster.Cluster, mgr *pods.Manager, log *slog.Logger) error {
	dp, err := nft.New(nft.Config{
		ServiceCIDR: s.services,
		PodCIDR:     netip.MustParsePrefix(cfg.ClusterCIDR),
		NodeIPs:     []netip.Addr{s.nodeIP},
	})
	if err != nil {
		return fmt.Errorf("service data plane: %w", err)
	}
	s.dp = dp
	s.ctrl = services.NewController(cl, dp, log.With("component", "services"))
	if cfg.ServiceResync > 0 {
		s.ctrl.ResyncEvery = cfg.ServiceResync
	}
	// BlueGreen deployments route only to their serving revision.
	s.ctrl.Gate = deployments.ServingGate(cl)
	// Service status reads its endpoints from the controller's index.
	s.reg.Endpoints = s.ctrl.Selected
	var inflight sync.Map
	s.ctrl.Reassign = func(key string) {
		if _, busy := inflight.LoadOrStore(key, true); busy {
			return
		}
		defer inflight.Delete(key)
		if err := s.reg.Reassign(key); err != nil {
			log.Error("reassign colliding service", "service", key, "err", err)
		}
	}
	go s.ctrl.Run(ctx)

	pub := services.NewEndpointPublisher(mgr, cl, func(err error) bool { return errors.Is(err, pods.ErrNotFound) }, log.With("component", "endpoints"))
	s.pub.Store(pub)
	go pub.Run(ctx)

	ups := cfg.DNSUpstreams
	if len(ups) == 0 {
		if u, err := dns.UpstreamsFromResolvConf("/etc/resolv.conf"); err == nil {
			ups = u
		} else {
			log.Warn("no upstream resolver in /etc/resolv.conf: names outside the cluster domain will fail", "err", err)
			ups = []string{"127.0.0.1:53"}
		}
	}
	srv, err := dns.New(dns.Config{
		Domain:    cfg.ClusterDomain,
		Listen:    []string{netip.AddrPortFrom(s.gateway, 53).String()},
		Upstreams: ups,
		Source:    s.ctrl,
		Logger:    log.With("component", "dns"),
	})
	if err == nil {
		err = srv.Start(ctx)
	}
	if err != nil {
		return fmt.Errorf("service DNS: %w", err)
	}
	s.dns = srv
	log.Info("services ready", "service_cidr", s.services, "dns", s.gateway.String()+":53", "domain", cfg.ClusterDomain)
	return nil
}

// stop closes the DNS and releases the data plane. The nft table stays:
// services keep working while agentd is down, like containers do.
func (s *svcStack) stop() {
	if s.dns != nil {
		_ = s.dns.Close()
	}
}

func nodeIPOf(cfg Config) netip.Addr {
	if cfg.NodeIP != "" {
		return netip.MustParseAddr(cfg.NodeIP)
	}
	return netip.MustParseAddrPort(cfg.GossipListen).Addr()
}

func (s *svcStack) changedHook() func(string) {
	if s == nil {
		return nil
	}
	return s.changed
}

func (s *svcStack) resolvConf() string {
	if s == nil {
		return ""
	}
	return s.resolv
}
