// Stand-in for Terraform's internal/legacy module. Only the remote state
// backends import its packages, and those are stubs here, so it is empty.
module github.com/hashicorp/terraform/internal/legacy

go 1.24.5
