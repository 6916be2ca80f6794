// Command terraform-provider-herd is the herd Terraform/OpenTofu provider
// (plugin protocol 6).
package main

import (
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"

	"github.com/herd-project/terraform-provider-herd/provider"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve (prints TF_REATTACH_PROVIDERS)")
	flag.Parse()

	var opts []tf6server.ServeOpt
	if debug {
		opts = append(opts, tf6server.WithManagedDebug())
	}
	// provider.Server is the framework's server with herd's shortcuts for
	// refreshes and plans that change nothing.
	if err := tf6server.Serve("registry.terraform.io/herd-project/herd", provider.Server(version), opts...); err != nil {
		log.Fatal(err)
	}
}
