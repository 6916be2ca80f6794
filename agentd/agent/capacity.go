package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/node"
	"github.com/herd-project/terraform-provider-herd/agentd/pods"
	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// capStack is the node's room for pods: the allocatable resources the pod
// manager admits pods against and, on a clustered node, the publisher of
// its capacity entry.
type capStack struct {
	reservedCPU, reservedMem int64
	memCapacity              int64
	alloc                    capacity.Resources
	pub                      atomic.Pointer[capacity.Publisher]
}

// newCapStack reads the machine's capacity and subtracts what is reserved
// for the system (--reserved-cpu, --reserved-memory).
func newCapStack(cfg Config) (*capStack, error) {
	c := &capStack{}
	if cfg.ReservedCPU != "" {
		c.reservedCPU, _ = spec.ParseCPU(cfg.ReservedCPU) // checked by Validate
	}
	if cfg.ReservedMemory != "" {
		c.reservedMem, _ = spec.ParseMemory(cfg.ReservedMemory)
	}
	total, err := node.Capacity()
	if err != nil {
		return nil, fmt.Errorf("node capacity: %w", err)
	}
	a := node.Allocatable(total, c.reservedCPU, c.reservedMem)
	c.memCapacity = total.GetMemoryBytes()
	c.alloc = capacity.Resources{CPUMillis: a.GetCpuMillis(), MemoryBytes: a.GetMemoryBytes()}
	return c, nil
}

func (c *capStack) allocatable() *capacity.Resources {
	a := c.alloc
	return &a
}

// changed is the pod manager's hook: it forwards to the publisher once it
// runs (the publisher reads the whole node when it starts).
func (c *capStack) changed(name string) {
	if p := c.pub.Load(); p != nil {
		p.Changed(name)
	}
}

// start publishes the capacity entry of a clustered node until ctx ends.
//
// The entry also lists the node's volumes, which the schedulers place
// replicas by; vols tells it when they change.
func (c *capStack) start(ctx context.Context, cl *cluster.Cluster, mgr *pods.Manager, vols *volumes.Manager, info *node.Info, log *slog.Logger) {
	read := func(ctx context.Context) (capacity.Info, error) {
		req, n := mgr.Requested()
		ready := true
		for _, err := range info.Health(ctx) {
			ready = ready && err == nil
		}
		info := capacity.Info{Allocatable: c.alloc, Requested: req, Pods: n, Ready: ready, Volumes: vols.Names()}
		for _, v := range info.Volumes {
			ns, name, _ := strings.Cut(v, "/")
			rw, _ := mgr.VolumeUsers(ns, name)
			if rw == "" {
				continue
			}
			if info.VolumeWriters == nil {
				info.VolumeWriters = map[string]string{}
			}
			info.VolumeWriters[v] = capacity.WriterPod(rw)
			if p, err := mgr.Get(ctx, rw); err == nil && p.GetSpec().GetDeployment() != nil {
				d := p.GetSpec().GetDeployment()
				info.VolumeWriters[v] = capacity.WriterDeployment(d.GetNamespace() + "/" + d.GetName())
			}
		}
		return info, nil
	}
	p := capacity.NewPublisher(read, cl, log.With("component", "capacity"))
	c.pub.Store(p)
	vols.SetChanged(func() { p.Changed("") })
	go p.Run(ctx)
}

// chainHooks calls every non-nil hook in turn; nil when there is none.
func chainHooks(hooks ...func(string)) func(string) {
	var hs []func(string)
	for _, h := range hooks {
		if h != nil {
			hs = append(hs, h)
		}
	}
	switch len(hs) {
	case 0:
		return nil
	case 1:
		return hs[0]
	}
	return func(name string) {
		for _, h := range hs {
			h(name)
		}
	}
}
