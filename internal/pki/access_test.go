package pki

import (
	"crypto/x509"
	"reflect"
	"testing"
)

func TestClientAccessRoundTrip(t *testing.T) {
	ca, err := NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      Access
		want    Access
		wantErr bool
	}{
		{name: "admin", in: Access{Role: RoleAdmin}, want: Access{Role: RoleAdmin}},
		{name: "operator everywhere", in: Access{Role: RoleOperator}, want: Access{Role: RoleOperator}},
		{name: "operator of two", in: Access{Role: RoleOperator, Namespaces: []string{"web", "db", "web"}},
			want: Access{Role: RoleOperator, Namespaces: []string{"db", "web"}}},
		{name: "viewer with logs", in: Access{Role: RoleViewer, Namespaces: []string{"web"}, Logs: true},
			want: Access{Role: RoleViewer, Namespaces: []string{"web"}, Logs: true}},
		{name: "unknown role", in: Access{Role: "root"}, wantErr: true},
		{name: "admin with namespaces", in: Access{Role: RoleAdmin, Namespaces: []string{"web"}}, wantErr: true},
		{name: "logs for an operator", in: Access{Role: RoleOperator, Logs: true}, wantErr: true},
		{name: "bad namespace", in: Access{Role: RoleViewer, Namespaces: []string{"Web_1"}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, _, err := ca.IssueClientAccess("someone", tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("IssueClientAccess(%+v): no error", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cert, err := ParseCertificatePEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ClientAccess(cert)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ClientAccess = %+v, want %+v", got, tc.want)
			}
			if IsAdmin(cert) != (tc.want.Role == RoleAdmin) {
				t.Errorf("IsAdmin = %v for %+v", IsAdmin(cert), tc.want)
			}
		})
	}
}

func TestClientAccessOfOlderCertificates(t *testing.T) {
	ca, err := NewCA("herd test CA")
	if err != nil {
		t.Fatal(err)
	}
	// A client certificate without a role, as herd issued before roles.
	certPEM, _, err := ca.Issue("terraform", WithExtKeyUsage(x509.ExtKeyUsageClientAuth))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ClientAccess(cert)
	if err != nil || !reflect.DeepEqual(got, Access{Role: RoleOperator}) {
		t.Errorf("ClientAccess = %+v, %v; want an operator of every namespace", got, err)
	}
	// Two roles in one certificate are refused, not merged.
	two, _, err := ca.Issue("both", WithOrganization("herd:admin", "herd:viewer"), WithExtKeyUsage(x509.ExtKeyUsageClientAuth))
	if err != nil {
		t.Fatal(err)
	}
	cert, err = ParseCertificatePEM(two)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := ClientAccess(cert); err == nil {
		t.Errorf("ClientAccess of a certificate with two roles = %+v, want an error", a)
	}
}
