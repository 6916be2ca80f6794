package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
)

// kindLabels is the internal per-node entry kind holding a node's labels:
// key labelsKey, value the JSON object of its labels. An entry rather than
// node metadata because metadata is limited to 512 bytes in all; an entry
// because labels must vanish with their node.
const (
	kindLabels = "_labels"
	labelsKey  = "labels"
)

// SetLabels publishes this node's labels to every member (as a per-node
// entry, so they vanish with the node); Member.Labels carries them. An empty
// or nil map clears them. Every member emits EventMember for this node when
// they change.
func (c *Cluster) SetLabels(labels map[string]string) error {
	for k := range labels {
		if k == "" {
			return errors.New("cluster: label keys must not be empty")
		}
	}
	if len(labels) == 0 {
		return c.publish(kindLabels, labelsKey, nil, true)
	}
	b, err := json.Marshal(labels) // keys sorted: unchanged labels are not republished
	if err != nil {
		return fmt.Errorf("cluster: encode labels: %w", err)
	}
	return c.publish(kindLabels, labelsKey, b, false)
}

// labelsOfLocked is a fresh copy of name's labels; nil when it has none or is
// not live (its entries are gone).
func (c *Cluster) labelsOfLocked(name string) map[string]string {
	os := c.owners[name]
	if os == nil || os.gone {
		return nil
	}
	if name != c.name {
		if ni := c.nodes[name]; ni == nil || (ni.state != StateAlive && ni.state != StateSuspect) {
			return nil
		}
	}
	e := os.entries[objKey(kindLabels, labelsKey)]
	if e == nil || e.deleted {
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(e.value, &m); err != nil {
		c.log.Warn("bad labels entry", "owner", name, "err", err)
		return nil
	}
	return m
}
