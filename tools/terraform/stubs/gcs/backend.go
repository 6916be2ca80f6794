// Package gcs stands in for Terraform's "gcs" state backend (see ../../go.mod).
package gcs

import (
	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt"
)

// New is the constructor Terraform's backend registry calls.
func New() backend.Backend { return notbuilt.New("gcs") }
