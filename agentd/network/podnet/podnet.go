//go:build linux

// Package podnet gives every pod its own network namespace and one IP from the
// node's pod CIDR, through CNI (loopback + bridge + host-local) driven
// directly by libcni with a network configuration built in code.
//
// Each pod's namespace is a bind-mounted file, StateDir/netns/herd-<uid>. The
// runtime puts that path into the OCI spec so the pod's containers join it
// (Result.LinuxNamespace returns the entry):
//
//	oci.WithLinuxNamespace(specs.LinuxNamespace{
//		Type: specs.NetworkNamespace,
//		Path: result.NetnsPath,
//	})
//
// Order in the runtime: Setup before the pod's first container is created,
// Teardown after its last container is deleted; GC = List minus the pods the
// node should have, each passed to Teardown.
//
// The safety marker: podnet only lists, tears down or otherwise touches pod
// network state for which Setup wrote a marker file StateDir/pods/<uid>.json
// (written before anything is created, removed last); namespace files are
// named "herd-<uid>" and live in StateDir/netns. A "herd-" file without a
// marker is never touched. Routes to peer nodes (EnsureRoutes) carry the routing protocol
// RTProtHerd and only such routes are ever deleted.
package podnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
)

const (
	// NetnsPrefix is the name prefix of every netns file herd creates.
	NetnsPrefix = "herd-"
	// NetworkName is the CNI network name.
	NetworkName = "herd"
	// IfName is the pod's interface.
	IfName = "eth0"

	cniVersion = "1.0.0"
)

// DefaultPluginDirs are searched for CNI plugins when Config.PluginDirs is empty.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Config configures a PodNet.
type Config struct {
	PluginDirs []string     // default DefaultPluginDirs
	Bridge     string       // default "herd0"
	PodCIDR    netip.Prefix // this node's pod range; gateway = first address
	StateDir   string       // netns/, pods/ (markers), ipam/ (host-local), cache/ (libcni)
	HostNetns  string       // netns path holding the bridge; "" = the current one
	MTU        int          // 0 = plugin default
}

// Result is what Setup returns.
type Result struct {
	NetnsPath string     // bind-mounted netns file; put it in the OCI spec
	IP        netip.Addr // the pod's IP
	Gateway   netip.Addr // the bridge address (first address of PodCIDR)
}

// PodNet manages pod network namespaces on one node.
type PodNet struct {
	cfg     Config
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	gateway netip.Addr

	mu    sync.Mutex
	locks map[string]*uidLock
}

type uidLock struct {
	mu   sync.Mutex
	refs int
}

// marker is the safety-marker file for a pod's netns.
type marker struct {
	UID       string `json:"uid"`
	Name      string `json:"name"`
	NetnsPath string `json:"netns"`
	IP        string `json:"ip,omitempty"`
}

var uidRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func validUID(uid string) error {
	if !uidRE.MatchString(uid) {
		return fmt.Errorf("podnet: invalid pod uid %q", uid)
	}
	return nil
}

// New validates cfg, fills defaults and prepares StateDir.
func New(cfg Config) (*PodNet, error) {
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = DefaultPluginDirs
	}
	if cfg.Bridge == "" {
		cfg.Bridge = "herd0"
	}
	if len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("podnet: bridge name %q longer than 15 characters", cfg.Bridge)
	}
	if !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() {
		return nil, fmt.Errorf("podnet: pod CIDR %v must be a valid IPv4 prefix", cfg.PodCIDR)
	}
	if cfg.PodCIDR != cfg.PodCIDR.Masked() {
		return nil, fmt.Errorf("podnet: pod CIDR %v has host bits set", cfg.PodCIDR)
	}
	if cfg.PodCIDR.Bits() > 30 {
		return nil, fmt.Errorf("podnet: pod CIDR %v too small (at most /30)", cfg.PodCIDR)
	}
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("podnet: StateDir must be an absolute path")
	}
	if cfg.MTU < 0 {
		return nil, fmt.Errorf("podnet: negative MTU")
	}
	for _, d := range []string{"netns", "pods", "ipam", "cache"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("podnet: %w", err)
		}
	}
	p := &PodNet{cfg: cfg, gateway: cfg.PodCIDR.Addr().Next(), locks: map[string]*uidLock{}}
	raw, err := p.confList()
	if err != nil {
		return nil, err
	}
	p.list, err = libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("podnet: conflist: %w", err)
	}
	// An explicit Exec: libcni's lazy default is not safe for concurrent use.
	exec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	}
	p.cni = libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, filepath.Join(cfg.StateDir, "cache"), exec)
	return p, nil
}

// confList builds the CNI network configuration list.
func (p *PodNet) confList() ([]byte, error) {
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      p.cfg.Bridge,
		"isGateway":   true,
		"hairpinMode": true,
		"ipMasq":      false,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": filepath.Join(p.cfg.StateDir, "ipam"),
			"ranges": [][]map[string]any{{{
				"subnet":  p.cfg.PodCIDR.String(),
				"gateway": p.gateway.String(),
			}}},
			"routes": []map[string]any{{"dst": "0.0.0.0/0"}},
		},
	}
	if p.cfg.MTU > 0 {
		bridge["mtu"] = p.cfg.MTU
	}
	b, err := json.Marshal(map[string]any{
		"cniVersion": cniVersion,
		"name":       NetworkName,
		"plugins":    []any{map[string]any{"type": "loopback"}, bridge},
	})
	if err != nil {
		return nil, fmt.Errorf("podnet: conflist: %w", err)
	}
	return b, nil
}

// NetnsPath is where the pod's network namespace is (or would be) mounted.
func (p *PodNet) NetnsPath(podUID string) string {
	return filepath.Join(p.cfg.StateDir, "netns", NetnsPrefix+podUID)
}

func (p *PodNet) markerPath(podUID string) string {
	return filepath.Join(p.cfg.StateDir, "pods", podUID+".json")
}

func (p *PodNet) runtimeConf(podUID, netnsPath string, args [][2]string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: NetnsPrefix + podUID,
		NetNS:       netnsPath,
		IfName:      IfName,
		Args:        args,
	}
}

func (p *PodNet) lock(uid string) func() {
	p.mu.Lock()
	l := p.locks[uid]
	if l == nil {
		l = &uidLock{}
		p.locks[uid] = l
	}
	l.refs++
	p.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(p.locks, uid)
		}
		p.mu.Unlock()
	}
}

// Setup creates the pod's netns and attaches it to the node's bridge. It is
// idempotent: a second call for the same uid returns the same result, and a
// retry after a crash part-way reuses the IP the pod already held when it is
// still free. On failure nothing is left behind.
func (p *PodNet) Setup(ctx context.Context, podUID, podName string) (Result, error) {
	if err := validUID(podUID); err != nil {
		return Result{}, err
	}
	unlock := p.lock(podUID)
	defer unlock()

	nsPath := p.NetnsPath(podUID)
	rt := p.runtimeConf(podUID, nsPath, nil)

	// Fast path: everything is already in place.
	if m, err := p.readMarker(podUID); err == nil && isNetnsMount(nsPath) {
		if res, err := p.cachedResult(rt); err == nil && m.IP == res.IP.String() && p.hasAddr(nsPath, res.IP) {
			return res, nil
		}
	}

	// Remember an IP held from an earlier, interrupted attempt.
	var prevIP netip.Addr
	m, merr := p.readMarker(podUID)
	if merr == nil && m.IP != "" {
		prevIP, _ = netip.ParseAddr(m.IP)
	}
	if !prevIP.IsValid() {
		if res, err := p.cachedResult(rt); err == nil {
			prevIP = res.IP
		}
	}
	if !prevIP.IsValid() {
		prevIP = p.ipamLookup(rt.ContainerID)
	}

	// Write the marker before creating anything, so a crash leaves state that
	// List reports and Teardown cleans.
	if err := p.writeMarker(marker{UID: podUID, Name: podName, NetnsPath: nsPath}); err != nil {
		return Result{}, err
	}
	// Clear any partial state, then build from scratch.
	_, statErr := os.Lstat(nsPath)
	partial := merr == nil || statErr == nil || prevIP.IsValid()
	if partial {
		if err := p.teardown(ctx, podUID); err != nil {
			// Keep the marker: Teardown or GC retries later.
			return Result{}, fmt.Errorf("podnet: clean partial state of %s: %w", podUID, err)
		}
	}
	res, err := p.setup(ctx, podUID, nsPath, prevIP)
	if err != nil {
		cctx := context.WithoutCancel(ctx)
		if terr := p.teardown(cctx, podUID); terr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", terr))
		} else {
			p.removeMarker(podUID)
		}
		return Result{}, err
	}
	if err := p.writeMarker(marker{UID: podUID, Name: podName, NetnsPath: nsPath, IP: res.IP.String()}); err != nil {
		cctx := context.WithoutCancel(ctx)
		if terr := p.teardown(cctx, podUID); terr == nil {
			p.removeMarker(podUID)
		}
		return Result{}, err
	}
	return res, nil
}

func (p *PodNet) setup(ctx context.Context, podUID, nsPath string, prevIP netip.Addr) (Result, error) {
	if err := createNetns(nsPath); err != nil {
		return Result{}, fmt.Errorf("podnet: %w", err)
	}
	var args [][2]string
	if prevIP.IsValid() && p.cfg.PodCIDR.Contains(prevIP) {
		args = [][2]string{{"IgnoreUnknown", "1"}, {"IP", prevIP.String()}}
	}
	r, err := p.add(ctx, p.runtimeConf(podUID, nsPath, args))
	if err != nil && args != nil {
		// The old IP was taken meanwhile: take any free one.
		_ = p.del(context.WithoutCancel(ctx), p.runtimeConf(podUID, nsPath, nil))
		r, err = p.add(ctx, p.runtimeConf(podUID, nsPath, nil))
	}
	if err != nil {
		return Result{}, fmt.Errorf("podnet: CNI ADD for pod %s: %w", podUID, err)
	}
	res, err := p.toResult(r, nsPath)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

func (p *PodNet) add(ctx context.Context, rt *libcni.RuntimeConf) (types.Result, error) {
	var r types.Result
	err := inNetns(p.cfg.HostNetns, func() error {
		var err error
		r, err = p.cni.AddNetworkList(ctx, p.list, rt)
		return err
	})
	return r, err
}

func (p *PodNet) del(ctx context.Context, rt *libcni.RuntimeConf) error {
	return inNetns(p.cfg.HostNetns, func() error {
		return p.cni.DelNetworkList(ctx, p.list, rt)
	})
}

func (p *PodNet) toResult(r types.Result, nsPath string) (Result, error) {
	cur, err := types100.NewResultFromResult(r)
	if err != nil {
		return Result{}, fmt.Errorf("podnet: CNI result: %w", err)
	}
	for _, ipc := range cur.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if p.cfg.PodCIDR.Contains(a) {
			return Result{NetnsPath: nsPath, IP: a, Gateway: p.gateway}, nil
		}
	}
	return Result{}, fmt.Errorf("podnet: CNI result has no address in %v", p.cfg.PodCIDR)
}

func (p *PodNet) cachedResult(rt *libcni.RuntimeConf) (Result, error) {
	r, err := p.cni.GetNetworkListCachedResult(p.list, rt)
	if err != nil {
		return Result{}, err
	}
	if r == nil {
		return Result{}, os.ErrNotExist
	}
	return p.toResult(r, rt.NetNS)
}

// hasAddr reports whether the pod netns has ip on eth0.
func (p *PodNet) hasAddr(nsPath string, ip netip.Addr) bool {
	found := false
	_ = withNetlink(nsPath, func(h *netlink.Handle) error {
		l, err := h.LinkByName(IfName)
		if err != nil {
			return err
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if x, ok := netip.AddrFromSlice(a.IP); ok && x.Unmap() == ip {
				found = true
			}
		}
		return nil
	})
	return found
}

// ipamLookup finds the IP host-local holds for containerID, if any.
func (p *PodNet) ipamLookup(containerID string) netip.Addr {
	dir := filepath.Join(p.cfg.StateDir, "ipam", NetworkName)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return netip.Addr{}
	}
	for _, e := range ents {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]) == containerID {
			return a
		}
	}
	return netip.Addr{}
}

// Teardown runs CNI DEL (releasing the IP), then unmounts and removes the
// pod's netns. A pod without herd state is not an error.
func (p *PodNet) Teardown(ctx context.Context, podUID string) error {
	if err := validUID(podUID); err != nil {
		return err
	}
	unlock := p.lock(podUID)
	defer unlock()
	if _, err := p.readMarker(podUID); errors.Is(err, os.ErrNotExist) {
		// Not herd's (or already gone): touch nothing.
		return nil
	}
	if err := p.teardown(ctx, podUID); err != nil {
		return err
	}
	p.removeMarker(podUID)
	return nil
}

func (p *PodNet) teardown(ctx context.Context, podUID string) error {
	nsPath := p.NetnsPath(podUID)
	netnsArg := ""
	if isNetnsMount(nsPath) {
		netnsArg = nsPath
	}
	if err := p.del(ctx, p.runtimeConf(podUID, netnsArg, nil)); err != nil {
		return fmt.Errorf("podnet: CNI DEL for pod %s: %w", podUID, err)
	}
	if err := removeNetns(nsPath); err != nil {
		return fmt.Errorf("podnet: %w", err)
	}
	return nil
}

// List returns, sorted, the uids of pods with herd network state: every pod
// with herd's marker (StateDir/pods/<uid>.json). Normally that pod also has
// its netns file StateDir/netns/herd-<uid>; after a crash in the middle of
// Setup the file may be missing while an IP is still reserved, and the pod is
// listed so that GC's Teardown releases it. A "herd-" netns file without a
// marker is not herd's and is never listed.
func (p *PodNet) List() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(p.cfg.StateDir, "pods"))
	if err != nil {
		return nil, fmt.Errorf("podnet: %w", err)
	}
	var out []string
	for _, e := range ents {
		uid, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || validUID(uid) != nil || !e.Type().IsRegular() {
			continue
		}
		if _, err := p.readMarker(uid); err != nil {
			continue
		}
		out = append(out, uid)
	}
	slices.Sort(out)
	return out, nil
}

func (p *PodNet) readMarker(uid string) (marker, error) {
	var m marker
	b, err := os.ReadFile(p.markerPath(uid))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("podnet: marker %s: %w", uid, err)
	}
	if m.UID != uid {
		return m, fmt.Errorf("podnet: marker %s names uid %q", uid, m.UID)
	}
	return m, nil
}

func (p *PodNet) writeMarker(m marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := p.markerPath(m.UID)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("podnet: write marker: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("podnet: write marker: %w", err)
	}
	return nil
}

func (p *PodNet) removeMarker(uid string) {
	_ = os.Remove(p.markerPath(uid))
}
