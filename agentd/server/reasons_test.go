package server

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

type reasonErr struct{}

func (reasonErr) Error() string       { return "no secret here" }
func (reasonErr) ErrorReason() string { return herdv1.ReasonSecretNotAvailable }

func TestWithReason(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string // "" for no ErrorInfo
	}{
		{"reasoner", reasonErr{}, herdv1.ReasonSecretNotAvailable},
		{"wrapped reasoner", fmt.Errorf("pod web: %w", reasonErr{}), herdv1.ReasonSecretNotAvailable},
		{"plain error", errors.New("boom"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := withReason(status.New(codes.FailedPrecondition, tt.err.Error()), tt.err)
			if st.Code() != codes.FailedPrecondition || st.Message() != tt.err.Error() {
				t.Fatalf("status %v %q, want FailedPrecondition %q", st.Code(), st.Message(), tt.err.Error())
			}
			var got []string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					if info.GetDomain() != herdv1.ErrorDomain {
						t.Errorf("domain %q, want %q", info.GetDomain(), herdv1.ErrorDomain)
					}
					got = append(got, info.GetReason())
				}
			}
			switch {
			case tt.reason == "" && len(got) != 0:
				t.Errorf("reasons %v, want none", got)
			case tt.reason != "" && (len(got) != 1 || got[0] != tt.reason):
				t.Errorf("reasons %v, want [%s]", got, tt.reason)
			}
		})
	}
}
