// Package agent wires agentd together: store, containerd runtime, pod
// manager, node info and the gRPC listeners (mTLS on TCP, plaintext only on
// a 0600 unix socket for local use).
package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/herd-project/terraform-provider-herd/agentd/runtime"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Config is agentd's configuration, from flags and the --config file.
type Config struct {
	// Name is the node's name; its certificate must carry it.
	Name string
	// Listen is the TCP address for mTLS clients ("" disables TCP).
	Listen string
	// Socket is the unix socket for local plaintext clients ("" disables it).
	Socket string
	// SocketGroup may use the socket besides root (a group name or
	// number; "" is root only).
	SocketGroup string
	StateDir    string
	// VolumeDir holds the node's persistent volumes (ext4 images on loop
	// devices); default <state-dir>/volumes.
	VolumeDir string

	ContainerdAddress string
	Namespace         string

	CACert, Cert, Key string // PEM content or file paths

	// RegistryConfig is a JSON file: {"insecure": ["host:port"],
	// "auths": {"host": {"username": "...", "password": "..."}}}.
	RegistryConfig string
	// InsecureRegistries may be reached over plain HTTP (loopback test
	// registries); everything else needs HTTPS.
	InsecureRegistries []string
	// ImagePullTimeout and ImagePullStallTimeout bound each image pull's
	// waits on its registry (runtime.Config.PullTimeout, PullStallTimeout).
	ImagePullTimeout, ImagePullStallTimeout time.Duration

	// PodCIDR turns on the pod network: one network namespace and one IP
	// per pod from this range, on a bridge (CNI bridge + host-local).
	// Empty: each container gets a loopback-only namespace.
	PodCIDR    string
	Bridge     string
	CNIBinDirs []string

	// ClusterCIDR turns on clustering: agentds gossip (hashicorp/memberlist,
	// always encrypted with GossipKeyFile) and each claims a pod CIDR of
	// NodeCIDRBits from this range. It replaces PodCIDR.
	ClusterCIDR   string
	NodeCIDRBits  int
	GossipListen  string // host:port, on the node's address
	GossipKeyFile string // 32 bytes, base64 (herdctl gossip-key)
	// SecretChecksumKeyFile keys the secret checksums (32 bytes, base64,
	// the same on every member); empty: GossipKeyFile. A key of its own
	// lets the gossip key change without changing any checksum.
	SecretChecksumKeyFile string
	// GossipAllowUnsigned accepts unsigned gossip from members of an
	// earlier version: only for the time of a rolling upgrade.
	GossipAllowUnsigned bool

	Join []string
	// NodeIP is what peers route this node's pod CIDR to (default: the
	// host of GossipListen).
	NodeIP string

	// ServiceCIDR is where cluster IPs come from (clusters only).
	ServiceCIDR string
	// ClusterDomain is the DNS domain of services (default cluster.local).
	ClusterDomain string
	// DNSUpstreams answer names outside the cluster domain (default: the
	// nameservers of /etc/resolv.conf).
	DNSUpstreams []string
	// ServiceResync is how often the service rules are rewritten in full,
	// repairing changes made behind herd's back (default 1m).
	ServiceResync time.Duration
	// SecretResync is how often each secret holder checks that every
	// matching member holds its secrets (default 30s; membership changes
	// trigger a check at once).
	SecretResync time.Duration
	// NewKEK lets agentd start although the key-encryption key its
	// stored secrets need is missing or broken: it creates a new one,
	// discards what it can no longer decrypt and fetches it back from
	// the other holders.
	NewKEK bool

	// NestedKubeconfig turns on nested Kubernetes clusters: a kubeconfig
	// for a host cluster that runs KubeVirt ("" disables them).
	NestedKubeconfig string
	// NestedHostCIDRs are the host cluster's ranges (pods, services,
	// nodes) that nested clusters' ranges may not overlap.
	NestedHostCIDRs []string
	// NestedNamespacePrefix starts each nested cluster's host namespace
	// (<prefix>-<node>-<cluster>); default herd.
	NestedNamespacePrefix string
	// NestedNodeAddress is the host address of NodePort endpoints
	// (default: a host Node's address).
	NestedNodeAddress string
	// NestedPoll is the period of the nested clusters' waits (default 2s).
	NestedPoll time.Duration

	// MaxPods is the most pods the node holds; ApplyPod of a new pod past
	// it is refused with ResourceExhausted (0: no limit).
	MaxPods int

	ReservedCPU    string // quantity, e.g. "100m"
	ReservedMemory string // quantity, e.g. "256Mi"
	LogMaxBytes    int64
	BackoffBase    time.Duration
	BackoffMax     time.Duration
	Version        string
}

// Validate refuses a configuration agentd cannot run with.
func (c *Config) Validate() error {
	var errs []error
	if err := spec.ValidateName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("--name: %w", err))
	}
	if c.Listen == "" && c.Socket == "" {
		errs = append(errs, errors.New("--listen or --socket is required"))
	}
	if c.Listen != "" && (c.CACert == "" || c.Cert == "" || c.Key == "") {
		errs = append(errs, errors.New("--listen needs --ca-cert, --cert and --key: TCP clients always use mutual TLS"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if c.ReservedCPU != "" {
		if _, err := spec.ParseCPU(c.ReservedCPU); err != nil {
			errs = append(errs, fmt.Errorf("--reserved-cpu: %w", err))
		}
	}
	if c.ReservedMemory != "" {
		if _, err := spec.ParseMemory(c.ReservedMemory); err != nil {
			errs = append(errs, fmt.Errorf("--reserved-memory: %w", err))
		}
	}
	if c.ImagePullTimeout < 0 {
		errs = append(errs, fmt.Errorf("--image-pull-timeout: must not be negative, got %s", c.ImagePullTimeout))
	}
	if c.ImagePullStallTimeout < 0 {
		errs = append(errs, fmt.Errorf("--image-pull-stall-timeout: must not be negative, got %s", c.ImagePullStallTimeout))
	}
	if c.MaxPods < 0 {
		errs = append(errs, fmt.Errorf("--max-pods: must be 0 (no limit) or more, got %d", c.MaxPods))
	}
	if c.PodCIDR != "" {
		if p, err := netip.ParsePrefix(c.PodCIDR); err != nil || p != p.Masked() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--pod-cidr: want an IPv4 network such as 10.244.1.0/24, got %q", c.PodCIDR))
		}
	}
	if c.ClusterCIDR != "" {
		if c.PodCIDR != "" {
			errs = append(errs, errors.New("--pod-cidr and --cluster-cidr exclude each other: in a cluster the node claims its pod CIDR"))
		}
		if p, err := netip.ParsePrefix(c.ClusterCIDR); err != nil || p != p.Masked() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--cluster-cidr: want an IPv4 network such as 10.244.0.0/16, got %q", c.ClusterCIDR))
		} else if c.NodeCIDRBits <= p.Bits() || c.NodeCIDRBits > 30 {
			errs = append(errs, fmt.Errorf("--node-cidr-bits: must be between %d and 30, got %d", p.Bits()+1, c.NodeCIDRBits))
		}
		if _, err := netip.ParseAddrPort(c.GossipListen); err != nil {
			errs = append(errs, fmt.Errorf("--gossip-listen: want IP:PORT, got %q", c.GossipListen))
		}
		if c.GossipKeyFile == "" {
			errs = append(errs, errors.New("--gossip-key is required with --cluster-cidr: gossip is always encrypted"))
		}
		if c.Listen == "" || c.CACert == "" || c.Cert == "" || c.Key == "" {
			errs = append(errs, errors.New("--cluster-cidr needs --listen, --ca-cert, --cert and --key: members call each other (secret replication) over mutual TLS with their node certificates"))
		}
		if c.NodeIP != "" {
			if _, err := netip.ParseAddr(c.NodeIP); err != nil {
				errs = append(errs, fmt.Errorf("--node-ip: %w", err))
			}
		}
		if s, err := netip.ParsePrefix(c.ServiceCIDR); err != nil || s != s.Masked() || !s.Addr().Is4() || s.Bits() > 28 {
			errs = append(errs, fmt.Errorf("--service-cidr: want an IPv4 network of at least /28 such as 10.96.0.0/16, got %q", c.ServiceCIDR))
		} else if p, err := netip.ParsePrefix(c.ClusterCIDR); err == nil && s.Overlaps(p) {
			errs = append(errs, fmt.Errorf("--service-cidr %s overlaps --cluster-cidr %s", s, p))
		}
		for _, u := range c.DNSUpstreams {
			if _, err := netip.ParseAddrPort(u); err != nil {
				errs = append(errs, fmt.Errorf("--dns-upstream: want IP:PORT, got %q", u))
			}
		}
	}
	if c.Socket != "" && len(c.Socket) > 100 {
		errs = append(errs, fmt.Errorf("--socket: path longer than 100 bytes: %s", c.Socket))
	}
	errs = append(errs, c.validateNested()...)
	return errors.Join(errs...)
}

type registryFile struct {
	Insecure []string                       `json:"insecure"`
	Auths    map[string]runtime.Credentials `json:"auths"`
}

// registries merges the registry file and flags.
func (c *Config) registries() (runtime.RegistryConfig, error) {
	rc := runtime.RegistryConfig{Insecure: append([]string(nil), c.InsecureRegistries...)}
	if c.RegistryConfig == "" {
		return rc, nil
	}
	b, err := os.ReadFile(c.RegistryConfig)
	if err != nil {
		return rc, fmt.Errorf("read registry config: %w", err)
	}
	var f registryFile
	if err := json.Unmarshal(b, &f); err != nil {
		// The file holds credentials: never echo its content.
		return rc, fmt.Errorf("parse registry config %s: invalid JSON", filepath.Base(c.RegistryConfig))
	}
	rc.Insecure = append(rc.Insecure, f.Insecure...)
	rc.Auth = f.Auths
	return rc, nil
}

// gossipKey reads the 32-byte gossip key (base64 in a file). Errors never
// show the key.
func (c *Config) gossipKey() ([]byte, error) {
	return readKeyFile("gossip key", c.GossipKeyFile)
}

// checksumKey reads the key the secret checksums derive from: the
// --secret-checksum-key file, or the gossip key without one (so clusters
// made before the flag keep their checksums: copy the gossip key file to
// a file of its own before the gossip key changes; a rotation by herdctl
// keeps that copy in the state dir itself).
func (c *Config) checksumKey() ([]byte, error) {
	if c.SecretChecksumKeyFile == "" {
		// A gossip key rotation kept a copy of the old gossip key.
		if c.StateDir != "" {
			copyPath := filepath.Join(c.StateDir, checksumKeyCopy)
			if _, err := os.Stat(copyPath); err == nil {
				return readKeyFile("secret checksum key", copyPath)
			}
		}
		return c.gossipKey()
	}
	return readKeyFile("secret checksum key", c.SecretChecksumKeyFile)
}

// readKeyFile reads a 32-byte key, base64 in a file. Errors never show the
// key.
func readKeyFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%s %s: want 32 bytes, base64-encoded (herdctl gossip-key)", what, filepath.Base(path))
	}
	return key, nil
}

// Command is agentd's parsed command line: the Config and what only the
// process itself needs.
type Command struct {
	Config   Config
	LogLevel slog.Level
	// ShowVersion: --version, print the version and exit.
	ShowVersion bool
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
func (l *listFlag) Get() any           { return []string(*l) }

// ParseCommandLine parses agentd's arguments (without the program name).
// --config FILE names a YAML file whose keys are flag names, e.g.
// "state-dir: /var/lib/herd" or "join: [a, b]" for a repeatable flag; a flag
// given on the command line wins over the file (a repeated one replaces the
// file's whole list), and the file wins over the defaults, including those
// taken from the environment (HERD_CA_CERT, HERD_NODE_CERT, HERD_NODE_KEY).
// getenv reads the environment; help and flag errors are written to output.
// -h returns flag.ErrHelp.
func ParseCommandLine(args []string, getenv func(string) string, output io.Writer) (Command, error) {
	var cmd Command
	cfg := &cmd.Config
	var insecure, join, dnsUpstreams, nestedCIDRs, cniDirs listFlag
	var logMax, logLevel, configFile string
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("agentd", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&configFile, "config", "", "YAML file of flags, keys named like them (state-dir: /var/lib/herd); flags on the command line win")
	fs.StringVar(&cfg.Name, "name", strings.ToLower(host), "node name; the node certificate must carry it")
	fs.StringVar(&cfg.Listen, "listen", "", "TCP address for mTLS clients, e.g. 0.0.0.0:7443 (empty: none)")
	fs.StringVar(&cfg.Socket, "socket", "/run/herd/agentd.sock", "unix socket for local clients, mode 0600 (empty: none)")
	fs.StringVar(&cfg.SocketGroup, "socket-group", "", "a group that may use the socket besides root (mode 0660); the peer's credentials are checked on every connection")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/herd", "directory for agentd's database and container logs")
	fs.StringVar(&cfg.VolumeDir, "volume-dir", "", "directory of the node's persistent volumes, one ext4 image each on a loop device (default: volumes in the state dir)")
	fs.StringVar(&cfg.ContainerdAddress, "containerd", "/run/containerd/containerd.sock", "containerd socket")
	fs.StringVar(&cfg.Namespace, "namespace", "herd", "containerd namespace for herd's containers")
	fs.StringVar(&cfg.CACert, "ca-cert", getenv("HERD_CA_CERT"), "herd CA certificate (PEM or path; env HERD_CA_CERT)")
	fs.StringVar(&cfg.Cert, "cert", getenv("HERD_NODE_CERT"), "node certificate (PEM or path; env HERD_NODE_CERT)")
	fs.StringVar(&cfg.Key, "key", getenv("HERD_NODE_KEY"), "node key (PEM or path; env HERD_NODE_KEY)")
	fs.StringVar(&cfg.RegistryConfig, "registry-config", "", `registry settings JSON: {"insecure":["host:port"],"auths":{"host":{"username":"u","password":"p"}}}`)
	fs.Var(&insecure, "insecure-registry", "registry host:port that may be reached over plain HTTP (repeatable)")
	fs.DurationVar(&cfg.ImagePullTimeout, "image-pull-timeout", runtime.DefaultPullTimeout,
		"most time an image pull may spend, in total, waiting on its registry without receiving data; time in which data arrives does not count, so a large image on a slow link is not cut")
	fs.DurationVar(&cfg.ImagePullStallTimeout, "image-pull-stall-timeout", runtime.DefaultPullStallTimeout,
		"an image pull that receives nothing from its registry for this long at a stretch is canceled as stalled (reported in the container's status) and retried with the back-off")
	fs.StringVar(&cfg.PodCIDR, "pod-cidr", "", "this node's pod network, e.g. 10.244.1.0/24: one IP and network namespace per pod (empty: loopback-only pods)")
	fs.StringVar(&cfg.Bridge, "bridge", "herd0", "bridge for the pod network")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "", "join a cluster of agentds; each claims a pod CIDR from this range, e.g. 10.244.0.0/16")
	fs.IntVar(&cfg.NodeCIDRBits, "node-cidr-bits", 24, "prefix length of each node's pod CIDR")
	fs.StringVar(&cfg.GossipListen, "gossip-listen", "", "gossip address IP:PORT on this node (with --cluster-cidr), e.g. 10.0.0.5:7946")
	fs.StringVar(&cfg.GossipKeyFile, "gossip-key", "", "file with the 32-byte gossip encryption key, base64 (herdctl gossip-key)")
	fs.BoolVar(&cfg.GossipAllowUnsigned, "gossip-allow-unsigned", false, "accept unsigned entries and objects from members of an earlier herd version (only while upgrading a cluster; members of this version always sign)")
	fs.StringVar(&cfg.SecretChecksumKeyFile, "secret-checksum-key", "", "file with the 32-byte key of secret checksums, base64, the same on every member (default: the --gossip-key file; give a copy of it before the gossip key changes, so checksums do not)")
	fs.Var(&join, "join", "gossip address of a member to join (repeatable)")
	fs.StringVar(&cfg.ServiceCIDR, "service-cidr", "10.96.0.0/16", "range of service cluster IPs (with --cluster-cidr; must not overlap it)")
	fs.StringVar(&cfg.ClusterDomain, "cluster-domain", "cluster.local", "DNS domain of services: <service>.<namespace>.svc.<domain>")
	fs.Var(&dnsUpstreams, "dns-upstream", "resolver IP:PORT for names outside the cluster domain (repeatable; default: /etc/resolv.conf)")
	fs.DurationVar(&cfg.SecretResync, "secret-resync", 30*time.Second, "how often secret holders check that every matching member holds the current version")
	fs.BoolVar(&cfg.NewKEK, "new-kek", false, "start although the key-encryption key under <state-dir>/keys is missing or broken: create a new one, discard the secrets it can no longer decrypt and fetch them again from the other members (use once; restoring the key from a backup loses nothing)")
	fs.DurationVar(&cfg.ServiceResync, "service-resync", time.Minute, "how often service rules are rewritten in full (repairs changes made behind herd's back)")
	fs.StringVar(&cfg.NestedKubeconfig, "nested-kubeconfig", "", "kubeconfig of a host cluster running KubeVirt: enables nested Kubernetes clusters (empty: disabled)")
	fs.Var(&nestedCIDRs, "nested-host-cidrs", "the host cluster's pod, service and node ranges, comma-separated or repeated: nested clusters' ranges may not overlap them")
	fs.StringVar(&cfg.NestedNamespacePrefix, "nested-namespace-prefix", "herd", "prefix of nested clusters' host namespaces: <prefix>-<node>-<cluster>")
	fs.StringVar(&cfg.NestedNodeAddress, "nested-node-address", "", "host address of NodePort endpoints of nested clusters (default: a host node's address)")
	fs.StringVar(&cfg.NodeIP, "node-ip", "", "address peers route this node's pods through (default: the gossip address)")
	fs.Var(&cniDirs, "cni-bin-dir", "directory with CNI plugins (repeatable; default /usr/lib/cni and /opt/cni/bin)")
	fs.StringVar(&cfg.ReservedCPU, "reserved-cpu", "", "CPU reserved for the system, e.g. 250m")
	fs.StringVar(&cfg.ReservedMemory, "reserved-memory", "", "memory reserved for the system, e.g. 512Mi")
	fs.IntVar(&cfg.MaxPods, "max-pods", 250, "most pods this node holds, terminating ones included (0: no limit)")
	fs.StringVar(&logMax, "container-log-max-size", "10Mi", "size cap of each container's log")
	fs.DurationVar(&cfg.BackoffBase, "restart-backoff", 10*time.Second, "first crash-restart delay; doubles up to --restart-backoff-max")
	fs.DurationVar(&cfg.BackoffMax, "restart-backoff-max", 5*time.Minute, "longest crash-restart delay")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&cmd.ShowVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cmd, err
	}
	if fs.NArg() > 0 {
		return cmd, fmt.Errorf("unexpected argument %q: agentd takes only flags", fs.Arg(0))
	}
	if configFile != "" {
		onCommandLine := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
		if err := applyConfigFile(fs, configFile, onCommandLine); err != nil {
			return cmd, err
		}
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
	n, err := spec.ParseMemory(logMax)
	if err != nil {
		return cmd, fmt.Errorf("--container-log-max-size: %w", err)
	}
	cfg.LogMaxBytes = n
	if err := cmd.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return cmd, fmt.Errorf("--log-level: %w", err)
	}
	return cmd, nil
}

// notInConfigFile are flags that make no sense as settings of the file.
var notInConfigFile = map[string]bool{"config": true, "version": true}

// applyConfigFile sets, from the YAML file at path, every flag the command
// line did not set. It reports every bad key at once, each with the file's
// name, and never a value of a string setting: those may be PEM keys.
func applyConfigFile(fs *flag.FlagSet, path string, onCommandLine map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	// Strict: a key given twice is a mistake, not "the last one wins".
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var settings map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber() // 24 stays "24", not 24.0
	if err := dec.Decode(&settings); err != nil {
		return fmt.Errorf("config file %s: want a mapping of flag names to values, e.g. \"state-dir: /var/lib/herd\"", path)
	}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if err := applySetting(fs, key, settings[key], onCommandLine[key]); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// applySetting sets flag key from the file's value v, unless the command
// line set it already.
func applySetting(fs *flag.FlagSet, key string, v any, onCommandLine bool) error {
	f := fs.Lookup(key)
	if f == nil || notInConfigFile[key] {
		hint := ""
		if alt := strings.ReplaceAll(key, "_", "-"); alt != key && fs.Lookup(alt) != nil {
			hint = fmt.Sprintf(" (did you mean %q?)", alt)
		}
		return fmt.Errorf("unknown key %q%s: keys are agentd's flag names, e.g. state-dir", key, hint)
	}
	values, err := settingValues(f, v)
	if err != nil {
		return fmt.Errorf("key %q: %w", key, err)
	}
	if onCommandLine {
		return nil
	}
	for _, s := range values {
		if err := fs.Set(key, s); err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
	}
	return nil
}

// settingValues turns a value of the file into what the flag's Set takes,
// checking its type against the flag's.
func settingValues(f *flag.Flag, v any) ([]string, error) {
	var kind any
	if g, ok := f.Value.(flag.Getter); ok {
		kind = g.Get()
	}
	if v == nil {
		return nil, errors.New(`has no value (write "" for an empty string)`)
	}
	switch kind.(type) {
	case bool:
		if b, ok := v.(bool); ok {
			return []string{fmt.Sprint(b)}, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", typeOf(v))
	case int:
		if n, ok := v.(json.Number); ok {
			if _, err := n.Int64(); err == nil {
				return []string{n.String()}, nil
			}
			return nil, fmt.Errorf("want an integer, got %s", n)
		}
		return nil, fmt.Errorf("want an integer, got %s", typeOf(v))
	case time.Duration:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration with its unit such as 30s or 5m, got %s", typeOf(v))
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("want a duration such as 30s or 5m: %w", err)
		}
		return []string{s}, nil
	case []string:
		list, ok := v.([]any)
		if !ok {
			if _, ok := scalar(v); !ok {
				return nil, fmt.Errorf("want a list of strings, got %s", typeOf(v))
			}
			list = []any{v} // one value: the flag given once
		}
		out := make([]string, 0, len(list))
		for i, e := range list {
			s, ok := scalar(e)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, got %s at index %d", typeOf(e), i)
			}
			out = append(out, s)
		}
		return out, nil
	default: // string flags
		s, ok := scalar(v)
		if !ok {
			if _, isBool := v.(bool); isBool {
				return nil, errors.New("want a string, got a boolean (YAML reads unquoted true, false, yes, no, on and off as booleans: quote the value)")
			}
			return nil, fmt.Errorf("want a string, got %s", typeOf(v))
		}
		return []string{s}, nil
	}
}

// scalar is a string or number of the file as text.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// typeOf names the YAML type of a decoded value.
func typeOf(v any) string {
	switch v.(type) {
	case nil:
		return "no value"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
