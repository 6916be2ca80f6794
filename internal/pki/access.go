package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a client certificate may do, carried in its Subject
// Organization as "herd:" + role.
type Role string

const (
	// RoleAdmin may do everything, in every namespace.
	RoleAdmin Role = "admin"
	// RoleOperator manages pods, deployments, services and volumes and
	// reads their status and logs, in its namespaces.
	RoleOperator Role = "operator"
	// RoleViewer reads status, without logs unless granted.
	RoleViewer Role = "viewer"
)

// Roles lists the roles from most to least privileged.
var Roles = []Role{RoleAdmin, RoleOperator, RoleViewer}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want admin, operator or viewer", s)
}

// Rank orders roles: a higher rank may do all a lower one may.
func (r Role) Rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// Subject markers of a client certificate's access. Namespaces and grants
// are Organizational Units, so that they are signed with the rest.
const (
	roleOrgPrefix   = "herd:"
	namespaceOU     = "herd-namespace:"
	grantLogsOU     = "herd-grant:logs"
	allNamespaces   = "*"
	maxNamespacesIn = 64
)

// Access is what a client certificate grants.
type Access struct {
	Role Role
	// Namespaces limits an operator or viewer to these namespaces; empty
	// means every namespace. An admin has every namespace.
	Namespaces []string
	// Logs lets a viewer read logs of pods in its namespaces.
	Logs bool
}

// AllNamespaces reports whether a holds every namespace.
func (a Access) AllNamespaces() bool { return a.Role == RoleAdmin || len(a.Namespaces) == 0 }

// InNamespace reports whether a holds namespace ns.
func (a Access) InNamespace(ns string) bool {
	return a.AllNamespaces() || slices.Contains(a.Namespaces, ns)
}

func (a Access) validate() error {
	if _, err := ParseRole(string(a.Role)); err != nil {
		return err
	}
	if a.Role == RoleAdmin && (len(a.Namespaces) > 0 || a.Logs) {
		return errors.New("an admin holds every namespace and logs: give no namespaces or grants")
	}
	if a.Logs && a.Role != RoleViewer {
		return fmt.Errorf("the logs grant is for viewers (an %s reads logs already)", a.Role)
	}
	if len(a.Namespaces) > maxNamespacesIn {
		return fmt.Errorf("%d namespaces: at most %d", len(a.Namespaces), maxNamespacesIn)
	}
	for _, ns := range a.Namespaces {
		if err := ValidateName(ns); err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
	}
	return nil
}

// IssueClientAccess issues a client certificate (CN=name, ClientAuth only)
// granting a. Only the validity options apply.
func (ca *CA) IssueClientAccess(name string, a Access, opts ...Option) (certPEM, keyPEM []byte, err error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	if err := a.validate(); err != nil {
		return nil, nil, err
	}
	o, err := herdLeaf(opts)
	if err != nil {
		return nil, nil, err
	}
	o.organization = []string{roleOrgPrefix + string(a.Role)}
	ns := slices.Clone(a.Namespaces)
	slices.Sort(ns)
	for _, n := range slices.Compact(ns) {
		o.units = append(o.units, namespaceOU+n)
	}
	if a.Logs {
		o.units = append(o.units, grantLogsOU)
	}
	o.extKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(name, o)
}

// ClientAccess reads what a verified client certificate grants. A client
// certificate without a role (issued before roles existed) is an operator
// of every namespace, which is what it could do then, short of the
// admin-only calls. Node certificates carry no client access: see IsNode.
func ClientAccess(cert *x509.Certificate) (Access, error) {
	if cert == nil || cert.IsCA {
		return Access{}, errors.New("not a client certificate")
	}
	var roles []Role
	for _, o := range cert.Subject.Organization {
		if r, ok := strings.CutPrefix(o, roleOrgPrefix); ok {
			role, err := ParseRole(r)
			if err != nil {
				return Access{}, err
			}
			roles = append(roles, role)
		}
	}
	a := Access{Role: RoleOperator}
	switch len(roles) {
	case 0:
	case 1:
		a.Role = roles[0]
	default:
		return Access{}, fmt.Errorf("certificate names %d roles: want one", len(roles))
	}
	for _, u := range cert.Subject.OrganizationalUnit {
		switch {
		case u == grantLogsOU:
			a.Logs = true
		case strings.HasPrefix(u, namespaceOU):
			ns := strings.TrimPrefix(u, namespaceOU)
			if ns == allNamespaces {
				continue
			}
			a.Namespaces = append(a.Namespaces, ns)
		}
	}
	if a.Role == RoleAdmin {
		a.Namespaces, a.Logs = nil, false
	}
	slices.Sort(a.Namespaces) // DER orders a SET OF by encoding, not as issued
	return a, nil
}
