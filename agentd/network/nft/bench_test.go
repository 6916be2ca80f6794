package nft

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Benchmarks run in fresh network namespaces. The kube-proxy baseline is
// kube-proxy's nftables layout (pkg/proxy/nftables: a chain per service port
// and per endpoint, an inline numgen vmap per service, a service-ips vmap),
// generated here and loaded with `nft -f` the way knftables does.
//
//	go test -run '^$' -bench . -benchtime 1x ./agentd/network/nft/
//
// kube-proxy's layout is loaded at 10k services too (about 217 s per load
// with `nft -f` on this kind of machine); HERD_BENCH_KUBEPROXY_10K=0 skips
// it there.

func kpHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(h[:])[:8]
}

func kpServiceChain(s Service, p Port) string {
	return "service-" + kpHash(s.Key+"/"+p.Protocol.String()+fmt.Sprint(p.Port)) + "-" + s.Key + "/" + p.Protocol.String() + "/p" + fmt.Sprint(p.Port)
}

func kpEndpointChain(s Service, p Port, e Endpoint) string {
	return "endpoint-" + kpHash(s.Key+"/"+p.Protocol.String()+fmt.Sprint(p.Port)+e.IP.String()) + "-" + s.Key + "/" + p.Protocol.String() + "/p" + fmt.Sprint(p.Port) + "__" + e.IP.String() + "/" + fmt.Sprint(e.Port)
}

const kpHeader = `add table ip kube-proxy { comment "rules for kube-proxy" ; }
add chain ip kube-proxy mark-for-masquerade
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add chain ip kube-proxy masquerading { type nat hook postrouting priority srcnat ; }
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add rule ip kube-proxy reject-chain reject
add chain ip kube-proxy filter-output { type filter hook output priority -110 ; }
add rule ip kube-proxy filter-output ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add chain ip kube-proxy services
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority dstnat ; }
add rule ip kube-proxy nat-prerouting jump services
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add rule ip kube-proxy nat-output jump services
`

// kpServiceRules writes one service port's chains: endpoint chains first
// (a goto needs its target declared earlier in the file), then the service
// chain with its inline numgen vmap, then the service-ips element.
func kpServiceRules(b *strings.Builder, s Service, p Port, withElements bool) {
	var gotos []string
	for i, e := range p.Endpoints {
		ec := kpEndpointChain(s, p, e)
		fmt.Fprintf(b, "add chain ip kube-proxy %s\n", ec)
		fmt.Fprintf(b, "flush chain ip kube-proxy %s\n", ec)
		fmt.Fprintf(b, "add rule ip kube-proxy %s ip saddr %s jump mark-for-masquerade\n", ec, e.IP)
		fmt.Fprintf(b, "add rule ip kube-proxy %s meta l4proto %s dnat to %s:%d\n", ec, p.Protocol, e.IP, e.Port)
		gotos = append(gotos, fmt.Sprintf("%d : goto %s", i, ec))
	}
	sc := kpServiceChain(s, p)
	fmt.Fprintf(b, "add chain ip kube-proxy %s\n", sc)
	fmt.Fprintf(b, "flush chain ip kube-proxy %s\n", sc)
	fmt.Fprintf(b, "add rule ip kube-proxy %s ip daddr %s %s dport %d ip saddr != %s jump mark-for-masquerade\n", sc, s.ClusterIP, p.Protocol, p.Port, podCIDR)
	if len(gotos) > 0 {
		fmt.Fprintf(b, "add rule ip kube-proxy %s numgen random mod %d vmap { %s }\n", sc, len(gotos), strings.Join(gotos, " , "))
	}
	if withElements {
		fmt.Fprintf(b, "add element ip kube-proxy cluster-ips { %s }\n", s.ClusterIP)
		fmt.Fprintf(b, "add element ip kube-proxy service-ips { %s . %s . %d : goto %s }\n", s.ClusterIP, p.Protocol, p.Port, sc)
	}
}

func kpLayout(svcs []Service) string {
	var b strings.Builder
	b.WriteString(kpHeader)
	for _, s := range svcs {
		for _, p := range s.Ports {
			kpServiceRules(&b, s, p, true)
		}
	}
	return b.String()
}

// kpChange is kube-proxy's transaction for one endpoint replaced in one
// service: new endpoint chain, service chain rewritten, old chain deleted.
func kpChange(old, s Service) string {
	var b strings.Builder
	kpServiceRules(&b, s, s.Ports[0], false)
	keep := map[string]bool{}
	for _, e := range s.Ports[0].Endpoints {
		keep[kpEndpointChain(s, s.Ports[0], e)] = true
	}
	for _, e := range old.Ports[0].Endpoints {
		if c := kpEndpointChain(old, old.Ports[0], e); !keep[c] {
			fmt.Fprintf(&b, "flush chain ip kube-proxy %s\ndelete chain ip kube-proxy %s\n", c, c)
		}
	}
	return b.String()
}

func nftFile(tb testing.TB, ns, text string) time.Duration {
	tb.Helper()
	f := filepath.Join(tb.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-f", f).CombinedOutput()
	el := time.Since(start)
	if err != nil {
		tb.Fatalf("nft -f: %v\n%.2000s", err, out)
	}
	return el
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func herdSync(b *testing.B, svcs []Service) time.Duration {
	d := newDP(b, newNS(b))
	start := time.Now()
	if err := d.Sync(context.Background(), svcs); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkFullSync: herd's Sync against loading kube-proxy's layout, same
// services (N × 10 endpoints), each into a fresh namespace.
func BenchmarkFullSync(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{1000, 2000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			svcs := manySvcs(n, 10)
			kp := kubeProxyAt(n)
			text := ""
			if kp {
				text = kpLayout(svcs)
			}
			var herd, kube []time.Duration
			for b.Loop() {
				herd = append(herd, herdSync(b, svcs))
				if kp {
					kube = append(kube, nftFile(b, newNS(b), text))
				}
			}
			report(b, herd, kube)
		})
	}
}

// BenchmarkOneChange: one endpoint of one service replaced, with N services
// loaded: herd's Upsert against kube-proxy's `nft -f` transaction.
func BenchmarkOneChange(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{1000, 2000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			svcs := manySvcs(n, 10)
			kp := kubeProxyAt(n)
			d := newDP(b, newNS(b))
			if err := d.Sync(context.Background(), svcs); err != nil {
				b.Fatal(err)
			}
			var kpNS string
			if kp {
				kpNS = newNS(b)
				nftFile(b, kpNS, kpLayout(svcs))
			}
			target := svcs[n/2]
			variants := [2]Service{target, clone(target)}
			variants[1].Ports[0].Endpoints[3].IP = variants[1].Ports[0].Endpoints[3].IP.Next()
			var herd, kube []time.Duration
			i := 0
			for b.Loop() {
				old, s := variants[i%2], variants[(i+1)%2]
				i++
				start := time.Now()
				if err := d.Upsert(context.Background(), s); err != nil {
					b.Fatal(err)
				}
				herd = append(herd, time.Since(start))
				if kp {
					kube = append(kube, nftFile(b, kpNS, kpChange(old, s)))
				}
			}
			report(b, herd, kube)
		})
	}
}

// kubeProxyAt says whether kube-proxy's layout is loaded beside herd's at
// n services: always, unless HERD_BENCH_KUBEPROXY_10K=0 skips it at 10k
// (one load takes minutes there).
func kubeProxyAt(n int) bool {
	return n < 10000 || os.Getenv("HERD_BENCH_KUBEPROXY_10K") != "0"
}

// report gives the median of each side with its spread (min and max), and
// the ratio of the medians.
func report(b *testing.B, herd, kube []time.Duration) {
	h := slices.Sorted(slices.Values(herd))
	b.ReportMetric(ms(h[len(h)/2]), "herd-ms")
	b.ReportMetric(ms(h[0]), "herd-min-ms")
	b.ReportMetric(ms(h[len(h)-1]), "herd-max-ms")
	if len(kube) == 0 {
		return
	}
	k := slices.Sorted(slices.Values(kube))
	b.ReportMetric(ms(k[len(k)/2]), "kubeproxy-ms")
	b.ReportMetric(ms(k[0]), "kubeproxy-min-ms")
	b.ReportMetric(ms(k[len(k)-1]), "kubeproxy-max-ms")
	b.ReportMetric(float64(k[len(k)/2])/float64(h[len(h)/2]), "speedup-x")
}
