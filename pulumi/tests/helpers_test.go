package tests

import (
	"context"
	"testing"
	"time"

	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
)

// Pulumi tokens of the bridged resources.
const (
	tokNode    = "herd:index/node:Node"
	tokPod     = "herd:index/pod:Pod"
	tokService = "herd:index/service:Service"
	tokSecret  = "herd:index/secret:Secret"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// bridged is the bridged provider in process, configured with the Env's
// admin client certificate as files (as a Pulumi program would set
// herd:caCert, herd:clientCert and herd:clientKey).
type bridged struct {
	t *testing.T
	p plugin.Provider
}

func newBridged(t *testing.T, certs *acctest.Certs) *bridged {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	p, err := pftfbridge.NewProvider(ctx, provider.Provider(), provider.Metadata())
	if err != nil {
		t.Fatalf("bridged provider: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	_, err = p.Configure(ctx, plugin.ConfigureRequest{Inputs: resource.NewPropertyMapFromMap(map[string]any{
		"caCert":     certs.CAFile,
		"clientCert": certs.ClientCertFile,
		"clientKey":  certs.ClientKeyFile, // the engine unwraps secrets before a provider that does not accept them
	})})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return &bridged{t: t, p: p}
}

func urn(tok, name string) resource.URN {
	return resource.NewURN("test", "herd", "", tokens.Type(tok), name)
}

// check runs Check and fails the test on check failures.
func (b *bridged) check(tok, name string, olds, news resource.PropertyMap) resource.PropertyMap {
	b.t.Helper()
	resp, err := b.p.Check(testCtx(b.t, time.Minute), plugin.CheckRequest{
		URN: urn(tok, name), Name: name, Type: tokens.Type(tok), Olds: olds, News: news,
	})
	if err != nil {
		b.t.Fatalf("check %s %s: %v", tok, name, err)
	}
	if len(resp.Failures) > 0 {
		b.t.Fatalf("check %s %s: failures %+v", tok, name, resp.Failures)
	}
	return resp.Properties
}

func (b *bridged) create(tok, name string, inputs resource.PropertyMap) (resource.ID, resource.PropertyMap) {
	b.t.Helper()
	resp, err := b.p.Create(testCtx(b.t, 3*time.Minute), plugin.CreateRequest{
		URN: urn(tok, name), Name: name, Type: tokens.Type(tok), Properties: inputs, Timeout: 180,
	})
	if err != nil {
		b.t.Fatalf("create %s %s: %v", tok, name, err)
	}
	if resp.ID == "" {
		b.t.Fatalf("create %s %s: no id", tok, name)
	}
	return resp.ID, resp.Properties
}

func (b *bridged) read(tok, name string, id resource.ID, inputs, state resource.PropertyMap) plugin.ReadResponse {
	b.t.Helper()
	resp, err := b.p.Read(testCtx(b.t, time.Minute), plugin.ReadRequest{
		URN: urn(tok, name), Name: name, Type: tokens.Type(tok), ID: id, Inputs: inputs, State: state,
	})
	if err != nil {
		b.t.Fatalf("read %s %s: %v", tok, name, err)
	}
	return resp
}

func (b *bridged) diff(tok, name string, id resource.ID, oldIn, oldOut, newIn resource.PropertyMap) plugin.DiffResult {
	b.t.Helper()
	resp, err := b.p.Diff(testCtx(b.t, time.Minute), plugin.DiffRequest{
		URN: urn(tok, name), Name: name, Type: tokens.Type(tok), ID: id,
		OldInputs: oldIn, OldOutputs: oldOut, NewInputs: newIn,
	})
	if err != nil {
		b.t.Fatalf("diff %s %s: %v", tok, name, err)
	}
	return resp
}

func (b *bridged) update(tok, name string, id resource.ID, oldIn, oldOut, newIn resource.PropertyMap) resource.PropertyMap {
	b.t.Helper()
	resp, err := b.p.Update(testCtx(b.t, 3*time.Minute), plugin.UpdateRequest{
		URN: urn(tok, name), Name: name, Type: tokens.Type(tok), ID: id,
		OldInputs: oldIn, OldOutputs: oldOut, NewInputs: newIn, Timeout: 180,
	})
	if err != nil {
		b.t.Fatalf("update %s %s: %v", tok, name, err)
	}
	return resp.Properties
}

func (b *bridged) delete(tok, name string, id resource.ID, inputs, outputs resource.PropertyMap) {
	b.t.Helper()
	_, err := b.p.Delete(testCtx(b.t, 3*time.Minute), plugin.DeleteRequest{
		URN: urn(tok, name), Name: name, Type: tokens.Type(tok), ID: id, Inputs: inputs, Outputs: outputs, Timeout: 180,
	})
	if err != nil {
		b.t.Fatalf("delete %s %s: %v", tok, name, err)
	}
}

func props(m map[string]any) resource.PropertyMap { return resource.NewPropertyMapFromMap(m) }

// str reads a string output, looking through secrets.
func str(m resource.PropertyMap, key string) string {
	v, ok := m[resource.PropertyKey(key)]
	if !ok {
		return ""
	}
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsString() {
		return ""
	}
	return v.StringValue()
}
