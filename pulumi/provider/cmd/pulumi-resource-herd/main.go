// Command pulumi-resource-herd is herd's Pulumi resource provider plugin:
// the Terraform provider bridged with pulumi-terraform-bridge (pkg/pf).
// Install it with
//
//	pulumi plugin install resource herd 0.1.0 --file pulumi-resource-herd
//
// or put it on PATH.
package main

import (
	"context"

	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
)

func main() {
	pftfbridge.Main(context.Background(), provider.Name, provider.Provider(), provider.Metadata())
}
