package nodeclient

import (
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestHandshakeRecorderAnnotate(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "connection error")
	unknownCA := &net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}
	untrusted := x509.UnknownAuthorityError{}
	tests := []struct {
		name      string
		last      error
		err       error
		handshake bool
		alert     bool
		x509      bool
	}{
		{"no TLS failure", nil, unavailable, false, false, false},
		{"node refused the client", unknownCA, unavailable, true, true, false},
		{"untrusted node", untrusted, unavailable, true, false, true},
		{"not unavailable", untrusted, status.Error(codes.NotFound, "no pod"), false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &handshakeRecorder{}
			r.set(tt.last)
			got := r.annotate(tt.err)
			if status.Code(got) != status.Code(tt.err) || status.Convert(got).Message() != status.Convert(tt.err).Message() {
				t.Fatalf("annotate changed the status: %v", got)
			}
			var hs *HandshakeError
			if errors.As(got, &hs) != tt.handshake {
				t.Errorf("HandshakeError: %v, want %v", errors.As(got, &hs), tt.handshake)
			}
			if IsRemoteAlert(got) != tt.alert {
				t.Errorf("IsRemoteAlert: %v, want %v", IsRemoteAlert(got), tt.alert)
			}
			var ua x509.UnknownAuthorityError
			if errors.As(got, &ua) != tt.x509 {
				t.Errorf("x509.UnknownAuthorityError: %v, want %v", errors.As(got, &ua), tt.x509)
			}
		})
	}
}
