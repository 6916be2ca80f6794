// The shared stand-in for the state backends left out of the module proxy's
// copy of Terraform (see ../../go.mod).
module github.com/hashicorp/terraform/internal/backend/remote-state/notbuilt

go 1.24.5

require (
	github.com/hashicorp/terraform v1.13.3
	github.com/zclconf/go-cty v1.16.3
)
