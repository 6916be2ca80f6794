package cluster

import (
	"net/netip"
	"sync"
)

// Persister stores the node's cluster state (its pod CIDR claim, Lamport clock
// and the replicated objects) so they survive a restart. Load returns nil, nil
// when nothing was saved yet. Save replaces what was saved before.
type Persister interface {
	Load() ([]byte, error)
	Save([]byte) error
}

// MemPersister is an in-memory Persister for tests.
type MemPersister struct {
	mu sync.Mutex
	b  []byte
}

// Load returns a copy of the last saved bytes.
func (p *MemPersister) Load() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b == nil {
		return nil, nil
	}
	return append([]byte(nil), p.b...), nil
}

// Save keeps a copy of b.
func (p *MemPersister) Save(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.b = append([]byte(nil), b...)
	return nil
}

// MemberState is a member's health as seen by this node.
type MemberState string

// Member states.
const (
	StateAlive   MemberState = "alive"
	StateSuspect MemberState = "suspect"
	StateDead    MemberState = "dead"
	StateLeft    MemberState = "left"
)

// Member is one node of the cluster as seen by this node.
type Member struct {
	Name    string
	Addr    netip.AddrPort // gossip address
	NodeIP  netip.Addr
	PodCIDR netip.Prefix
	State   MemberState
	// Labels are the labels the member published with SetLabels; nil when
	// it published none or is not live (dead or left members keep being
	// listed for a while, without labels).
	Labels map[string]string
}

// Object is a cluster-scoped replicated object. Version is a Lamport
// timestamp; concurrent writes are ordered by (Version, Writer).
type Object struct {
	Kind    string
	Key     string
	Value   []byte
	Version uint64
	Writer  string
}

// Entry is a per-node published entry (an endpoint, say). It exists only
// while its owner is a live member.
type Entry struct {
	Owner string
	Kind  string
	Key   string
	Value []byte
}

// EventType says what an Event is about.
type EventType int

// Event types.
const (
	EventObject EventType = iota + 1 // an object was written or deleted: Kind, Key
	EventEntry                       // an entry was published, withdrawn or dropped: Node (owner), Kind, Key
	EventMember                      // a member joined, changed (pod CIDR, labels), failed or left: Node
)

func (t EventType) String() string {
	switch t {
	case EventObject:
		return "object"
	case EventEntry:
		return "entry"
	case EventMember:
		return "member"
	}
	return "unknown"
}

// Event tells a subscriber that something changed; read the current value
// with Get, Entries or Members. Identical pending events are coalesced.
// A change of a member's labels (SetLabels, or the member's death or leave)
// is an EventMember for it, never an EventEntry of the internal labels kind.
type Event struct {
	Type EventType
	Kind string
	Key  string
	Node string
}

// wire formats

type wireObject struct {
	Kind    string `json:"k"`
	Key     string `json:"key"`
	Value   []byte `json:"v,omitempty"`
	Version uint64 `json:"ver"`
	Writer  string `json:"w"`
	Deleted bool   `json:"d,omitempty"`
	// FP names the certificate whose key made Sig (sign.go).
	FP  []byte `json:"fp,omitempty"`
	Sig []byte `json:"sig,omitempty"`
}

type wireEntry struct {
	Owner   string `json:"o"`
	Epoch   int64  `json:"ep"`
	Seq     uint64 `json:"s"`
	Kind    string `json:"k"`
	Key     string `json:"key"`
	Value   []byte `json:"v,omitempty"`
	Deleted bool   `json:"d,omitempty"`
	FP      []byte `json:"fp,omitempty"`
	Sig     []byte `json:"sig,omitempty"`
}

// have reports that Node holds Version of an object.
type have struct {
	Node    string `json:"n"`
	Kind    string `json:"k"`
	Key     string `json:"key"`
	Version uint64 `json:"ver"`
}

// envelope is every gossip message (calls are framed apart, see call.go):
// gossip broadcasts carry one item; the push/pull
// full state carries From, Objects (tombstones included) and Entries.
type envelope struct {
	From    string       `json:"f,omitempty"`
	Full    bool         `json:"full,omitempty"`
	Objects []wireObject `json:"o,omitempty"`
	Entries []wireEntry  `json:"e,omitempty"`
	Have    []have       `json:"h,omitempty"`
	Leaving string       `json:"leaving,omitempty"` // this node is about to leave
	// Certs are node certificates (DER) that sign the items, or that
	// their sender starts signing with.
	Certs [][]byte `json:"c,omitempty"`
}

type nodeMeta struct {
	NodeIP  string `json:"ip,omitempty"`
	PodCIDR string `json:"cidr,omitempty"`
	Epoch   int64  `json:"ep"`
	Digest  uint64 `json:"dg"`
	Count   int    `json:"n"`
}

type persisted struct {
	PodCIDR string            `json:"pod_cidr,omitempty"`
	Clock   uint64            `json:"clock"`
	SavedAt int64             `json:"saved_at"`
	Objects []persistedObject `json:"objects,omitempty"`
	// Certs sign the objects (their writers may be gone).
	Certs [][]byte `json:"certs,omitempty"`
}

type persistedObject struct {
	wireObject
	DeletedAt int64 `json:"deleted_at,omitempty"`
}
