package pki

import (
	"crypto/x509"
	"testing"
)

func TestIsNode(t *testing.T) {
	ca := newTestCA(t)
	issue := func(f func() ([]byte, []byte, error)) *x509.Certificate {
		t.Helper()
		certPEM, _, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return parseLeaf(t, certPEM)
	}
	for _, tt := range []struct {
		name string
		cert *x509.Certificate
		want bool
	}{
		{"node", issue(func() ([]byte, []byte, error) { return ca.IssueNode("node-1", nil, nil) }), true},
		{"admin client", issue(func() ([]byte, []byte, error) { return ca.IssueClient("alice", true) }), false},
		{"client", issue(func() ([]byte, []byte, error) { return ca.IssueClient("terraform", false) }), false},
		{"server only", issue(func() ([]byte, []byte, error) {
			return ca.Issue("web", WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
		}), false},
		{"the CA", ca.Cert, false},
		{"nil", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsNode(tt.cert); got != tt.want {
				t.Errorf("IsNode = %v, want %v", got, tt.want)
			}
		})
	}
}
