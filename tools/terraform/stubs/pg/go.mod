// Stand-in for Terraform's pg state backend (see ../../go.mod).
module github.com/hashicorp/terraform/internal/backend/remote-state/pg

go 1.24.5

require (
	github.com/hashicorp/terraform v1.13.3
	github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt v0.0.0-00010101000000-000000000000
)

replace github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt => ../notbuilt
