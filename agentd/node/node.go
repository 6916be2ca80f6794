// Package node describes the machine agentd runs on: identity, capacity,
// readiness and the labels set through the API.
package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// LabelStore keeps the labels set through the API.
type LabelStore interface {
	GetNodeLabels() (map[string]string, error)
	SetNodeLabels(map[string]string) error
}

// Containerd is what readiness needs from containerd.
type Containerd interface {
	// Version returns containerd's version; an error means it is unreachable.
	Version(ctx context.Context) (string, error)
}

// Pods reports what the node's pods request (agentd/pods.Manager).
type Pods interface {
	// Requested is the sum of every pod's requests and the pod count.
	Requested() (capacity.Resources, int)
}

// Config describes the node.
type Config struct {
	Name         string
	Addresses    []string
	Namespace    string // containerd namespace
	AgentVersion string
	// Reserved for the system; subtracted from capacity to get allocatable.
	ReservedCPUMillis   int64
	ReservedMemoryBytes int64
	Labels              LabelStore
	Containerd          Containerd
	PodCIDR             string
	// Pods, if set, fills Node.requested and Node.pods.
	Pods Pods
}

// Info answers node and health questions.
type Info struct {
	cfg     Config
	started time.Time
	mu      sync.Mutex // serializes label updates
}

// New returns the node's Info.
func New(cfg Config) *Info {
	return &Info{cfg: cfg, started: time.Now()}
}

// Node reports the node as it is now.
func (i *Info) Node(ctx context.Context) (*herdv1.Node, error) {
	labels, err := i.cfg.Labels.GetNodeLabels()
	if err != nil {
		return nil, fmt.Errorf("read node labels: %w", err)
	}
	capacity, err := Capacity()
	if err != nil {
		return nil, err
	}
	n := &herdv1.Node{
		Name:                i.cfg.Name,
		Labels:              labels,
		Capacity:            capacity,
		Allocatable:         Allocatable(capacity, i.cfg.ReservedCPUMillis, i.cfg.ReservedMemoryBytes),
		AgentVersion:        i.cfg.AgentVersion,
		Os:                  runtime.GOOS,
		Arch:                runtime.GOARCH,
		KernelVersion:       kernelVersion(),
		ContainerdNamespace: i.cfg.Namespace,
		Addresses:           i.cfg.Addresses,
		StartedAt:           timestamppb.New(i.started),
		PodCidr:             i.cfg.PodCIDR,
		Ready:               true,
	}
	if i.cfg.Pods != nil {
		req, count := i.cfg.Pods.Requested()
		n.Requested = &herdv1.Resources{CpuMillis: req.CPUMillis, MemoryBytes: req.MemoryBytes}
		n.Pods = int32(count)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := i.cfg.Containerd.Version(cctx)
	if err != nil {
		n.Ready = false
		n.NotReadyReason = "containerd unreachable: " + err.Error()
	}
	n.ContainerdVersion = v
	return n, nil
}

// SetLabels replaces the API-managed labels.
func (i *Info) SetLabels(ctx context.Context, labels map[string]string) (*herdv1.Node, error) {
	i.mu.Lock()
	err := i.cfg.Labels.SetNodeLabels(labels)
	i.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("store node labels: %w", err)
	}
	return i.Node(ctx)
}

// Health checks containerd and the store: per name, nil when it works.
func (i *Info) Health(ctx context.Context) map[string]error {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, ctdErr := i.cfg.Containerd.Version(cctx)
	_, storeErr := i.cfg.Labels.GetNodeLabels()
	return map[string]error{"containerd": ctdErr, "store": storeErr}
}

// Allocatable is capacity c less what is reserved for the system (never
// negative).
func Allocatable(c *herdv1.Resources, cpu, mem int64) *herdv1.Resources {
	return &herdv1.Resources{
		CpuMillis:   max(c.GetCpuMillis()-cpu, 0),
		MemoryBytes: max(c.GetMemoryBytes()-mem, 0),
	}
}

// Capacity reads the CPUs this process may use and the machine's memory.
func Capacity() (*herdv1.Resources, error) {
	mem, err := memTotal()
	if err != nil {
		return nil, err
	}
	return &herdv1.Resources{CpuMillis: int64(runtime.NumCPU()) * 1000, MemoryBytes: mem}, nil
}

func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read memory capacity: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse MemTotal: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("read memory capacity: no MemTotal in /proc/meminfo")
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// OOMScoreAdjFloor is the lowest oom_score_adj this node can give a
// container: -1000 with CAP_SYS_RESOURCE, else agentd's own value (the
// kernel refuses an unprivileged process a value below what it inherited),
// as containerd's restrict_oom_score_adj does in unprivileged setups.
func OOMScoreAdjFloor() (int, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parse CapEff: %w", err)
		}
		if caps&(1<<unix.CAP_SYS_RESOURCE) != 0 {
			return -1000, nil
		}
		own, err := os.ReadFile("/proc/self/oom_score_adj")
		if err != nil {
			return 0, fmt.Errorf("read oom_score_adj: %w", err)
		}
		adj, err := strconv.Atoi(strings.TrimSpace(string(own)))
		if err != nil {
			return 0, fmt.Errorf("parse oom_score_adj: %w", err)
		}
		return adj, nil
	}
	return 0, fmt.Errorf("read capabilities: no CapEff in /proc/self/status")
}
