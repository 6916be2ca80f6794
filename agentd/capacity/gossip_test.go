package capacity_test

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
)

func newMember(t *testing.T, name, ip string, join ...*cluster.Cluster) *cluster.Cluster {
	t.Helper()
	c, err := cluster.New(cluster.Config{
		NodeName:     name,
		BindAddr:     "127.0.0.1",
		SecretKey:    make([]byte, 32),
		ClusterCIDR:  netip.MustParsePrefix("10.250.0.0/16"),
		NodeCIDRBits: 24,
		NodeIP:       netip.MustParseAddr(ip),
		Persist:      &cluster.MemPersister{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	var addrs []string
	for _, o := range join {
		addrs = append(addrs, o.Addr().String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Join(ctx, addrs); err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	return c
}

// TestPublishedCapacitySeenByPeers: what a node's publisher writes reaches
// another member's view of the cluster, and follows the node's pods and
// volumes.
func TestPublishedCapacitySeenByPeers(t *testing.T) {
	a := newMember(t, "cap-a", "192.0.2.1")
	b := newMember(t, "cap-b", "192.0.2.2", a)

	var mu sync.Mutex
	info := capacity.Info{Allocatable: capacity.Resources{CPUMillis: 2000, MemoryBytes: 4 << 30}, Ready: true}
	read := func(context.Context) (capacity.Info, error) {
		mu.Lock()
		defer mu.Unlock()
		return info, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := capacity.NewPublisher(read, a, nil)
	go p.Run(ctx)

	seenByB := func(want capacity.Info) {
		t.Helper()
		var last string
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			for _, e := range b.Entries(capacity.Kind) {
				if e.Owner != "cap-a" || e.Key != capacity.Key {
					continue
				}
				got, err := capacity.Decode(e.Value)
				if err != nil {
					return false, err
				}
				last = fmt.Sprintf("%+v", got)
				return reflect.DeepEqual(got, want), nil
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("cap-b sees cap-a's capacity as %s, want %+v: %v", last, want, err)
		}
	}
	seenByB(info)

	mu.Lock()
	info.Requested = capacity.Resources{CPUMillis: 250, MemoryBytes: 200 << 20}
	info.Pods = 1
	want := info
	mu.Unlock()
	p.Changed("web")
	seenByB(want)
	if free := want.Free(); free.MemoryBytes != 4<<30-200<<20 {
		t.Fatalf("free %+v", free)
	}

	mu.Lock()
	info.Volumes = []string{"default/data", "prod/wal"}
	want = info
	mu.Unlock()
	p.Changed("")
	seenByB(want)
}
