// Package oss stands in for Terraform's "oss" state backend (see ../../go.mod).
package oss

import (
	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt"
)

// New is the constructor Terraform's backend registry calls.
func New() backend.Backend { return notbuilt.New("oss") }
