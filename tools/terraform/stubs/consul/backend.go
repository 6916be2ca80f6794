// Package consul stands in for Terraform's "consul" state backend (see ../../go.mod).
package consul

import (
	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt"
)

// New is the constructor Terraform's backend registry calls.
func New() backend.Backend { return notbuilt.New("consul") }
