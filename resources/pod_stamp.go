package resources

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// PodReadStampKey is the private state key under which herd_pod's Read
// records that refreshing this state against this pod changed nothing.
// The provider's server answers a later refresh of the same state bytes
// against a pod with the same fingerprint with the state as it is,
// without decoding it: Read is a function of the state and the pod only.
const PodReadStampKey = "herd_read"

// PodReadStamp is the value under PodReadStampKey. Read fills Node, Name
// and Pod; the provider's server adds State, the hash of the state bytes
// as the CLI sent them (only it sees them), and Build.
type PodReadStamp struct {
	Node string `json:"node"`
	// Namespace is the one the refresh asked for ("" on import: any).
	Namespace string `json:"ns,omitempty"`
	Name      string `json:"name"`
	Pod       string `json:"pod"`
	State     string `json:"state,omitempty"`
	Build     string `json:"build,omitempty"`
}

// PodFingerprint hashes everything of a pod that herd_pod's Read puts in
// the state: its uid, its spec and the status attributes (computed with
// the same code as Read, so a status field Read starts using is covered).
func PodFingerprint(pod *herdv1.Pod) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(pod.GetUid()))
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pod.GetSpec())
	if err != nil {
		return "" // never matches a stamp
	}
	field(b)
	var m podModel
	m.setStatus(pod)
	for _, v := range []interface{ String() string }{m.UID, m.Phase, m.StartTime, m.RestartCount, m.PodIP, m.Ready, m.QoSClass, m.ContainerStatus} {
		field([]byte(v.String()))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// stampRead records which pod a refresh saw. The provider's server keeps
// the stamp only when the refresh changed nothing (it compares the state
// bytes it sent and received) and drops it otherwise.
func stampRead(ctx context.Context, resp *resource.ReadResponse, node, namespace, name string, pod *herdv1.Pod) {
	if resp.Private == nil {
		return
	}
	value, err := json.Marshal(PodReadStamp{Node: node, Namespace: namespace, Name: name, Pod: PodFingerprint(pod)})
	if err != nil {
		return
	}
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, PodReadStampKey, value)...)
}
