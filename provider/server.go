package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/herd-project/terraform-provider-herd/resources"
)

// Server returns the provider's protocol 6 server: the framework's, except
// that a herd_pod refresh or plan that changes nothing is answered without
// the framework's decoding and re-encoding of the pod's ~90 attributes,
// which is most of the CPU a plan of many pods costs:
//
//   - a refresh whose state bytes are those of an earlier refresh that
//     changed nothing (its stamp in the private state) and whose pod has
//     the same fingerprint returns the state as it is;
//   - a plan whose proposed state is the prior state, where no attribute
//     with a default is unset in the configuration with another value in
//     the state, plans the prior state (the framework would too: its plan
//     modifiers act only on changes or unknown values).
//
// Anything else goes to the framework.
func Server(version string) func() tfprotov6.ProviderServer {
	return func() tfprotov6.ProviderServer {
		p := New(version)().(*herdProvider)
		return &server{ProviderServer: providerserver.NewProtocol6(p)(), p: p}
	}
}

// ServerWithError is Server in the form terraform-plugin-testing's
// provider factories take.
func ServerWithError(version string) func() (tfprotov6.ProviderServer, error) {
	s := Server(version)
	return func() (tfprotov6.ProviderServer, error) { return s(), nil }
}

// shortcutHits counts, by pod name, the refreshes and plans of herd_pod
// answered without the framework (for tests: a provider process serves
// one CLI command, so the map stays small).
var shortcutHits sync.Map // pod name -> *[2]atomic.Int64

func countShortcut(name string, i int) {
	v, _ := shortcutHits.LoadOrStore(name, new([2]atomic.Int64))
	v.(*[2]atomic.Int64)[i].Add(1)
}

// Shortcuts returns how many refreshes and plans of the herd_pod named
// name this process answered without the framework.
func Shortcuts(name string) (refresh, plan int64) {
	v, ok := shortcutHits.Load(name)
	if !ok {
		return 0, 0
	}
	c := v.(*[2]atomic.Int64)
	return c[0].Load(), c[1].Load()
}

const podTypeName = TypeName + "_pod"

type server struct {
	tfprotov6.ProviderServer
	p *herdProvider

	once   sync.Once
	build  string
	podTyp tftypes.Type
	podDef []defaultPath // nil with podTyp nil: no plan shortcut
}

func (s *server) init(ctx context.Context) {
	s.once.Do(func() {
		s.build = buildID(s.p.version)
		typ, defs, err := podDefaults(ctx)
		if err != nil {
			slog.Debug("herd_pod plan shortcut off", "err", err)
			return
		}
		s.podTyp, s.podDef = typ, defs
	})
}

func (s *server) ReadResource(ctx context.Context, req *tfprotov6.ReadResourceRequest) (*tfprotov6.ReadResourceResponse, error) {
	if req.TypeName != podTypeName || req.CurrentState == nil || len(req.CurrentState.MsgPack) == 0 {
		return s.ProviderServer.ReadResource(ctx, req)
	}
	s.init(ctx)
	stateHash := hashBytes(req.CurrentState.MsgPack)
	if resp, name := s.readUnchanged(ctx, req, stateHash); resp != nil {
		countShortcut(name, 0)
		return resp, nil
	}
	resp, err := s.ProviderServer.ReadResource(ctx, req)
	if err == nil && resp != nil {
		unchanged := resp.NewState != nil && bytes.Equal(resp.NewState.MsgPack, req.CurrentState.MsgPack) &&
			len(resp.Diagnostics) == 0 && resp.Deferred == nil
		resp.Private = s.sealStamp(resp.Private, stateHash, unchanged)
	}
	return resp, err
}

// readUnchanged is the refresh shortcut, nil when it does not apply.
func (s *server) readUnchanged(ctx context.Context, req *tfprotov6.ReadResourceRequest, stateHash string) (*tfprotov6.ReadResourceResponse, string) {
	pool := s.p.pool.Load()
	if pool == nil || req.CurrentIdentity == nil {
		return nil, ""
	}
	st, ok := readStamp(req.Private)
	if !ok || st.State != stateHash || st.Build != s.build {
		return nil, ""
	}
	cctx, cancel := context.WithTimeout(ctx, pool.DialTimeout()+30*time.Second)
	defer cancel()
	pod, err := pool.ReadPod(cctx, st.Node, st.Namespace, st.Name)
	if err != nil || resources.PodFingerprint(pod) != st.Pod {
		return nil, "" // the framework's Read reports what happened
	}
	return &tfprotov6.ReadResourceResponse{NewState: req.CurrentState, Private: req.Private, NewIdentity: req.CurrentIdentity}, st.Name
}

// sealStamp completes the stamp Read left in the private state with the
// hash of the state bytes it was given and this build when the refresh
// returned them unchanged, and removes it otherwise.
func (s *server) sealStamp(private []byte, stateHash string, unchanged bool) []byte {
	m, st, ok := stampOf(private)
	if !ok {
		return private
	}
	if unchanged {
		st.State, st.Build = stateHash, s.build
		b, err := json.Marshal(st)
		if err != nil {
			return private
		}
		m[resources.PodReadStampKey] = b
	} else {
		delete(m, resources.PodReadStampKey)
	}
	if len(m) == 0 {
		return nil
	}
	out, err := json.Marshal(m)
	if err != nil {
		return private
	}
	return out
}

func (s *server) PlanResourceChange(ctx context.Context, req *tfprotov6.PlanResourceChangeRequest) (*tfprotov6.PlanResourceChangeResponse, error) {
	if req.TypeName == podTypeName && s.planUnchanged(ctx, req) {
		if st, ok := readStamp(req.PriorPrivate); ok {
			countShortcut(st.Name, 1)
		}
		return &tfprotov6.PlanResourceChangeResponse{
			PlannedState:    req.ProposedNewState,
			PlannedPrivate:  req.PriorPrivate,
			PlannedIdentity: req.PriorIdentity,
		}, nil
	}
	return s.ProviderServer.PlanResourceChange(ctx, req)
}

func (s *server) planUnchanged(ctx context.Context, req *tfprotov6.PlanResourceChangeRequest) bool {
	if req.PriorState == nil || req.ProposedNewState == nil || req.Config == nil || req.PriorIdentity == nil ||
		len(req.PriorState.MsgPack) == 0 || !bytes.Equal(req.PriorState.MsgPack, req.ProposedNewState.MsgPack) {
		return false
	}
	s.init(ctx)
	if s.podTyp == nil {
		return false
	}
	if len(s.podDef) == 0 {
		return true
	}
	cfg, err := req.Config.Unmarshal(s.podTyp)
	if err != nil {
		return false
	}
	plan, err := req.ProposedNewState.Unmarshal(s.podTyp)
	if err != nil || plan.IsNull() {
		return false
	}
	for _, d := range s.podDef {
		if !defaultHolds(cfg, plan, d.steps, d.value) {
			return false
		}
	}
	return true
}

// readStamp is the herd_pod refresh stamp in a private state.
func readStamp(private []byte) (resources.PodReadStamp, bool) {
	_, st, ok := stampOf(private)
	return st, ok
}

func stampOf(private []byte) (map[string][]byte, resources.PodReadStamp, bool) {
	var st resources.PodReadStamp
	if len(private) == 0 {
		return nil, st, false
	}
	// The framework keeps private state as a JSON object of base64 values.
	var m map[string][]byte
	if err := json.Unmarshal(private, &m); err != nil {
		return nil, st, false
	}
	b, ok := m[resources.PodReadStampKey]
	if !ok || json.Unmarshal(b, &st) != nil || st.Node == "" || st.Name == "" || st.Pod == "" {
		return nil, st, false
	}
	return m, st, true
}

func hashBytes(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// buildID names this build for the refresh stamp: a stamp written by
// another build (whose Read may differ) never matches. A release is its
// version; a development build is the hash of its executable.
func buildID(version string) string {
	if version != "" && version != "dev" && version != "test" && !strings.Contains(version, "dev") {
		return "v:" + version
	}
	exe, err := os.Executable()
	if err == nil {
		if f, err := os.Open(exe); err == nil {
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err == nil {
				return "x:" + hex.EncodeToString(h.Sum(nil))
			}
		}
	}
	// Unknown: a value of this process only.
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "p:" + hex.EncodeToString(b)
}
