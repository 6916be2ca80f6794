// Command scalenode is one member of the services scale benchmark: agentd's
// cluster store and services controller over a real nftables data plane in
// a network namespace, without pods — it publishes synthetic endpoints as
// its own entries, so that one machine can hold a cluster of 10k services
// and 100k endpoints. It reads commands on stdin and reports on stdout
// (times are Unix nanoseconds: the members run on one machine, one clock).
//
//	stat                  counts, RSS and heap
//	watch KEY             report each rules change of service KEY
//	pub POD SVC IDX       publish endpoint POD (IP from IDX) for service SVC
//	unpub POD             withdraw it
//	resync                a full resync now; reports its duration
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	"github.com/herd-project/terraform-provider-herd/agentd/services"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

var out struct {
	sync.Mutex
	w *bufio.Writer
}

func say(format string, args ...any) {
	out.Lock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
	out.Unlock()
}

// VIP of service i and endpoint IP of global endpoint k.
func vip(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}) }
func epIP(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 128 + byte(k>>16), byte(k >> 8), byte(k)})
}

func endpointJSON(pod string, ip netip.Addr, svc string) []byte {
	b, _ := json.Marshal(map[string]any{"pod": pod, "ip": ip.String(), "ready": true, "labels": map[string]string{"app": svc}})
	return b
}

// plane times the controller's writes of watched services.
type plane struct {
	dp       *nft.Dataplane
	mu       sync.Mutex
	watched  map[string]bool
	counts   map[string]int
	resyncAt time.Time
}

func endpointsOf(s nft.Service) int {
	n := 0
	for _, p := range s.Ports {
		n += len(p.Endpoints)
	}
	return n
}

func (p *plane) Sync(ctx context.Context, svcs []nft.Service) error {
	if err := p.dp.Sync(ctx, svcs); err != nil {
		return err
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = make(map[string]int, len(svcs))
	for _, s := range svcs {
		p.counts[s.Key] = endpointsOf(s)
	}
	if !p.resyncAt.IsZero() {
		say("synced %d %d", now.Sub(p.resyncAt).Nanoseconds(), len(svcs))
		p.resyncAt = time.Time{}
	}
	return nil
}

func (p *plane) Apply(ctx context.Context, upserts []nft.Service, deletes []string) error {
	if err := p.dp.Apply(ctx, upserts, deletes); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range upserts {
		p.counts[s.Key] = endpointsOf(s)
		if p.watched[s.Key] {
			say("applied %s %d %d", s.Key, now, endpointsOf(s))
		}
	}
	for _, k := range deletes {
		delete(p.counts, k)
	}
	return nil
}

func putService(cl *cluster.Cluster, i int, fail func(string, error)) {
	s := &herdv1.Service{
		Spec: &herdv1.ServiceSpec{Namespace: "bench", Name: fmt.Sprintf("s%d", i), Type: services.TypeClusterIP,
			Selector: map[string]string{"app": fmt.Sprintf("s%d", i)},
			Ports:    []*herdv1.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: 8080}}},
		Status: &herdv1.ServiceStatus{ClusterIp: vip(i).String()},
		Uid:    fmt.Sprintf("u%d", i),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		fail("encode", err)
	}
	if _, err := cl.Put(services.KindService, "bench/s"+strconv.Itoa(i), b); err != nil {
		fail("put service", err)
	}
}

func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func main() {
	name := flag.String("name", "", "member name")
	bind := flag.String("bind", "127.0.0.1", "gossip address")
	join := flag.String("join", "", "comma-separated members to join")
	netns := flag.String("netns", "", "network namespace path of the data plane")
	key := flag.String("key", "", "gossip key, hex")
	nsvc := flag.Int("services", 0, "services this member writes")
	eps := flag.Int("eps", 10, "endpoints per service")
	nodes := flag.Int("nodes", 5, "members in the cluster")
	index := flag.Int("index", 0, "this member's index: it publishes endpoint k when k % nodes == index")
	total := flag.Int("total-services", 0, "services in the cluster (for the endpoints)")
	flag.Parse()
	out.w = bufio.NewWriter(os.Stdout)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "scalenode %s: %s: %v\n", *name, what, err)
		os.Exit(1)
	}
	k, err := hex.DecodeString(*key)
	if err != nil {
		fail("key", err)
	}
	nodeIP := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + *index)})
	cl, err := cluster.New(cluster.Config{NodeName: *name, BindAddr: *bind, SecretKey: k,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeCIDRBits: 24, NodeIP: nodeIP,
		Persist: &cluster.MemPersister{}, Logger: log,
		Tune: func(mc *memberlist.Config) {
			// agentd's probe interval; gossip timing as agentd's (the
			// defaults). Only the packet size is larger — loopback takes
			// 64 KiB datagrams — so that the initial load of 20k entries
			// per member gossips out in seconds rather than many minutes;
			// one message's latency does not depend on it.
			mc.ProbeInterval = 500 * time.Millisecond
			mc.UDPBufferSize = 60000
		}})
	if err != nil {
		fail("cluster", err)
	}
	dp, err := nft.New(nft.Config{Netns: *netns, ServiceCIDR: netip.MustParsePrefix("10.96.0.0/16"),
		PodCIDR: netip.MustParsePrefix("10.128.0.0/9"), NodeIPs: []netip.Addr{nodeIP}})
	if err != nil {
		fail("nft", err)
	}
	pl := &plane{dp: dp, watched: map[string]bool{}, counts: map[string]int{}}
	ctrl := services.NewController(cl, pl, log)
	ctrl.ResyncEvery = time.Hour // resyncs only when asked: they would disturb the figures
	ctx := context.Background()
	go ctrl.Run(ctx)
	say("addr %s", cl.Addr())
	if *join != "" {
		if _, err := cl.Join(ctx, strings.Split(*join, ",")); err != nil {
			fail("join", err)
		}
	}
	// services are written from many goroutines at once, as by a tofu apply
	// of many (the store's writes then share their saves)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				putService(cl, i, fail)
			}
		}()
	}
	for i := range *nsvc {
		next <- i
	}
	close(next)
	wg.Wait()
	for k := range *total * *eps {
		if k%*nodes != *index {
			continue
		}
		pod := "p" + strconv.Itoa(k)
		if err := cl.PublishLocal(services.KindEndpoint, pod, endpointJSON(pod, epIP(k), fmt.Sprintf("s%d", k / *eps))); err != nil {
			fail("publish", err)
		}
	}
	say("loaded")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "stat":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			pl.mu.Lock()
			applied, backends := len(pl.counts), 0
			for _, n := range pl.counts {
				backends += n
			}
			pl.mu.Unlock()
			say("stat services=%d entries=%d applied=%d backends=%d rss_kb=%d heap=%d queued=%d",
				len(cl.List(services.KindService)), len(cl.Entries(services.KindEndpoint)), applied, backends, rssKB(), ms.HeapAlloc, cl.PendingBroadcasts())
		case "watch":
			pl.mu.Lock()
			pl.watched[f[1]] = true
			pl.mu.Unlock()
		case "pub":
			idx, _ := strconv.Atoi(f[3])
			b := endpointJSON(f[1], epIP(idx), f[2])
			t := time.Now().UnixNano()
			if err := cl.PublishLocal(services.KindEndpoint, f[1], b); err != nil {
				fail("publish", err)
			}
			say("pub %s %d", f[1], t)
		case "unpub":
			t := time.Now().UnixNano()
			if err := cl.WithdrawLocal(services.KindEndpoint, f[1]); err != nil {
				fail("withdraw", err)
			}
			say("unpub %s %d", f[1], t)
		case "resync":
			pl.mu.Lock()
			pl.resyncAt = time.Now()
			pl.mu.Unlock()
			ctrl.ResyncNow()
		case "quit":
			_ = cl.Shutdown()
			_ = dp.Close()
			return
		}
	}
}
