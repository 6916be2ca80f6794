// Package cos stands in for Terraform's "cos" state backend (see ../../go.mod).
package cos

import (
	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt"
)

// New is the constructor Terraform's backend registry calls.
func New() backend.Backend { return notbuilt.New("cos") }
