package agent_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
)

// incarnationKind drives one kind of cluster object through its API.
type incarnationKind struct {
	kind   string
	create func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error)
	uidOf  func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error)
	del    func(ctx context.Context, n *acctest.ClusterNode, name, uid string) (bool, error)
}

// A delete that names a uid removes only that incarnation of a service,
// secret or deployment: after the object is deleted and made again under
// the same name, a delete with the old uid is refused with
// FailedPrecondition and the new one stays; with its uid, or with none, it
// goes. Objects are made through one member and deleted through the other
// (once it holds them), so the uid checked is the replicated one.
func TestDeleteUIDPreconditionKinds(t *testing.T) {
	t.Parallel()
	env := acctest.SharedEnv(t)
	c := env.NewCluster(t, acctest.ClusterOptions{
		Names:       []string{"du-a", "du-b"},
		Subnet:      netip.MustParsePrefix("10.76.0.0/24"),
		ServiceCIDR: netip.MustParsePrefix("10.104.0.0/16"),
	})
	maker, deleter := c.Nodes[0], c.Nodes[1]
	secretsOf := func(n *acctest.ClusterNode) herdv1.SecretServiceClient { return herdv1.NewSecretServiceClient(n.Conn) }
	kinds := []incarnationKind{{
		kind: "service",
		create: func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error) {
			resp, err := n.Services.ApplyService(ctx, &herdv1.ApplyServiceRequest{Spec: &herdv1.ServiceSpec{
				Name: name, Selector: map[string]string{"app": name}, Ports: []*herdv1.ServicePort{{Port: 80}},
			}})
			return resp.GetService().GetUid(), err
		},
		uidOf: func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error) {
			s, err := n.Services.GetService(ctx, &herdv1.GetServiceRequest{Name: name})
			return s.GetUid(), err
		},
		del: func(ctx context.Context, n *acctest.ClusterNode, name, uid string) (bool, error) {
			resp, err := n.Services.DeleteService(ctx, &herdv1.DeleteServiceRequest{Name: name, Uid: uid})
			return resp.GetExisted(), err
		},
	}, {
		kind: "secret",
		create: func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error) {
			resp, err := secretsOf(n).ApplySecret(ctx, &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
				Name: name, Data: map[string][]byte{"k": []byte("v")},
			}})
			return resp.GetSecret().GetUid(), err
		},
		uidOf: func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error) {
			s, err := secretsOf(n).GetSecret(ctx, &herdv1.GetSecretRequest{Name: name})
			return s.GetUid(), err
		},
		del: func(ctx context.Context, n *acctest.ClusterNode, name, uid string) (bool, error) {
			resp, err := secretsOf(n).DeleteSecret(ctx, &herdv1.DeleteSecretRequest{Name: name, Uid: uid})
			return resp.GetExisted(), err
		},
	}, {
		kind: "deployment",
		create: func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error) {
			// No replicas: the uid is what is checked, not the pods.
			resp, err := n.Deployments.ApplyDeployment(ctx, &herdv1.ApplyDeploymentRequest{Spec: &herdv1.DeploymentSpec{
				Name: name, Replicas: 0, Selector: map[string]string{"app": name},
				Template: &herdv1.PodSpec{
					Labels:     map[string]string{"app": name},
					Containers: []*herdv1.ContainerSpec{{Name: "main", Image: env.Image, Command: []string{"sleep", "3600"}}},
				},
			}})
			return resp.GetDeployment().GetUid(), err
		},
		uidOf: func(ctx context.Context, n *acctest.ClusterNode, name string) (string, error) {
			d, err := n.Deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Name: name})
			return d.GetUid(), err
		},
		del: func(ctx context.Context, n *acctest.ClusterNode, name, uid string) (bool, error) {
			resp, err := n.Deployments.DeleteDeployment(ctx, &herdv1.DeleteDeploymentRequest{Name: name, Uid: uid})
			return resp.GetExisted(), err
		},
	}}
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := "inc-" + k.kind
			create := func() string {
				t.Helper()
				uid, err := k.create(ctx, maker, name)
				if err != nil || uid == "" {
					t.Fatalf("create %s %s: uid %q, %v", k.kind, name, uid, err)
				}
				// The delete goes through the other member: wait until it
				// holds this incarnation.
				waitFor(t, 30*time.Second, deleter.Agent.Name+" holds "+k.kind+" uid "+uid, func() (bool, string) {
					got, err := k.uidOf(ctx, deleter, name)
					if err != nil {
						return false, err.Error()
					}
					return got == uid, "uid " + got
				})
				return uid
			}
			gone := func(after string) {
				t.Helper()
				if _, err := k.uidOf(ctx, deleter, name); status.Code(err) != codes.NotFound {
					t.Fatalf("after %s: get %s = %v, want NotFound", after, k.kind, err)
				}
				// The next incarnation is made through the other member:
				// once it knows of the delete (else it would update the old
				// one in place).
				waitFor(t, 30*time.Second, maker.Agent.Name+" sees the "+k.kind+" deleted", func() (bool, string) {
					_, err := k.uidOf(ctx, maker, name)
					return status.Code(err) == codes.NotFound, status.Convert(err).Message()
				})
			}

			first := create()
			if existed, err := k.del(ctx, deleter, name, first); err != nil || !existed {
				t.Fatalf("delete with the current uid: existed %v, %v", existed, err)
			}
			gone("the delete with the current uid")

			second := create()
			if second == first {
				t.Fatalf("a new incarnation kept uid %s", first)
			}
			refusals := []struct {
				why  string
				uid  string
				code codes.Code
				msg  string
			}{
				{"the old incarnation's uid", first, codes.FailedPrecondition, "replaced since you read it"},
				{"a uid longer than 64", strings.Repeat("f", 65), codes.InvalidArgument, "uid"},
			}
			for _, r := range refusals {
				existed, err := k.del(ctx, deleter, name, r.uid)
				if status.Code(err) != r.code || !strings.Contains(status.Convert(err).Message(), r.msg) {
					t.Fatalf("delete with %s: existed %v, %v; want %v mentioning %q", r.why, existed, err, r.code, r.msg)
				}
				for _, n := range []*acctest.ClusterNode{maker, deleter} {
					if got, err := k.uidOf(ctx, n, name); err != nil || got != second {
						t.Fatalf("after the delete with %s, %s has uid %q (%v), want %s kept", r.why, n.Agent.Name, got, err, second)
					}
				}
			}

			if existed, err := k.del(ctx, deleter, name, ""); err != nil || !existed {
				t.Fatalf("delete without a uid: existed %v, %v", existed, err)
			}
			gone("the delete without a uid")
			if existed, err := k.del(ctx, deleter, name, ""); err != nil || existed {
				t.Fatalf("second delete: existed %v, %v; want false, nil", existed, err)
			}
		})
	}
}
