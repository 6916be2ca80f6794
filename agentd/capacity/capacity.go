// Package capacity is what each node publishes about its room for pods:
// allocatable resources and the requests of the pods it runs. The
// scheduler of every member reads these entries to place replicas; the
// node itself still admits or refuses each pod (it never trusts a view
// that may be a gossip round old).
package capacity

import (
	"encoding/json"
	"fmt"
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
}

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
