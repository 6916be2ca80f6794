package services

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// endpoint is what a node publishes about one of its pods.
type endpoint struct {
	Pod    string            `json:"pod"`
	IP     string            `json:"ip"`
	Ready  bool              `json:"ready"`
	Labels map[string]string `json:"labels,omitempty"`
	Ports  []endpointPort    `json:"ports,omitempty"`
	// Namespace is the pod's; absent (from an older agentd): default.
	Namespace string `json:"namespace,omitempty"`

	node string // the owner, filled when read
}

type endpointPort struct {
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
}

// endpointOf is the entry a pod publishes; ok is false when it publishes
// none (no pod IP, or finished for good).
func endpointOf(p *herdv1.Pod) (endpoint, bool) {
	st := p.GetStatus()
	if st.GetPodIp() == "" {
		return endpoint{}, false
	}
	switch st.GetPhase() {
	case "Succeeded", "Failed":
		return endpoint{}, false
	}
	e := endpoint{Pod: p.GetSpec().GetName(), IP: st.GetPodIp(), Ready: st.GetReady(), Labels: p.GetSpec().GetLabels(), Namespace: spec.PodNamespace(p.GetSpec())}
	for _, c := range p.GetSpec().GetContainers() {
		for _, cp := range c.GetPorts() {
			proto := cp.GetProtocol()
			if proto == "" {
				proto = "TCP"
			}
			e.Ports = append(e.Ports, endpointPort{Name: cp.GetName(), Port: cp.GetContainerPort(), Protocol: proto})
		}
	}
	return e, true
}

// decodeEndpoints decodes published entries, sorted by IP (so that every
// selection is too).
func decodeEndpoints(entries []cluster.Entry) []endpoint {
	out := make([]endpoint, 0, len(entries))
	for _, en := range entries {
		var e endpoint
		if err := json.Unmarshal(en.Value, &e); err != nil {
			continue
		}
		e.node = en.Owner
		e.Labels = withNamespace(e.Labels, e.Namespace)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP < out[j].IP })
	return out
}

// selectEndpoints returns the endpoints whose labels include the whole
// selector (an empty selector selects nothing: herd has no manual
// endpoints), sorted by IP. all is decodeEndpoints' result, decoded once
// per pass rather than once per service.
func selectEndpoints(all []endpoint, selector map[string]string) []endpoint {
	if len(selector) == 0 {
		return nil
	}
	var out []endpoint
	for _, e := range all {
		if matches(e.Labels, selector) {
			out = append(out, e)
		}
	}
	return out
}

// namespaceKey is a pseudo-label holding the namespace of an endpoint (in
// its decoded labels) and of a service (in its effective selector), so a
// service selects only pods of its namespace through the same label
// index. No real label key can contain a NUL byte.
const namespaceKey = "\x00namespace"

// withNamespace returns labels with the namespace pseudo-label (a copy:
// the caller's map is not changed).
func withNamespace(labels map[string]string, ns string) map[string]string {
	if ns == "" {
		ns = spec.DefaultPodNamespace
	}
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[namespaceKey] = ns
	return out
}

// selectorOf is what service s selects by: its selector and its namespace.
// An empty selector selects nothing and stays empty.
func selectorOf(s *herdv1.Service) map[string]string {
	sel := s.GetSpec().GetSelector()
	if len(sel) == 0 {
		return nil
	}
	return withNamespace(sel, s.GetSpec().GetNamespace())
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Pods is what the publisher reads pods from (agentd/pods.Manager).
type Pods interface {
	Get(ctx context.Context, name string) (*herdv1.Pod, error)
	List(ctx context.Context, selector map[string]string) ([]*herdv1.Pod, error)
}

// Publisher is where this node's endpoints go (agentd/cluster.Cluster).
type Publisher interface {
	Name() string
	PublishLocal(kind, key string, value []byte) error
	WithdrawLocal(kind, key string) error
	// EntrySeq is the sequence number of an entry as this node holds it
	// (tombstones included); see cluster.Cluster.EntrySeq.
	EntrySeq(owner, kind, key string) (uint64, bool)
}

// EndpointPublisher publishes this node's pods as endpoints: the pod
// manager calls Changed, Run publishes or withdraws the pod's entry.
type EndpointPublisher struct {
	pods Pods
	pub  Publisher
	log  *slog.Logger
	// IsNotFound tells a missing pod from a failed read.
	IsNotFound func(error) bool

	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{}
	// syncMu orders reads of a pod with the publishing of what was read,
	// so that PublishNow and Run cannot publish states out of order (an
	// older read published last would bring a drained endpoint back).
	syncMu sync.Mutex
}

// NewEndpointPublisher returns a publisher; call Run.
func NewEndpointPublisher(pods Pods, pub Publisher, isNotFound func(error) bool, log *slog.Logger) *EndpointPublisher {
	if log == nil {
		log = slog.Default()
	}
	return &EndpointPublisher{pods: pods, pub: pub, log: log, IsNotFound: isNotFound, pending: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// Changed notes that a pod changed. It never blocks (the pod manager calls
// it with its lock held).
func (p *EndpointPublisher) Changed(name string) {
	p.mu.Lock()
	p.pending[name] = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes every pod, then follows changes until ctx ends.
func (p *EndpointPublisher) Run(ctx context.Context) {
	if pods, err := p.pods.List(ctx, nil); err == nil {
		for _, pod := range pods {
			p.Changed(pod.GetSpec().GetName())
		}
	} else {
		p.log.Warn("list pods for endpoints", "err", err)
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		p.mu.Lock()
		names := p.pending
		p.pending = map[string]bool{}
		p.mu.Unlock()
		failed := false
		for name := range names {
			if err := p.sync(ctx, name); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.log.Warn("publish endpoint", "pod", name, "err", err)
				p.mu.Lock()
				p.pending[name] = true
				p.mu.Unlock()
				failed = true
			}
		}
		if failed {
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-retry.C:
		}
	}
}

// PublishNow publishes the pod's endpoint as the pod is now (a
// terminating pod: not ready) before it returns, and returns the entry's
// sequence number: once a member holds it (or a later one), that member's
// view of the endpoint reflects this change. ok is false when the pod has
// never been an endpoint here (no pod IP), so there is nothing to drain.
func (p *EndpointPublisher) PublishNow(ctx context.Context, name string) (seq uint64, ok bool, err error) {
	if err := p.sync(ctx, name); err != nil {
		return 0, false, err
	}
	seq, ok = p.pub.EntrySeq(p.pub.Name(), KindEndpoint, name)
	return seq, ok, nil
}

func (p *EndpointPublisher) sync(ctx context.Context, name string) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	pod, err := p.pods.Get(ctx, name)
	if err != nil {
		if p.IsNotFound != nil && p.IsNotFound(err) {
			return p.pub.WithdrawLocal(KindEndpoint, name)
		}
		return err
	}
	e, ok := endpointOf(pod)
	if !ok {
		return p.pub.WithdrawLocal(KindEndpoint, name)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return errors.New("encode endpoint")
	}
	return p.pub.PublishLocal(KindEndpoint, name, b)
}
