// Package notbuilt is the one stand-in behind every state backend that
// upstream is a module of its own and the module proxy's copy of Terraform
// leaves out (see ../../go.mod). The test binary only needs the local
// backend; these fail with a clear error if a configuration asks for one.
package notbuilt

import (
	"fmt"

	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/configs/configschema"
	"github.com/hashicorp/terraform/internal/states/statemgr"
	"github.com/hashicorp/terraform/internal/tfdiags"
	"github.com/zclconf/go-cty/cty"
)

// New returns the stand-in for the backend called name.
func New(name string) backend.Backend {
	return notBuilt{err: fmt.Errorf("the %q backend is not built into this test binary; use the local backend", name)}
}

type notBuilt struct{ err error }

// ConfigSchema is empty: any argument is rejected while decoding, before
// PrepareConfig reports why.
func (notBuilt) ConfigSchema() *configschema.Block { return &configschema.Block{} }

func (b notBuilt) PrepareConfig(v cty.Value) (cty.Value, tfdiags.Diagnostics) {
	var diags tfdiags.Diagnostics
	return v, diags.Append(b.err)
}

func (b notBuilt) Configure(cty.Value) tfdiags.Diagnostics {
	var diags tfdiags.Diagnostics
	return diags.Append(b.err)
}

func (b notBuilt) StateMgr(string) (statemgr.Full, error) { return nil, b.err }
func (b notBuilt) DeleteWorkspace(string, bool) error     { return b.err }
func (b notBuilt) Workspaces() ([]string, error)          { return nil, b.err }
