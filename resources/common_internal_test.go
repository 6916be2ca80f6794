package resources

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestHasReason(t *testing.T) {
	withInfo := func(domain, reason string) error {
		st, err := status.New(codes.FailedPrecondition, "pod web: secret db: not held here").
			WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"agentd's reason", withInfo(herdv1.ErrorDomain, herdv1.ReasonSecretNotAvailable), true},
		{"another reason", withInfo(herdv1.ErrorDomain, "OTHER"), false},
		{"another domain", withInfo("example.com", herdv1.ReasonSecretNotAvailable), false},
		// The words alone do not make the reason.
		{"message only", status.Error(codes.FailedPrecondition, "secret db not available"), false},
		{"not from gRPC", errors.New("secret"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hasReason(tt.err, herdv1.ReasonSecretNotAvailable); got != tt.want {
				t.Errorf("hasReason = %v, want %v", got, tt.want)
			}
		})
	}
}
