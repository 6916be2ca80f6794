// Command agentd is herd's node daemon: it runs pods on containerd and
// serves the herd.v1 API over mTLS.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/agent"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var version = "dev"

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var cfg agent.Config
	var insecure listFlag
	var logMax, logLevel string
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("agentd", flag.ExitOnError)
	fs.StringVar(&cfg.Name, "name", strings.ToLower(host), "node name; the node certificate must carry it")
	fs.StringVar(&cfg.Listen, "listen", "", "TCP address for mTLS clients, e.g. 0.0.0.0:7443 (empty: none)")
	fs.StringVar(&cfg.Socket, "socket", "/run/herd/agentd.sock", "unix socket for local clients, mode 0600 (empty: none)")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/herd", "directory for agentd's database and container logs")
	fs.StringVar(&cfg.ContainerdAddress, "containerd", "/run/containerd/containerd.sock", "containerd socket")
	fs.StringVar(&cfg.Namespace, "namespace", "herd", "containerd namespace for herd's containers")
	fs.StringVar(&cfg.CACert, "ca-cert", os.Getenv("HERD_CA_CERT"), "herd CA certificate (PEM or path; env HERD_CA_CERT)")
	fs.StringVar(&cfg.Cert, "cert", os.Getenv("HERD_NODE_CERT"), "node certificate (PEM or path; env HERD_NODE_CERT)")
	fs.StringVar(&cfg.Key, "key", os.Getenv("HERD_NODE_KEY"), "node key (PEM or path; env HERD_NODE_KEY)")
	fs.StringVar(&cfg.RegistryConfig, "registry-config", "", `registry settings JSON: {"insecure":["host:port"],"auths":{"host":{"username":"u","password":"p"}}}`)
	fs.Var(&insecure, "insecure-registry", "registry host:port that may be reached over plain HTTP (repeatable)")
	fs.StringVar(&cfg.PodCIDR, "pod-cidr", "", "this node's pod network, e.g. 10.244.1.0/24: one IP and network namespace per pod (empty: loopback-only pods)")
	fs.StringVar(&cfg.Bridge, "bridge", "herd0", "bridge for the pod network")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "", "join a cluster of agentds; each claims a pod CIDR from this range, e.g. 10.244.0.0/16")
	fs.IntVar(&cfg.NodeCIDRBits, "node-cidr-bits", 24, "prefix length of each node's pod CIDR")
	fs.StringVar(&cfg.GossipListen, "gossip-listen", "", "gossip address IP:PORT on this node (with --cluster-cidr), e.g. 10.0.0.5:7946")
	fs.StringVar(&cfg.GossipKeyFile, "gossip-key", "", "file with the 32-byte gossip encryption key, base64 (herdctl gossip-key)")
	var join, dnsUpstreams listFlag
	fs.Var(&join, "join", "gossip address of a member to join (repeatable)")
	fs.StringVar(&cfg.ServiceCIDR, "service-cidr", "10.96.0.0/16", "range of service cluster IPs (with --cluster-cidr; must not overlap it)")
	fs.StringVar(&cfg.ClusterDomain, "cluster-domain", "cluster.local", "DNS domain of services: <service>.<namespace>.svc.<domain>")
	fs.Var(&dnsUpstreams, "dns-upstream", "resolver IP:PORT for names outside the cluster domain (repeatable; default: /etc/resolv.conf)")
	fs.DurationVar(&cfg.SecretResync, "secret-resync", 30*time.Second, "how often secret holders check that every matching member holds the current version")
	fs.DurationVar(&cfg.ServiceResync, "service-resync", time.Minute, "how often service rules are rewritten in full (repairs changes made behind herd's back)")
	var nestedCIDRs listFlag
	fs.StringVar(&cfg.NestedKubeconfig, "nested-kubeconfig", "", "kubeconfig of a host cluster running KubeVirt: enables nested Kubernetes clusters (empty: disabled)")
	fs.Var(&nestedCIDRs, "nested-host-cidrs", "the host cluster's pod, service and node ranges, comma-separated or repeated: nested clusters' ranges may not overlap them")
	fs.StringVar(&cfg.NestedNamespacePrefix, "nested-namespace-prefix", "herd", "prefix of nested clusters' host namespaces: <prefix>-<node>-<cluster>")
	fs.StringVar(&cfg.NestedNodeAddress, "nested-node-address", "", "host address of NodePort endpoints of nested clusters (default: a host node's address)")
	fs.StringVar(&cfg.NodeIP, "node-ip", "", "address peers route this node's pods through (default: the gossip address)")
	var cniDirs listFlag
	fs.Var(&cniDirs, "cni-bin-dir", "directory with CNI plugins (repeatable; default /usr/lib/cni and /opt/cni/bin)")
	fs.StringVar(&cfg.ReservedCPU, "reserved-cpu", "", "CPU reserved for the system, e.g. 250m")
	fs.StringVar(&cfg.ReservedMemory, "reserved-memory", "", "memory reserved for the system, e.g. 512Mi")
	fs.StringVar(&logMax, "container-log-max-size", "10Mi", "size cap of each container's log")
	fs.DurationVar(&cfg.BackoffBase, "restart-backoff", 10*time.Second, "first crash-restart delay; doubles up to --restart-backoff-max")
	fs.DurationVar(&cfg.BackoffMax, "restart-backoff-max", 5*time.Minute, "longest crash-restart delay")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println("agentd", version)
		return
	}
	cfg.InsecureRegistries = insecure
	cfg.CNIBinDirs = cniDirs
	cfg.Join = join
	cfg.DNSUpstreams = dnsUpstreams
	for _, v := range nestedCIDRs {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cfg.NestedHostCIDRs = append(cfg.NestedHostCIDRs, c)
			}
		}
	}
	cfg.Version = version
	n, err := spec.ParseMemory(logMax)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentd: --container-log-max-size:", err)
		os.Exit(2)
	}
	cfg.LogMaxBytes = n

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "agentd: --log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, log); err != nil {
		log.Error("agentd failed", "err", err)
		os.Exit(1)
	}
}
