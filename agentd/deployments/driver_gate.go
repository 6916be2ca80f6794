package deployments

import (
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Getter reads replicated objects (agentd/cluster.Cluster).
type Getter interface {
	Get(kind, key string) (cluster.Object, bool)
}

// ServingGate returns the services controller's gate: an endpoint
// labelled as a replica of a BlueGreen deployment whose status names a
// serving revision is admitted only when it is of that revision; every
// other endpoint is admitted. Decoded objects are cached by version.
func ServingGate(g Getter) *Gate {
	return &Gate{g: g, cache: map[string]gateEntry{}}
}

// Gate is ServingGate's result (services.Gate).
type Gate struct {
	g     Getter
	mu    sync.Mutex
	cache map[string]gateEntry
}

// Affected: a change of a deployment's record or status may change which
// of its replicas are admitted.
func (s *Gate) Affected(ev cluster.Event) map[string]string {
	if ev.Type != cluster.EventObject || (ev.Kind != kindRecord && ev.Kind != kindStatusObj) {
		return nil
	}
	ns, name, ok := strings.Cut(ev.Key, "/")
	if !ok {
		return nil
	}
	return map[string]string{spec.LabelDeployment: ns + "." + name}
}

type gateEntry struct {
	recVersion, stVersion uint64
	serving               int64 // 0: admit every revision
}

// Admit reports whether an endpoint with these labels may be a backend.
func (s *Gate) Admit(labels map[string]string) bool {
	d, ok := labels[spec.LabelDeployment]
	if !ok {
		return true
	}
	// namespaces are RFC 1123 labels: the first dot ends the namespace
	ns, name, ok := strings.Cut(d, ".")
	if !ok {
		return true
	}
	serving := s.serving(ns + "/" + name)
	return serving == 0 || labels[spec.LabelRevision] == strconv.FormatInt(serving, 10)
}

func (s *Gate) serving(key string) int64 {
	ro, ok := s.g.Get(kindRecord, key)
	if !ok {
		return 0
	}
	so, ok := s.g.Get(kindStatusObj, key)
	if !ok {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.cache[key]; ok && e.recVersion == ro.Version && e.stVersion == so.Version {
		return e.serving
	}
	e := gateEntry{recVersion: ro.Version, stVersion: so.Version}
	rec, st := &herdv1.DeploymentRecord{}, &herdv1.DeploymentStatus{}
	if proto.Unmarshal(ro.Value, rec) == nil && proto.Unmarshal(so.Value, st) == nil &&
		rec.GetDeployment().GetSpec().GetStrategy().GetType() == spec.StrategyBlueGreen {
		e.serving = st.GetServingRevision()
	}
	if len(s.cache) > 4096 {
		clear(s.cache)
	}
	s.cache[key] = e
	return e.serving
}
