package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/podnet"
	"github.com/herd-project/terraform-provider-herd/agentd/node"
	"github.com/herd-project/terraform-provider-herd/agentd/pods"
	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/agentd/server"
	"github.com/herd-project/terraform-provider-herd/agentd/services"
	"github.com/herd-project/terraform-provider-herd/agentd/store"
	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// Run starts agentd and blocks until ctx is done. Containers keep running
// after Run returns: they belong to containerd's shims, and the next agentd
// re-adopts them.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	var (
		tlsCreds credentials.TransportCredentials
		certs    *certReloader
		revs     = &revocationList{}
	)
	if cfg.Listen != "" {
		c, r, err := serverCreds(cfg, log, revs)
		if err != nil {
			return err
		}
		tlsCreds, certs = c, r
	}
	regs, err := cfg.registries()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, "agentd.db"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()

	rt, err := runtime.New(runtime.Config{
		Address:   cfg.ContainerdAddress,
		Namespace: cfg.Namespace,
		Registry:  regs,
		Logger:    log,
		// Zero (a Config built without the flags): the runtime's defaults.
		PullTimeout:      cfg.ImagePullTimeout,
		PullStallTimeout: cfg.ImagePullStallTimeout,
	})
	if err != nil {
		return fmt.Errorf("connect to containerd: %w", err)
	}
	defer rt.Close()

	podCIDR := cfg.PodCIDR
	var cl *cluster.Cluster
	if cfg.ClusterCIDR != "" {
		if cl, err = startCluster(ctx, cfg, st, certs, revs, log); err != nil {
			return err
		}
		defer func() {
			if err := cl.Shutdown(); err != nil {
				log.Warn("leave the cluster", "err", err)
			}
		}()
		podCIDR = cl.PodCIDR().String()
		go routeLoop(ctx, cl, st, log)
	}
	var svcs *svcStack
	if cl != nil {
		if svcs, err = prepareServices(cfg, cl, cl.PodCIDR()); err != nil {
			return err
		}
		defer svcs.stop()
	}
	// Before the secrets: replication calls members through its pool.
	peer, err := startPeers(cfg, cl, svcs, certs, log)
	if err != nil {
		return err
	}
	defer peer.close()
	var sec *secretStack
	if cl != nil {
		if sec, err = prepareSecrets(cfg, cl, peer.calls, st, log); err != nil {
			return err
		}
		defer sec.close()
	}
	var network pods.Network
	if podCIDR != "" {
		pn, err := podnet.New(podnet.Config{
			PluginDirs: cfg.CNIBinDirs,
			Bridge:     cfg.Bridge,
			PodCIDR:    netip.MustParsePrefix(podCIDR), // checked by Validate or claimed
			StateDir:   filepath.Join(cfg.StateDir, "net"),
		})
		if err != nil {
			return fmt.Errorf("pod network: %w", err)
		}
		network = podNetwork{pn}
		log.Info("pod network", "cidr", podCIDR)
	}
	capst, err := newCapStack(cfg)
	if err != nil {
		return err
	}
	// Before the pods: a pod that mounts a volume starts only on a mounted
	// one.
	vols, err := startVolumes(ctx, cfg, log)
	if err != nil {
		return err
	}
	mgr, err := pods.New(pods.Config{
		Network:        network,
		Runtime:        rt,
		Changed:        chainHooks(svcs.changedHook(), capst.changed),
		NodeName:       cfg.Name,
		Allocatable:    capst.allocatable(),
		MaxPods:        cfg.MaxPods,
		MemoryCapacity: capst.memCapacity,
		Drain:          peer.drainHook(),
		Secrets:        sec.source(),
		Volumes:        vols,
		Images:         scratchImages{},
		ResolvConf:     svcs.resolvConf(),
		Store:          st,
		LogDir:         filepath.Join(cfg.StateDir, "logs"),
		LogMaxBytes:    cfg.LogMaxBytes,
		BackoffBase:    cfg.BackoffBase,
		BackoffMax:     cfg.BackoffMax,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("start pod manager: %w", err)
	}
	defer mgr.Close()
	if sec != nil {
		sec.rep.SetPods(mgr)
		sec.rep.Start(ctx)
	}
	if svcs != nil {
		if err := svcs.start(ctx, cfg, cl, mgr, log); err != nil {
			return err
		}
	}

	resCPU, resMem := capst.reservedCPU, capst.reservedMem
	var labels node.LabelStore = st
	if sec != nil {
		labels = publishingLabels{st: st, cl: cl, sec: sec}
	}
	info := node.New(node.Config{
		Name:                cfg.Name,
		Addresses:           addresses(cfg),
		Namespace:           rt.Namespace(),
		AgentVersion:        cfg.Version,
		ReservedCPUMillis:   resCPU,
		ReservedMemoryBytes: resMem,
		Labels:              labels,
		Containerd:          rt,
		PodCIDR:             podCIDR,
		Pods:                mgr,
	})
	if cl != nil {
		capst.start(ctx, cl, mgr, vols, info, log)
	}
	vols.SetUsers(mgr.VolumeUsers)
	srv := server.New(info, mgr, mapError, log)
	srv.SetVolumes(vols)
	if err := revs.bind(cl, st); err != nil {
		return err
	}
	srv.SetRevocations(revs)
	if cl != nil {
		srv.SetMembers(members{cl})
		srv.SetServices(svcs.reg)
		srv.SetPeer(svcs.ctrl)
		srv.SetPeerCalls(peer.handlers)
		srv.SetGossipKeyRotator(newGossipKeys(cfg, cl, peer, log))
	}
	nd, stopNested, err := startNested(cfg, st, sec, log)
	if err != nil {
		return err
	}
	defer stopNested()
	if nd != nil {
		srv.SetNested(nd)
	}
	if sec != nil {
		api := secretAPI{Replicator: sec.rep, kms: sec.kms}
		if nd != nil {
			api.alsoSealed = nd // nested PKI is sealed with the same key
		}
		srv.SetSecrets(api)
	}
	stopDeployments := startDeployments(ctx, cl, srv, sec, peer, log)
	defer stopDeployments()
	srv.StartHealth(ctx, server.DefaultHealthInterval)

	errc := make(chan error, 2)
	var servers []*grpc.Server
	if cfg.Listen != "" {
		lis, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		peer.publishAPI(lis.Addr().String(), cfg)
		g := grpc.NewServer(append(serverOptions(cfg), grpc.Creds(tlsCreds), grpc.ChainUnaryInterceptor(logUnary(log), server.UnaryAuthzDeny(revs)), grpc.ChainStreamInterceptor(server.StreamAuthzDeny(revs)))...)
		srv.Register(g)
		servers = append(servers, g)
		go func() { errc <- serve(g, lis) }()
		log.Info("listening (mTLS)", "addr", lis.Addr().String())
	}
	if cfg.Socket != "" {
		gid, err := socketGroup(cfg.SocketGroup)
		if err != nil {
			return err
		}
		ulis, err := listenUnix(cfg.Socket)
		if err != nil {
			return err
		}
		if err := shareSocket(cfg.Socket, gid); err != nil {
			ulis.Close()
			return err
		}
		lis := &peerCredListener{Listener: ulis, gid: gid, log: log}
		g := grpc.NewServer(append(serverOptions(cfg), grpc.ChainUnaryInterceptor(logUnary(log), server.UnaryAuthzDeny(revs)), grpc.ChainStreamInterceptor(server.StreamAuthzDeny(revs)))...)
		srv.Register(g)
		servers = append(servers, g)
		go func() { errc <- serve(g, lis) }()
		log.Info("listening (local socket)", "path", cfg.Socket)
	}
	log.Info("agentd ready", "node", cfg.Name, "namespace", rt.Namespace(), "version", cfg.Version)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, g := range servers {
		stopGracefully(g, 5*time.Second)
	}
	if cfg.Socket != "" {
		_ = os.Remove(cfg.Socket)
	}
	log.Info("agentd stopped; containers keep running")
	return err
}

func serve(g *grpc.Server, lis net.Listener) error {
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	}
	return nil
}

func stopGracefully(g *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		g.Stop() // followers of log streams would hold GracefulStop forever
	}
}

// serverCreds loads the node's certificate and refuses to start when it
// does not carry the node's name (clients verify exactly that) or is not
// the herd CA's. The certificate is served through a reloader, so a
// renewed one replaces it without a restart.
func serverCreds(cfg Config, log *slog.Logger, deny server.DenyList) (credentials.TransportCredentials, *certReloader, error) {
	ca, err := pki.LoadPEMOrFile(cfg.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("--ca-cert: %w", err)
	}
	r, err := newCertReloader(cfg.Cert, cfg.Key, cfg.Name, ca, log.With("component", "tls"))
	if err != nil {
		return nil, nil, err
	}
	cert, err := pki.LoadPEMOrFile(cfg.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("--cert: %w", err)
	}
	key, err := pki.LoadPEMOrFile(cfg.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("--key: %w", err)
	}
	tc, err := pki.ServerTLSConfig(ca, cert, key)
	if err != nil {
		return nil, nil, err
	}
	tc.Certificates = nil
	tc.GetCertificate = r.getCertificate
	verify := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			return err
		}
		return server.CheckRevoked(deny, cs.PeerCertificates)
	}
	return credentials.NewTLS(tc), r, nil
}

// listenUnix creates the local socket with mode 0600 from the start (umask),
// so there is no window in which another user could connect.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--socket %s exists and is not a socket", path)
		}
		_ = os.Remove(path) // stale socket of an earlier agentd
	}
	old := syscall.Umask(0o177)
	lis, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return lis, nil
}

func addresses(cfg Config) []string {
	var out []string
	if cfg.Listen != "" {
		out = append(out, cfg.Listen)
	}
	if cfg.Socket != "" {
		out = append(out, "unix://"+cfg.Socket)
	}
	return out
}

// mapError gives engine errors their gRPC codes.
func mapError(err error) (codes.Code, bool) {
	switch {
	// First: a pod refused for its volume wraps the volume's own error.
	case errors.Is(err, pods.ErrVolumeInUse), errors.Is(err, pods.ErrVolumeUnavailable):
		return codes.FailedPrecondition, true
	case errors.Is(err, pods.ErrNotFound), errors.Is(err, services.ErrNotFound):
		return codes.NotFound, true
	case errors.Is(err, secrets.ErrNotFound), errors.Is(err, volumes.ErrNotFound):
		return codes.NotFound, true
	case errors.Is(err, volumes.ErrInvalid):
		return codes.InvalidArgument, true
	case errors.Is(err, volumes.ErrInUse), errors.Is(err, volumes.ErrProtected), errors.Is(err, volumes.ErrNoOnlineGrow):
		return codes.FailedPrecondition, true
	case errors.Is(err, volumes.ErrNotReady):
		return codes.Unavailable, true
	case errors.Is(err, secrets.ErrImmutable), errors.Is(err, secrets.ErrTypeChange),
		errors.Is(err, secrets.ErrNoHolder), errors.Is(err, secrets.ErrNotHeld),
		errors.Is(err, pods.ErrSecretUnavailable), errors.Is(err, pods.ErrInsufficientResources):
		return codes.FailedPrecondition, true
	case errors.Is(err, services.ErrTypeChange):
		return codes.FailedPrecondition, true
	case errors.Is(err, services.ErrConflict):
		return codes.AlreadyExists, true
	case errors.Is(err, services.ErrExhausted), errors.Is(err, pods.ErrTooManyPods):
		return codes.ResourceExhausted, true
	case errors.Is(err, pods.ErrConflict):
		return codes.AlreadyExists, true
	case errors.Is(err, pods.ErrForeign), errors.Is(err, runtime.ErrForeign):
		return codes.FailedPrecondition, true
	case errors.Is(err, pods.ErrNotReady), errdefs.IsUnavailable(err), errdefs.IsDeadlineExceeded(err):
		// containerd unreachable or too slow: safe for the client to retry.
		return codes.Unavailable, true
	}
	return codes.Internal, false
}

// logUnary logs each mutating call with the caller's certificate name.
func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		log.Debug("rpc", "method", info.FullMethod, "caller", server.CallerName(ctx), "took", time.Since(start), "err", err)
		return resp, err
	}
}

// podNetwork adapts podnet to the pod manager.
type podNetwork struct{ p *podnet.PodNet }

func (n podNetwork) Setup(ctx context.Context, uid, name string) (string, netip.Addr, error) {
	r, err := n.p.Setup(ctx, uid, name)
	return r.NetnsPath, r.IP, err
}

func (n podNetwork) Teardown(ctx context.Context, uid string) error { return n.p.Teardown(ctx, uid) }

func (n podNetwork) List() ([]string, error) { return n.p.List() }
