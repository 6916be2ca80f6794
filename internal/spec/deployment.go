package spec

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Labels agentd sets on a deployment's replicas. Pods may not set labels
// under ReservedLabelPrefix themselves; selectors may use them.
const (
	ReservedLabelPrefix = "herd.io/"
	LabelDeployment     = "herd.io/deployment" // <namespace>.<name>
	LabelRevision       = "herd.io/revision"   // decimal
)

// Deployment limits and defaults.
const (
	// MaxDeploymentName leaves room in a replica's pod name (an RFC 1123
	// label of at most 63) for "-<revision>-<5 random>".
	MaxDeploymentName        = 40
	MaxReplicas              = 1000
	MaxMinReadySeconds       = 3600
	MaxProgressDeadline      = 86400
	DefaultProgressDeadline  = 600
	DefaultMaxSurge          = 1
	DefaultMaxUnavailable    = 0
	PlacementBinPack         = "bin_pack"
	PlacementSpread          = "spread"
	StrategyRollingUpdate    = "RollingUpdate"
	StrategyBlueGreen        = "BlueGreen"
	replicaPlaceholderSuffix = "-1-aaaaa"
)

// Deployment phases.
const (
	PhaseProgressing = "Progressing"
	PhaseComplete    = "Complete"
	PhaseFailed      = "Failed"
	PhaseRolledBack  = "RolledBack"
)

// Placements and Strategies list the valid values.
var (
	Placements = []string{PlacementBinPack, PlacementSpread}
	Strategies = []string{StrategyRollingUpdate, StrategyBlueGreen}
)

// DeploymentLabel is the value of LabelDeployment for a deployment.
func DeploymentLabel(namespace, name string) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return namespace + "." + name
}

// DefaultDeployment returns a copy of s with every default filled in:
// namespace, placement, strategy and its numbers.
func DefaultDeployment(s *herdv1.DeploymentSpec) *herdv1.DeploymentSpec {
	d := proto.Clone(s).(*herdv1.DeploymentSpec)
	if d.Namespace == "" {
		d.Namespace = DefaultNamespace
	}
	if d.Placement == nil {
		d.Placement = &herdv1.Placement{}
	}
	if d.Placement.Strategy == "" {
		d.Placement.Strategy = PlacementBinPack
	}
	if d.Strategy == nil {
		d.Strategy = &herdv1.DeploymentStrategy{}
	}
	st := d.Strategy
	if st.Type == "" {
		st.Type = StrategyRollingUpdate
	}
	if st.MaxSurge == nil {
		st.MaxSurge = proto.Int32(DefaultMaxSurge)
	}
	if st.MaxUnavailable == nil {
		st.MaxUnavailable = proto.Int32(DefaultMaxUnavailable)
	}
	if st.ProgressDeadlineSeconds == 0 {
		st.ProgressDeadlineSeconds = DefaultProgressDeadline
	}
	if st.AutoRollback == nil {
		st.AutoRollback = proto.Bool(true)
	}
	return d
}

// ValidateDeployment checks a whole deployment spec (defaulted or not).
// Paths are relative to the spec; the template's problems are reported
// under "template", for example "template.containers[0].image".
func ValidateDeployment(s *herdv1.DeploymentSpec) FieldErrors {
	var errs FieldErrors
	if s == nil {
		errs.add(nil, "spec is required")
		return errs
	}
	if ns := s.GetNamespace(); ns != "" {
		if err := ValidateName(ns); err != nil {
			errs.add(Path{}.Field("namespace"), "%v", err)
		}
	}
	if err := ValidateName(s.GetName()); err != nil {
		errs.add(Path{}.Field("name"), "%v", err)
	} else if len(s.GetName()) > MaxDeploymentName {
		errs.add(Path{}.Field("name"), "at most %d characters (replica names add a suffix), got %d", MaxDeploymentName, len(s.GetName()))
	}
	if r := s.GetReplicas(); r < 0 || r > MaxReplicas {
		errs.add(Path{}.Field("replicas"), "must be between 0 and %d, got %d", MaxReplicas, r)
	}
	sel := Path{}.Field("selector")
	if len(s.GetSelector()) == 0 {
		errs.add(sel, "at least one label is required: it is how services and herd find the replicas")
	}
	errs = append(errs, ValidateLabels(sel, s.GetSelector())...)
	errs = append(errs, ValidateLabels(Path{}.Field("node_selector"), s.GetNodeSelector())...)
	errs = append(errs, validateTemplate(s)...)
	errs = append(errs, validatePlacement(s.GetPlacement())...)
	errs = append(errs, validateStrategy(s.GetStrategy())...)
	return errs
}

func validateTemplate(s *herdv1.DeploymentSpec) FieldErrors {
	var errs FieldErrors
	tp := Path{}.Field("template")
	t := s.GetTemplate()
	if t == nil {
		errs.add(tp, "a pod template is required")
		return errs
	}
	if t.GetName() != "" {
		errs.add(tp.Field("name"), "must be empty: herd names the replicas")
	}
	if t.GetDeployment() != nil {
		errs.add(tp.Field("deployment"), "must be empty: herd sets it on the replicas")
	}
	ns := s.GetNamespace()
	if ns == "" {
		ns = DefaultPodNamespace
	}
	if tn := t.GetNamespace(); tn != "" && tn != ns {
		errs.add(tp.Field("namespace"), "must be empty or %q: replicas are in the deployment's namespace", ns)
	}
	c := proto.Clone(t).(*herdv1.PodSpec)
	c.Deployment = nil
	c.Namespace = "" // an invalid namespace is the deployment's error
	if ValidateName(ns) == nil {
		c.Namespace = ns // secret references resolve in the replicas' namespace
	}
	c.Name = "x" + replicaPlaceholderSuffix
	if n := s.GetName(); ValidateName(n) == nil && len(n) <= MaxDeploymentName {
		c.Name = n + replicaPlaceholderSuffix
	}
	for _, e := range ValidatePod(c) {
		if len(e.Path) > 0 && e.Path[0].Kind == FieldStep && e.Path[0].Field == "name" {
			continue // reported on the deployment's name
		}
		errs = append(errs, FieldError{Path: append(slices.Clone(tp), e.Path...), Msg: e.Msg})
	}
	// Volumes are node-local and have one writer: replicas go only to the
	// node that has them, and a template that writes one runs at most one
	// replica, replaced by stopping the old one before starting the new.
	if TemplateWritesVolume(t) {
		if r := s.GetReplicas(); r > 1 {
			errs.add(Path{}.Field("replicas"), "must be 0 or 1: the template writes persistent volume %s, and a volume has one writer (mount it read_only to share it between replicas), got %d", strings.Join(TemplateVolumes(t), ", "), r)
		}
		if s.GetStrategy().GetType() == StrategyBlueGreen {
			errs.add(Path{}.Field("strategy").Field("type"), "must be %s: the template writes persistent volume %s, and %s would start a second writer next to the first", StrategyRollingUpdate, strings.Join(TemplateVolumes(t), ", "), StrategyBlueGreen)
		}
	}
	for _, k := range sortedKeys(s.GetSelector()) {
		v := s.GetSelector()[k]
		if got, ok := t.GetLabels()[k]; !ok || got != v {
			errs.add(tp.Field("labels"), "must contain every selector label: missing %s=%s", k, v)
		}
	}
	return errs
}

// TemplateVolumes lists the persistent volumes a pod spec mounts, by
// name, sorted and without repeats.
func TemplateVolumes(t *herdv1.PodSpec) []string {
	var out []string
	for _, c := range t.GetContainers() {
		for _, m := range c.GetVolumeMounts() {
			if v := m.GetVolume(); v != "" {
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TemplateWritesVolume reports whether a container of t mounts a
// persistent volume read-write.
func TemplateWritesVolume(t *herdv1.PodSpec) bool {
	for _, c := range t.GetContainers() {
		for _, m := range c.GetVolumeMounts() {
			if m.GetVolume() != "" && !m.GetReadOnly() {
				return true
			}
		}
	}
	return false
}

func validatePlacement(p *herdv1.Placement) FieldErrors {
	var errs FieldErrors
	pp := Path{}.Field("placement")
	if st := p.GetStrategy(); st != "" && !slices.Contains(Placements, st) {
		errs.add(pp.Field("strategy"), "must be one of %s, got %q", strings.Join(Placements, ", "), st)
	}
	if m := p.GetMaxPerNode(); m < 0 {
		errs.add(pp.Field("max_per_node"), "must be 0 (no limit) or more, got %d", m)
	}
	return errs
}

func validateStrategy(st *herdv1.DeploymentStrategy) FieldErrors {
	var errs FieldErrors
	sp := Path{}.Field("strategy")
	typ := st.GetType()
	if typ != "" && !slices.Contains(Strategies, typ) {
		errs.add(sp.Field("type"), "must be one of %s, got %q", strings.Join(Strategies, ", "), typ)
	}
	surge, unavail := int32(DefaultMaxSurge), int32(DefaultMaxUnavailable)
	if st != nil && st.MaxSurge != nil { // no strategy at all: the defaults
		surge = st.GetMaxSurge()
	}
	if st != nil && st.MaxUnavailable != nil {
		unavail = st.GetMaxUnavailable()
	}
	if surge < 0 {
		errs.add(sp.Field("max_surge"), "must not be negative, got %d", surge)
	}
	if unavail < 0 {
		errs.add(sp.Field("max_unavailable"), "must not be negative, got %d", unavail)
	}
	if surge == 0 && unavail == 0 && typ != StrategyBlueGreen {
		errs.add(sp.Field("max_surge"), "max_surge and max_unavailable must not both be 0: the rollout could never make progress")
	}
	if m := st.GetMinReadySeconds(); m < 0 || m > MaxMinReadySeconds {
		errs.add(sp.Field("min_ready_seconds"), "must be between 0 and %d, got %d", MaxMinReadySeconds, m)
	}
	if d := st.GetProgressDeadlineSeconds(); d < 0 || d > MaxProgressDeadline {
		errs.add(sp.Field("progress_deadline_seconds"), "must be between 0 (default %d) and %d, got %d", DefaultProgressDeadline, MaxProgressDeadline, d)
	} else if d > 0 && st.GetMinReadySeconds() >= d {
		errs.add(sp.Field("min_ready_seconds"), "must be below progress_deadline_seconds (%d), got %d", d, st.GetMinReadySeconds())
	}
	return errs
}

// ValidateReservedLabels refuses pod labels under ReservedLabelPrefix:
// agentd sets those itself on a deployment's replicas.
func ValidateReservedLabels(p Path, labels map[string]string) FieldErrors {
	var errs FieldErrors
	for _, k := range sortedKeys(labels) {
		if strings.HasPrefix(k, ReservedLabelPrefix) {
			errs.add(p.Key(k), "labels under %s are reserved for herd", ReservedLabelPrefix)
		}
	}
	return errs
}

// MaxPerNodeError reports when max_per_node makes replicas impossible on
// the nodes that match the node selector: "" when it is possible.
func MaxPerNodeError(replicas, maxPerNode, matching int) string {
	if maxPerNode <= 0 || replicas <= maxPerNode*matching {
		return ""
	}
	return fmt.Sprintf("max_per_node = %d allows at most %d replicas on the %d matching nodes, replicas = %d", maxPerNode, maxPerNode*matching, matching, replicas)
}
