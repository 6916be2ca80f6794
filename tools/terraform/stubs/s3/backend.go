// Package s3 stands in for Terraform's "s3" state backend (see ../../go.mod).
package s3

import (
	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt"
)

// New is the constructor Terraform's backend registry calls.
func New() backend.Backend { return notbuilt.New("s3") }
