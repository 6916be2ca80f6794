// Stand-in for Terraform's consul state backend (see ../../go.mod).
module github.com/hashicorp/terraform/internal/backend/remote-state/consul

go 1.24.5

require (
	github.com/hashicorp/terraform v1.13.3
	github.com/zclconf/go-cty v1.16.3
)
