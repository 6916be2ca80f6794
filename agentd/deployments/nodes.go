package deployments

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/herd-project/terraform-provider-herd/agentd/capacity"
	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/deployments/schedule"
	"github.com/herd-project/terraform-provider-herd/agentd/peers"
	"github.com/herd-project/terraform-provider-herd/agentd/secrets"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// SecretSource lists secrets with the members that hold them;
// agentd/secrets' Replicator satisfies it. Secret data is pushed point to
// point to the members its node_selector matches, so only a survey of the
// members says who holds what.
type SecretSource interface {
	List(ctx context.Context, namespace string) ([]secrets.View, error)
}

// Secret surveys ask every member, so Nodes keeps one for a little while.
const (
	secretCacheTTL     = 2 * time.Second
	secretSurveyBudget = 5 * time.Second
)

type secretCache struct {
	at      time.Time
	holders map[string]map[string]bool // node -> secret keys
}

// SetSecrets gives the registry the secrets it places templates by; until
// then no node holds any secret.
func (r *Registry) SetSecrets(s SecretSource) {
	r.secMu.Lock()
	defer r.secMu.Unlock()
	r.secrets = s
	r.secView = secretCache{}
}

// secretHolders returns node -> the secret keys it holds.
func (r *Registry) secretHolders() map[string]map[string]bool {
	r.secMu.Lock()
	defer r.secMu.Unlock()
	if r.secrets == nil {
		return nil
	}
	if r.secView.holders != nil && time.Since(r.secView.at) < secretCacheTTL {
		return r.secView.holders
	}
	ctx, cancel := context.WithTimeout(context.Background(), secretSurveyBudget)
	defer cancel()
	views, err := r.secrets.List(ctx, "")
	if err != nil {
		r.log.Warn("list secrets for placement", "err", err)
		return r.secView.holders
	}
	holders := map[string]map[string]bool{}
	for _, v := range views {
		for node := range v.Holders {
			if holders[node] == nil {
				holders[node] = map[string]bool{}
			}
			holders[node][v.Rec.Key()] = true
		}
	}
	r.secView = secretCache{at: time.Now(), holders: holders}
	return holders
}

// Nodes is the scheduler's view: every member with its labels, its
// published capacity, whether it published an API address (the driver can
// reach only those), and the secrets it holds. Dead and left members are
// left out; a live one that cannot take replicas is listed not ready with
// the reason.
func (r *Registry) Nodes() []schedule.Node {
	return r.nodes(r.anyUsesSecrets())
}

// anyUsesSecrets reports whether a stored deployment's template (of any
// kept revision) uses a secret: only then is a survey of the members worth
// its calls.
func (r *Registry) anyUsesSecrets() bool {
	for _, rec := range r.List() {
		for _, t := range rec.GetTemplates() {
			if len(spec.PodSecretRefs(t.GetTemplate())) > 0 {
				return true
			}
		}
	}
	return false
}

// nodes is Nodes, with the secrets the nodes hold only when needSecrets.
func (r *Registry) nodes(needSecrets bool) []schedule.Node {
	caps := map[string]capacity.Info{}
	capErr := map[string]string{}
	for _, e := range r.st.Entries(capacity.Kind) {
		if e.Key != capacity.Key {
			continue
		}
		info, err := capacity.Decode(e.Value)
		if err != nil {
			capErr[e.Owner] = "capacity unreadable"
			continue
		}
		caps[e.Owner] = info
	}
	api := map[string]bool{}
	for _, e := range r.st.Entries(peers.KindAgent) {
		if e.Key == peers.KeyAPI && len(e.Value) > 0 {
			api[e.Owner] = true
		}
	}
	var held map[string]map[string]bool
	if needSecrets {
		held = r.secretHolders()
	}
	var out []schedule.Node
	for _, m := range r.st.Members() {
		if m.State == cluster.StateDead || m.State == cluster.StateLeft {
			continue
		}
		info, hasCap := caps[m.Name]
		n := schedule.Node{
			Name:          m.Name,
			Labels:        m.Labels,
			Allocatable:   info.Allocatable,
			Free:          info.Free(),
			Secrets:       held[m.Name],
			Volumes:       map[string]bool{},
			VolumeWriters: info.VolumeWriters,
		}
		for _, v := range info.Volumes {
			n.Volumes[v] = true
		}
		var why []string
		if m.State != cluster.StateAlive {
			why = append(why, "member "+string(m.State))
		}
		if !api[m.Name] {
			why = append(why, "no API address")
		}
		switch {
		case capErr[m.Name] != "":
			why = append(why, capErr[m.Name])
		case !hasCap:
			why = append(why, "no capacity published")
		case !info.Ready:
			why = append(why, "node not ready")
		}
		n.Ready = len(why) == 0
		n.NotReady = strings.Join(why, ", ")
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
