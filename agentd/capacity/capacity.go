// Package capacity is what each node publishes about its room for pods:
// allocatable resources and the requests of the pods it runs. The
// scheduler of every member reads these entries to place replicas; the
// node itself still admits or refuses each pod (it never trusts a view
// that may be a gossip round old).
package capacity

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Entry kind and key of a node's published capacity (one per node).
const (
	Kind = "capacity"
	Key  = "node"
)

// Resources are CPU in millicores and memory in bytes.
type Resources struct {
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
}

// Info is the published value.
type Info struct {
	Allocatable Resources `json:"allocatable"`
	// Requested is the sum of the requests of every pod on the node,
	// deployment replicas and herd_pods alike, terminating ones included
	// (they hold their resources until they are gone).
	Requested Resources `json:"requested"`
	Pods      int       `json:"pods"`
	// Ready is the node's readiness (containerd and the store answer).
	Ready bool `json:"ready"`
	// Volumes are the node's persistent volumes, "namespace/name", sorted:
	// the scheduler places a replica only where its volumes are.
	Volumes []string `json:"volumes,omitempty"`
	// VolumeWriters names, by "namespace/name", who writes a volume now:
	// "pod NAME", or "deployment NAMESPACE/NAME" for a replica. The
	// scheduler gives a deployment that writes a volume only a node where
	// nobody else does.
	VolumeWriters map[string]string `json:"volume_writers,omitempty"`
}

// WriterPod and WriterDeployment are VolumeWriters values.
func WriterPod(name string) string { return "pod " + name }

// WriterDeployment is the VolumeWriters value of a deployment's replica.
func WriterDeployment(key string) string { return "deployment " + key }

// Free is what is left for new pods (never negative).
func (i Info) Free() Resources {
	return Resources{
		CPUMillis:   max(i.Allocatable.CPUMillis-i.Requested.CPUMillis, 0),
		MemoryBytes: max(i.Allocatable.MemoryBytes-i.Requested.MemoryBytes, 0),
	}
}

// Encode returns the entry's value.
func (i Info) Encode() ([]byte, error) { return json.Marshal(i) }

// Decode reads an entry's value.
func Decode(b []byte) (Info, error) {
	var i Info
	if err := json.Unmarshal(b, &i); err != nil {
		return Info{}, fmt.Errorf("decode capacity: %w", err)
	}
	return i, nil
}

// Requests returns the effective requests of a pod spec (a container's
// request, else its limit), as admission and the scheduler count them.
func Requests(s *herdv1.PodSpec) Resources {
	cpu, mem := spec.PodRequests(s)
	return Resources{CPUMillis: cpu, MemoryBytes: mem}
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{CPUMillis: r.CPUMillis + o.CPUMillis, MemoryBytes: r.MemoryBytes + o.MemoryBytes}
}

// IsZero reports whether r requests nothing.
func (r Resources) IsZero() bool { return r.CPUMillis == 0 && r.MemoryBytes == 0 }

// FormatCPU writes millicores readably: "2", "1.5", "500m", "1250m".
func FormatCPU(m int64) string {
	switch {
	case m%1000 == 0:
		return strconv.FormatInt(m/1000, 10)
	case m >= 1000 && m%100 == 0:
		return strconv.FormatFloat(float64(m)/1000, 'f', 1, 64)
	default:
		return strconv.FormatInt(m, 10) + "m"
	}
}

// FormatMemory writes bytes readably, with one decimal at most: "3.5Gi",
// "512Mi", "64Ki", "100".
func FormatMemory(b int64) string {
	units := []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if b >= u.size {
			s := strconv.FormatFloat(float64(b)/float64(u.size), 'f', 1, 64)
			return strings.TrimSuffix(s, ".0") + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}
