package tests

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// The bridged provider in process, against one real agentd: configure,
// check (including a refusal at check time, as at plan time in Terraform),
// create a node and a pod, read, a diff that replaces the pod, an in-place
// update of the node's labels, delete; each step checked on the node.
func TestBridgedProviderPodLifecycle(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	agent := env.Agent(t, "pulumi-ip")
	conn, err := agent.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	pods := herdv1.NewPodServiceClient(conn)
	nodes := herdv1.NewNodeServiceClient(conn)
	b := newBridged(t, env.Certs)

	// herd_node: adopt the node with a label.
	nodeIn := b.check(tokNode, "n", nil, props(map[string]any{
		"name": agent.Name, "address": agent.Addr, "labels": map[string]any{"tier": "web"},
	}))
	nodeID, nodeOut := b.create(tokNode, "n", nodeIn)
	if string(nodeID) != agent.ID() {
		t.Fatalf("node id %q, want %q", nodeID, agent.ID())
	}
	n, err := nodes.GetNode(testCtx(t, time.Minute), &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n.GetLabels()["tier"] != "web" {
		t.Fatalf("node labels after create: %v", n.GetLabels())
	}

	// A bad pod name is refused by Check, with the property.
	resp, err := b.p.Check(testCtx(t, time.Minute), plugin.CheckRequest{
		URN: urn(tokPod, "bad"), Name: "bad", Type: tokens.Type(tokPod),
		News: podInputs(string(nodeID), "Bad_Name", env.Image, "sleep 3600"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) == 0 || !strings.Contains(string(resp.Failures[0].Property)+resp.Failures[0].Reason, "name") {
		t.Fatalf("check of an invalid pod name: failures %+v, want one about name", resp.Failures)
	}

	// herd_pod: create, and find it running on the node with its spec.
	podIn := b.check(tokPod, "web", nil, podInputs(string(nodeID), "web", env.Image, "sleep 3600"))
	podID, podOut := b.create(tokPod, "web", podIn)
	if want := agent.ID() + "/web"; string(podID) != want {
		t.Fatalf("pod id %q, want %q", podID, want)
	}
	p := getPod(t, pods, "web")
	if p == nil || p.GetStatus().GetPhase() != "Running" {
		t.Fatalf("pod on the node after create: %v", p)
	}
	c := p.GetSpec().GetContainers()[0]
	if c.GetImage() != env.Image || !slices.Equal(c.GetArgs(), []string{"-c", "sleep 3600"}) {
		t.Fatalf("pod spec on the node: image %q args %q", c.GetImage(), c.GetArgs())
	}
	if got := str(podOut, "phase"); got != "Running" {
		t.Fatalf("phase output %q, want Running", got)
	}
	uid := p.GetUid()
	if str(podOut, "uid") != uid {
		t.Fatalf("uid output %q, node has %q", str(podOut, "uid"), uid)
	}

	// Read reports what the node has.
	rr := b.read(tokPod, "web", podID, podIn, podOut)
	if rr.ID != podID || str(rr.Outputs, "uid") != uid {
		t.Fatalf("read: id %q uid %q, want %q %q", rr.ID, str(rr.Outputs, "uid"), podID, uid)
	}
	// No change, no diff.
	if d := b.diff(tokPod, "web", podID, podIn, rr.Outputs, podIn); d.Changes == plugin.DiffSome {
		t.Fatalf("diff without a change: %+v", d)
	}
	// A changed command replaces the pod, deleting first (as Terraform).
	newPodIn := b.check(tokPod, "web", podIn, podInputs(string(nodeID), "web", env.Image, "sleep 7200"))
	d := b.diff(tokPod, "web", podID, podIn, rr.Outputs, newPodIn)
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) == 0 || !d.DeleteBeforeReplace {
		t.Fatalf("diff of a changed command: %+v, want a replacement, delete first", d)
	}
	if !slices.Contains(d.ReplaceKeys, resource.PropertyKey("containers")) {
		t.Fatalf("replace keys %v, want containers", d.ReplaceKeys)
	}

	// herd_node labels change in place.
	newNodeIn := b.check(tokNode, "n", nodeIn, props(map[string]any{
		"name": agent.Name, "address": agent.Addr, "labels": map[string]any{"tier": "db"},
	}))
	nd := b.diff(tokNode, "n", nodeID, nodeIn, nodeOut, newNodeIn)
	if nd.Changes != plugin.DiffSome || len(nd.ReplaceKeys) != 0 {
		t.Fatalf("diff of node labels: %+v, want an in-place update", nd)
	}
	nodeOut = b.update(tokNode, "n", nodeID, nodeIn, nodeOut, newNodeIn)
	n, err = nodes.GetNode(testCtx(t, time.Minute), &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n.GetLabels()["tier"] != "db" {
		t.Fatalf("node labels after update: %v", n.GetLabels())
	}

	// Delete: the pod is gone from the node; the node's labels cleared.
	b.delete(tokPod, "web", podID, podIn, rr.Outputs)
	if p := getPod(t, pods, "web"); p != nil {
		t.Fatalf("pod still on the node after delete: %v", p)
	}
	b.delete(tokNode, "n", nodeID, newNodeIn, nodeOut)
	n, err = nodes.GetNode(testCtx(t, time.Minute), &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.GetLabels()["tier"]; ok {
		t.Fatalf("node labels after delete: %v", n.GetLabels())
	}
}

// podInputs is a one-container busybox pod running sh -c script.
func podInputs(node, name, image, script string) resource.PropertyMap {
	return props(map[string]any{
		"node": node,
		"name": name,
		"labels": map[string]any{
			"app": name,
		},
		"containers": []any{map[string]any{
			"name":     "main",
			"image":    image,
			"commands": []any{"sh"},
			"args":     []any{"-c", script},
		}},
	})
}

// getPod is the pod as the node has it, or nil when it does not exist.
func getPod(t *testing.T, pods herdv1.PodServiceClient, name string) *herdv1.Pod {
	t.Helper()
	p, err := pods.GetPod(testCtx(t, time.Minute), &herdv1.GetPodRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}
