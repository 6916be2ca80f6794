package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments"
	"github.com/herd-project/terraform-provider-herd/agentd/server"
)

// startDeployments gives the server the deployment registry and, when the
// node can dial the other members (it has certificates), runs the driver
// that makes this member's share of the deployments real. It returns the
// stop function, which waits for the driver's loops to end.
func startDeployments(ctx context.Context, cl *cluster.Cluster, srv *server.Server, sec *secretStack, peer *peerStack, log *slog.Logger) func() {
	if cl == nil {
		return func() {}
	}
	log = log.With("component", "deployments")
	reg := deployments.NewRegistry(cl, log)
	if sec != nil {
		reg.SetSecrets(sec.rep)
	}
	srv.SetDeployments(reg, cl)
	if peer == nil || peer.pool == nil {
		log.Warn("no certificates to dial other members with: this node stores deployments but drives none")
		return func() {}
	}
	d := deployments.NewDriver(deployments.DriverConfig{
		Store: cl,
		Peers: deployments.PoolPeers(peer.pool),
		Nodes: reg.Nodes,
		Hint:  reg.Hint,
		Log:   log,
	})
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx) }()
	return func() { cancel(); wg.Wait() }
}
