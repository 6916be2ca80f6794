package server

import (
	"context"
	"errors"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/pki"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Secrets is the node's secret replicator; nil when the node runs without
// a cluster.
type Secrets interface {
	Apply(ctx context.Context, s secrets.Spec, dryRun bool) (secrets.View, bool, []secrets.PodRef, error)
	Get(ctx context.Context, namespace, name string) (secrets.View, error)
	List(ctx context.Context, namespace string) ([]secrets.View, error)
	Delete(ctx context.Context, namespace, name, uid string) (bool, error)
	Reveal(ctx context.Context, namespace, name string) (secrets.Record, map[string][]byte, error)
	// Why says why this node does not hold a secret; notFound when it
	// exists nowhere.
	Why(ctx context.Context, namespace, name string) (reason string, notFound bool)
	// RotateKey makes a new key-encryption key current and re-wraps.
	RotateKey(ctx context.Context) (keyID string, rewrapped int, err error)
}

// SetSecrets gives the server the secret replicator.
func (s *Server) SetSecrets(sec Secrets) { s.secrets = sec }

// secretsServer implements SecretService. It is a type of its own so that
// the admin check can be an interceptor-free guard in every method.
type secretsServer struct {
	herdv1.UnimplementedSecretServiceServer
	s *Server
}

func (s *Server) registerSecrets(g *grpc.Server) {
	herdv1.RegisterSecretServiceServer(g, &secretsServer{s: s})
}

// requireAdmin refuses callers without an admin client certificate. The
// local socket (mode 0600, root only) counts as admin: it carries no
// certificate, and whoever can open it can read the node's keys anyway.
func requireAdmin(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "secrets: no caller identity")
	}
	ti, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		if p.Addr != nil && p.Addr.Network() == "unix" {
			return nil
		}
		return status.Error(codes.PermissionDenied, "secrets: an admin client certificate is required")
	}
	if len(ti.State.PeerCertificates) == 0 || !pki.IsAdmin(ti.State.PeerCertificates[0]) {
		return status.Error(codes.PermissionDenied, "secrets: an admin client certificate is required (herdctl certs client NAME --admin)")
	}
	return nil
}

func (x *secretsServer) guard(ctx context.Context) error {
	if err := requireAdmin(ctx); err != nil {
		return err
	}
	if x.s.secrets == nil {
		return status.Error(codes.FailedPrecondition, "this node runs without a cluster: secrets need agentd started with --cluster-cidr, --gossip-listen and --gossip-key")
	}
	return nil
}

func checkSecretName(namespace, name string) error {
	return checkServiceName(namespace, name)
}

func (x *secretsServer) ApplySecret(ctx context.Context, req *herdv1.ApplySecretRequest) (*herdv1.ApplySecretResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	sp := req.GetSpec()
	if sp == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: required")
	}
	if errs := spec.ValidateSecretSpec(sp); len(errs) > 0 {
		return nil, invalid(prefix(errs, "spec"))
	}
	in := secrets.Spec{
		Namespace: sp.GetNamespace(), Name: sp.GetName(),
		Type:      spec.DefaultSecretType(sp.GetType()),
		Data:      sp.GetData(),
		Selector:  sp.GetNodeSelector(),
		Immutable: sp.GetImmutable(),
	}
	if in.Namespace == "" {
		in.Namespace = "default"
	}
	v, changed, restarted, err := x.s.secrets.Apply(ctx, in, req.GetDryRun())
	if err != nil {
		return nil, x.s.status(err, "apply secret "+secrets.SecretKey(in.Namespace, in.Name))
	}
	if changed && !req.GetDryRun() {
		x.s.log.Info("secret applied", "secret", v.Rec.Key(), "version", v.Rec.Version, "holders", len(v.Holders), "restarted", len(restarted))
	}
	out := &herdv1.ApplySecretResponse{Secret: secretPB(v), Changed: changed}
	for _, p := range restarted {
		out.RestartedPods = append(out.RestartedPods, &herdv1.PodRef{Node: p.Node, Pod: p.Pod})
	}
	return out, nil
}

func (x *secretsServer) GetSecret(ctx context.Context, req *herdv1.GetSecretRequest) (*herdv1.Secret, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	if err := checkSecretName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	v, err := x.s.secrets.Get(ctx, req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, x.s.status(err, "get secret "+secrets.SecretKey(req.GetNamespace(), req.GetName()))
	}
	return secretPB(v), nil
}

func (x *secretsServer) ListSecrets(ctx context.Context, req *herdv1.ListSecretsRequest) (*herdv1.ListSecretsResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	if ns := req.GetNamespace(); ns != "" {
		if err := checkName("namespace", ns); err != nil {
			return nil, err
		}
	}
	vs, err := x.s.secrets.List(ctx, req.GetNamespace())
	if err != nil {
		return nil, x.s.status(err, "list secrets")
	}
	out := &herdv1.ListSecretsResponse{}
	for _, v := range vs {
		out.Secrets = append(out.Secrets, secretPB(v))
	}
	return out, nil
}

func (x *secretsServer) DeleteSecret(ctx context.Context, req *herdv1.DeleteSecretRequest) (*herdv1.DeleteSecretResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	if err := checkSecretName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	if err := checkDeleteUID(req.GetUid()); err != nil {
		return nil, err
	}
	existed, err := x.s.secrets.Delete(ctx, req.GetNamespace(), req.GetName(), req.GetUid())
	if errors.Is(err, spec.ErrOtherIncarnation) {
		return nil, replacedStatus("delete secret "+secrets.SecretKey(req.GetNamespace(), req.GetName()), err)
	}
	if err != nil {
		return nil, x.s.status(err, "delete secret "+secrets.SecretKey(req.GetNamespace(), req.GetName()))
	}
	if existed {
		x.s.log.Info("secret deleted", "secret", secrets.SecretKey(req.GetNamespace(), req.GetName()))
	}
	return &herdv1.DeleteSecretResponse{Existed: existed}, nil
}

func (x *secretsServer) RevealSecret(ctx context.Context, req *herdv1.RevealSecretRequest) (*herdv1.RevealSecretResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	if err := checkSecretName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	key := secrets.SecretKey(req.GetNamespace(), req.GetName())
	rec, data, err := x.s.secrets.Reveal(ctx, req.GetNamespace(), req.GetName())
	if err != nil {
		why, notFound := x.s.secrets.Why(ctx, req.GetNamespace(), req.GetName())
		switch {
		case notFound:
			return nil, status.Errorf(codes.NotFound, "reveal secret %s: %s", key, why)
		case why != "":
			return nil, status.Errorf(codes.FailedPrecondition, "reveal secret %s: %s (ask a node that holds it)", key, why)
		}
		return nil, x.s.status(err, "reveal secret "+key)
	}
	// Audit: who read which secret (never what).
	x.s.log.Info("secret revealed", "secret", key, "caller", CallerName(ctx))
	return &herdv1.RevealSecretResponse{Secret: secretPB(secrets.View{Rec: rec}), Data: data}, nil
}

func (x *secretsServer) RotateKey(ctx context.Context, _ *herdv1.RotateKeyRequest) (*herdv1.RotateKeyResponse, error) {
	if err := x.guard(ctx); err != nil {
		return nil, err
	}
	id, n, err := x.s.secrets.RotateKey(ctx)
	if err != nil {
		return nil, x.s.status(err, "rotate key")
	}
	x.s.log.Info("key-encryption key rotated", "key_id", id, "rewrapped", n)
	return &herdv1.RotateKeyResponse{KeyId: id, Rewrapped: int32(n)}, nil
}

// CallerName is the caller's certificate name, or "local" over the socket.
func CallerName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return ti.State.PeerCertificates[0].Subject.CommonName
	}
	return "local"
}

func secretPB(v secrets.View) *herdv1.Secret {
	r := v.Rec
	out := &herdv1.Secret{
		Meta: &herdv1.SecretMeta{
			Namespace: r.Namespace, Name: r.Name, Type: r.Type,
			NodeSelector: r.Selector, Immutable: r.Immutable,
			Keys: slices.Clone(r.Keys),
		},
		Status: &herdv1.SecretStatus{Version: r.Version, Checksum: r.Checksum, Synced: v.Synced},
		Uid:    r.UID,
	}
	if !r.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(r.CreatedAt)
	}
	if !r.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(r.UpdatedAt)
	}
	for _, node := range slices.Sorted(maps.Keys(v.Holders)) {
		out.Status.Members = append(out.Status.Members, &herdv1.MemberVersion{Node: node, Version: v.Holders[node]})
	}
	return out
}
