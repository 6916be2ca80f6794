package deployments

import (
	"fmt"
	"strings"

	"github.com/herd-project/terraform-provider-herd/agentd/deployments/rollout"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

type summaryInput struct {
	key                    string
	exists, changed        bool
	from, to               int64
	fromReplicas, replicas int32
	spec                   *herdv1.DeploymentSpec
	plan                   rollout.Plan
	services               []string
}

// summary is the plan's one line, for example
// "default/web: revision 3 → 4, 3 replicas, surge 1 / unavailable 0: 3 steps;
// node-1 +1 −1, node-2 +1 −1, node-3 +1 −1; service default/web endpoints
// change on every node; pods that restart: none".
func summary(in summaryInput) string {
	const restarts = "; pods that restart: none" // replicas are replaced, never patched
	nodes := nodeChanges(in.plan)
	svc := ""
	switch len(in.services) {
	case 0:
	case 1:
		svc = "; service " + in.services[0] + " endpoints change on every node"
	default:
		svc = "; services " + strings.Join(in.services, ", ") + " endpoints change on every node"
	}
	switch {
	case !in.exists:
		return fmt.Sprintf("%s: create revision %d, %d replicas: %s%s%s", in.key, in.to, in.replicas, nodes, svc, restarts)
	case !in.changed:
		return fmt.Sprintf("%s: no change (revision %d, %d replicas)", in.key, in.to, in.replicas)
	case in.from != in.to:
		scale := ""
		if in.fromReplicas != in.replicas {
			scale = fmt.Sprintf(" (scale %d → %d)", in.fromReplicas, in.replicas)
		}
		return fmt.Sprintf("%s: revision %d → %d, %d replicas%s, %s: %s; %s%s%s",
			in.key, in.from, in.to, in.replicas, scale, strategyText(in.spec), steps(in.plan.Steps), nodes, svc, restarts)
	case in.fromReplicas != in.replicas:
		return fmt.Sprintf("%s: scale %d → %d (revision %d unchanged): %s%s", in.key, in.fromReplicas, in.replicas, in.to, nodes, restarts)
	default:
		return fmt.Sprintf("%s: revision %d unchanged, %d replicas: %s%s", in.key, in.to, in.replicas, nodes, restarts)
	}
}

func strategyText(d *herdv1.DeploymentSpec) string {
	st := d.GetStrategy()
	if st.GetType() == spec.StrategyBlueGreen {
		return "blue-green (all new replicas, then the switch)"
	}
	return fmt.Sprintf("surge %d / unavailable %d", st.GetMaxSurge(), st.GetMaxUnavailable())
}

func steps(n int) string {
	if n == 1 {
		return "1 step"
	}
	return fmt.Sprintf("%d steps", n)
}

// nodeChanges writes "node-1 +1 −1, node-2 +1" ("no replica changes" for
// none).
func nodeChanges(p rollout.Plan) string {
	var parts []string
	for _, n := range sortedKeys(p.Nodes) {
		c := p.Nodes[n]
		s := n
		if c[0] > 0 {
			s += fmt.Sprintf(" +%d", c[0])
		}
		if c[1] > 0 {
			s += fmt.Sprintf(" −%d", c[1])
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "no replica changes"
	}
	return strings.Join(parts, ", ")
}
