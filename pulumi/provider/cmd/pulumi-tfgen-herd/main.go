// Command pulumi-tfgen-herd writes the Pulumi package schema and the Go SDK
// of the bridged herd provider, with no Pulumi CLI. `make pulumi-sdk` runs,
// in pulumi/:
//
//	pulumi-tfgen-herd schema --skip-examples --out provider/cmd/pulumi-resource-herd
//	pulumi-tfgen-herd go --out ../sdk/go/herd
//
// The schema comes from the bridge's tfgen. The bridge's own "go" target
// shells out to `pulumi package gen-sdk`, which needs the Pulumi CLI and its
// Go language plugin; here "go" runs Pulumi's Go code generator in process
// on the committed schema instead (the same generator the CLI would run).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen/schemafilter"
	gogen "github.com/pulumi/pulumi/pkg/v3/codegen/go"
	pschema "github.com/pulumi/pulumi/pkg/v3/codegen/schema"

	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "go" {
		if err := generateGo(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pulumi-tfgen-herd go:", err)
			os.Exit(1)
		}
		return
	}
	tfgen.Main(provider.Name, provider.Provider())
}

// keep are the files of the SDK directory that are not generated.
var keep = map[string]bool{"go.mod": true, "go.sum": true}

func generateGo(args []string) error {
	fs := flag.NewFlagSet("go", flag.ExitOnError)
	out := fs.String("out", "", "the Go SDK's package directory (sdk/go/herd)")
	schemaPath := fs.String("schema", filepath.Join("provider", "cmd", "pulumi-resource-"+provider.Name, "schema.json"), "the package schema")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	raw, err := os.ReadFile(*schemaPath)
	if err != nil {
		return err
	}
	// As the bridge does before generating an SDK: keep each doc
	// reference's Go spelling, and put the version back (the schema file
	// omits it) so that the SDK asks for this plugin version.
	var spec pschema.PackageSpec
	if err := json.Unmarshal(schemafilter.FilterSchemaByLanguage(raw, "go"), &spec); err != nil {
		return err
	}
	spec.Version = provider.Version
	pkg, err := pschema.ImportSpec(spec, nil, noLoader{}, pschema.ValidationOptions{})
	if err != nil {
		return err
	}
	files, err := gogen.GeneratePackage("pulumi-tfgen-herd", pkg, nil)
	if err != nil {
		return err
	}

	// Replace every generated file: a resource that went away leaves
	// nothing behind.
	if err := filepath.WalkDir(*out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || keep[filepath.Base(p)] && filepath.Dir(p) == filepath.Clean(*out) {
			return err
		}
		return os.Remove(p)
	}); err != nil && !os.IsNotExist(err) {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// Files are keyed by package path, "herd/pod.go"; the module root
		// is the package directory itself.
		rel, err := filepath.Rel(provider.Name, name)
		if err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) > 1 && rel[:2] == ".." {
			rel = name // .gitattributes and other files at the root
		}
		dst := filepath.Join(*out, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// noLoader refuses to load other packages: herd's schema refers to none,
// and loading one would mean a plugin (and maybe a download).
type noLoader struct{}

func (noLoader) LoadPackage(pkg string, _ *semver.Version) (*pschema.Package, error) {
	return nil, fmt.Errorf("the herd schema refers to package %q: not supported offline", pkg)
}

func (l noLoader) LoadPackageV2(_ context.Context, d *pschema.PackageDescriptor) (*pschema.Package, error) {
	return l.LoadPackage(d.Name, d.Version)
}
