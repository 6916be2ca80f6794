package resources

import (
	"context"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// podReader is what the provider's client pool adds to Clients for
// herd_pod's Read: the pod as the node's pod list reports it, one list per
// node for all the pods a plan refreshes, and never older than this
// provider's own last write (provider.Pool.ReadPod).
type podReader interface {
	ReadPod(ctx context.Context, nodeID, namespace, name string) (*herdv1.Pod, error)
}

// readPod returns the pod a refresh sees, or a NotFound error (a pod of
// another namespace is not found): through the pool's pod lists when the
// Clients have them, else with GetPod. An empty namespace means any.
func readPod(ctx context.Context, c Clients, pc herdv1.PodServiceClient, nodeID, namespace, name string) (*herdv1.Pod, error) {
	if r, ok := c.(podReader); ok {
		return r.ReadPod(ctx, nodeID, namespace, name)
	}
	return pc.GetPod(ctx, &herdv1.GetPodRequest{Name: name, Namespace: namespace})
}
