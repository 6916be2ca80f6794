package agent

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// A server built with serverOptions refuses a request over the cap with
// ResourceExhausted and answers one under it.
func TestServerOptionsRequestSizeCap(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(serverOptions(Config{})...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	client := healthpb.NewHealthClient(cc)

	cases := []struct {
		name    string
		service string
		want    codes.Code
	}{
		// The health server knows only "" (the whole server).
		{"normal request", "", codes.OK},
		{"under the cap", strings.Repeat("s", maxRecvMsgBytes-16), codes.NotFound},
		{"over the cap", strings.Repeat("s", maxRecvMsgBytes+1), codes.ResourceExhausted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: tc.service})
			if got := status.Code(err); got != tc.want {
				t.Fatalf("Check of a %d-byte request: code %s (%v), want %s", len(tc.service), got, err, tc.want)
			}
			if tc.want == codes.OK && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check = %s, want SERVING", resp.GetStatus())
			}
		})
	}
}

// The largest valid ApplySecret request fits under the cap: 1 MiB of keys
// and values spent on as many keys as possible (all keys of 1 to 3
// characters, then 4-character ones), each with an empty value, which
// maximizes protobuf's per-entry overhead.
func TestMaxRecvMsgCoversLargestSecret(t *testing.T) {
	t.Parallel()
	const alphabet = "-._abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	data := map[string][]byte{}
	budget := spec.MaxSecretBytes
	var keys func(prefix string, n int) bool
	keys = func(prefix string, n int) bool {
		if n == 0 {
			if prefix == "." || prefix == ".." {
				return true
			}
			if budget < len(prefix) {
				return false
			}
			data[prefix] = []byte{}
			budget -= len(prefix)
			return true
		}
		for _, c := range alphabet {
			if !keys(prefix+string(c), n-1) {
				return false
			}
		}
		return true
	}
	for n := 1; budget > 0 && n <= 4; n++ {
		keys("", n)
	}
	labels := map[string]string{}
	for i := range 64 {
		labels[strings.Repeat("k", 60)+string(alphabet[i])] = strings.Repeat("v", 63)
	}
	req := &herdv1.ApplySecretRequest{Spec: &herdv1.SecretSpec{
		Namespace:    strings.Repeat("n", 63),
		Name:         strings.Repeat("s", 63),
		Type:         "registry",
		Data:         data,
		NodeSelector: labels,
		Immutable:    true,
	}, DryRun: true}
	if errs := spec.ValidateSecretData(spec.Path{}, data); len(errs) > 0 {
		t.Fatalf("the test's secret is not valid: %v", errs)
	}
	if n := proto.Size(req); n > maxRecvMsgBytes {
		t.Errorf("largest valid ApplySecret request is %d bytes, over the cap of %d", n, maxRecvMsgBytes)
	} else {
		t.Logf("largest valid ApplySecret request: %d bytes of %d (%d keys)", n, maxRecvMsgBytes, len(data))
	}
}
