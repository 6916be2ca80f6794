// Package cos stands in for Terraform's "cos" state backend, which upstream is
// a module of its own that the module proxy's copy of Terraform leaves out.
// The test binary only needs the local backend; this one fails with a clear
// error if a configuration asks for it.
package cos

import (
	"errors"

	"github.com/hashicorp/terraform/internal/backend"
	"github.com/hashicorp/terraform/internal/configs/configschema"
	"github.com/hashicorp/terraform/internal/states/statemgr"
	"github.com/hashicorp/terraform/internal/tfdiags"
	"github.com/zclconf/go-cty/cty"
)

var errNotBuilt = errors.New(`the "cos" backend is not built into this test binary; use the local backend`)

// New is the constructor Terraform's backend registry calls.
func New() backend.Backend { return notBuilt{} }

type notBuilt struct{}

// ConfigSchema is empty: any argument is rejected while decoding, before
// PrepareConfig reports why.
func (notBuilt) ConfigSchema() *configschema.Block { return &configschema.Block{} }

func (notBuilt) PrepareConfig(v cty.Value) (cty.Value, tfdiags.Diagnostics) {
	var diags tfdiags.Diagnostics
	return v, diags.Append(errNotBuilt)
}

func (notBuilt) Configure(cty.Value) tfdiags.Diagnostics {
	var diags tfdiags.Diagnostics
	return diags.Append(errNotBuilt)
}

func (notBuilt) StateMgr(string) (statemgr.Full, error) { return nil, errNotBuilt }
func (notBuilt) DeleteWorkspace(string, bool) error     { return errNotBuilt }
func (notBuilt) Workspaces() ([]string, error)          { return nil, errNotBuilt }
