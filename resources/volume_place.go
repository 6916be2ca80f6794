package resources

import (
	"context"
	"fmt"
	"sync"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// chooseNode asks every candidate node how full it is and lets the
// deployment scheduler pick one (spread: the emptiest ready node), so a
// volume lands where its pods have the most room. An unreachable candidate
// is not ready; with none left the error is the scheduler's per-node
// report.
func (r *volumeResource) chooseNode(ctx context.Context, key string, candidates []string) (string, error) {
	nodes := make([]schedule.Node, len(candidates))
	var wg sync.WaitGroup
	for i, id := range candidates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = r.candidate(ctx, id)
		}()
	}
	wg.Wait()
	res := schedule.Place(nodes, schedule.Request{Key: key, Strategy: spec.PlacementSpread}, 1)
	if len(res.Nodes) == 0 {
		return "", fmt.Errorf("choose a node for volume %s: %w", key, res.Err("volume "+key))
	}
	return res.Nodes[0], nil
}

// candidate is node id as the scheduler sees it, named by its id.
func (r *volumeResource) candidate(ctx context.Context, id string) schedule.Node {
	n := schedule.Node{Name: id}
	nc, err := r.clients.NodeClient(id)
	if err != nil {
		n.NotReady = err.Error()
		return n
	}
	cctx, cancel := context.WithTimeout(ctx, r.clients.DialTimeout()+volumeCheckTimeout)
	defer cancel()
	got, err := nc.GetNode(cctx, &herdv1.GetNodeRequest{})
	if err != nil {
		n.NotReady = err.Error()
		return n
	}
	conv := func(res *herdv1.Resources) capacity.Resources {
		return capacity.Resources{CPUMillis: res.GetCpuMillis(), MemoryBytes: res.GetMemoryBytes()}
	}
	info := capacity.Info{Allocatable: conv(got.GetAllocatable()), Requested: conv(got.GetRequested())}
	n.Ready, n.NotReady = got.GetReady(), got.GetNotReadyReason()
	n.Labels, n.Allocatable, n.Free = got.GetLabels(), info.Allocatable, info.Free()
	return n
}
