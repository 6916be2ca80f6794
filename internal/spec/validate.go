package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// Limits that keep one pod from exhausting agentd or the node.
const (
	MaxContainers       = 16
	MaxGracePeriod      = 3600 // seconds
	DefaultGracePeriod  = 30   // seconds
	MinMemoryBytes      = 6 << 20
	maxLabels           = 64
	maxArgs             = 1024
	maxArgBytes         = 128 << 10
	maxEnv              = 1024
	maxEnvValueBytes    = 128 << 10
	maxLabelValueLength = 63
)

// Restart policies.
const (
	RestartAlways    = "Always"
	RestartOnFailure = "OnFailure"
	RestartNever     = "Never"
)

// RestartPolicies lists the valid restart policies.
var RestartPolicies = []string{RestartAlways, RestartOnFailure, RestartNever}

var (
	labelRe     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	qualNameRe  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	dnsSubRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	envNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelValRe  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	errNameHelp = "must be a lowercase RFC 1123 label: at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
)

// ValidateName checks an RFC 1123 label (pod and container names).
func ValidateName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > 63 || !labelRe.MatchString(s) {
		return fmt.Errorf("%q %s", s, errNameHelp)
	}
	return nil
}

// ValidateImage checks an OCI image reference.
func ValidateImage(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("invalid image reference %q: surrounding whitespace", s)
	}
	if _, err := reference.ParseNormalizedNamed(s); err != nil {
		return fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	return nil
}

// ValidateLabelKey checks a label key: an optional DNS subdomain prefix and
// "/", then a name of at most 63 characters.
func ValidateLabelKey(k string) error {
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || len(prefix) > 253 || !dnsSubRe.MatchString(prefix) {
			return fmt.Errorf("label key %q: prefix must be a lowercase DNS subdomain", k)
		}
		name = n
	}
	if name == "" || len(name) > 63 || !qualNameRe.MatchString(name) {
		return fmt.Errorf("label key %q: name must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", k)
	}
	return nil
}

// ValidateLabelValue checks a label value (may be empty).
func ValidateLabelValue(v string) error {
	if len(v) > maxLabelValueLength || !labelValRe.MatchString(v) {
		return fmt.Errorf("label value %q: must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", v)
	}
	return nil
}

// ValidateLabels checks a label map, reporting each bad entry at its key.
func ValidateLabels(p Path, labels map[string]string) FieldErrors {
	var errs FieldErrors
	if len(labels) > maxLabels {
		errs.add(p, "at most %d labels", maxLabels)
	}
	for _, k := range sortedKeys(labels) {
		if err := ValidateLabelKey(k); err != nil {
			errs.add(p.Key(k), "%v", err)
		}
		if err := ValidateLabelValue(labels[k]); err != nil {
			errs.add(p.Key(k), "%v", err)
		}
	}
	return errs
}

// ValidateRestartPolicy accepts "", Always, OnFailure and Never.
func ValidateRestartPolicy(s string) error {
	switch s {
	case "", RestartAlways, RestartOnFailure, RestartNever:
		return nil
	}
	return fmt.Errorf("invalid restart policy %q: must be one of %s", s, strings.Join(RestartPolicies, ", "))
}

// ValidatePod checks a whole pod spec. Paths are relative to the spec.
func ValidatePod(s *herdv1.PodSpec) FieldErrors {
	var errs FieldErrors
	if s == nil {
		errs.add(nil, "spec is required")
		return errs
	}
	if err := ValidateName(s.GetName()); err != nil {
		errs.add(Path{}.Field("name"), "%v", err)
	}
	if ns := s.GetNamespace(); ns != "" {
		if err := ValidateName(ns); err != nil {
			errs.add(Path{}.Field("namespace"), "%v", err)
		}
	}
	if ref := s.GetDeployment(); ref != nil {
		if dns := cmpOr(ref.GetNamespace(), DefaultPodNamespace); PodNamespace(s) != dns {
			errs.add(Path{}.Field("namespace"), "must be %q, the namespace of the replica's deployment", dns)
		}
	}
	errs = append(errs, ValidateLabels(Path{}.Field("labels"), s.GetLabels())...)
	errs = append(errs, ValidateReservedLabels(Path{}.Field("labels"), s.GetLabels())...)
	if err := ValidateRestartPolicy(s.GetRestartPolicy()); err != nil {
		errs.add(Path{}.Field("restart_policy"), "%v", err)
	}
	if s.TerminationGracePeriodSeconds != nil {
		if g := s.GetTerminationGracePeriodSeconds(); g < 0 || g > MaxGracePeriod {
			errs.add(Path{}.Field("termination_grace_period_seconds"), "must be between 0 and %d, got %d", MaxGracePeriod, g)
		}
	}
	cp := Path{}.Field("containers")
	switch n := len(s.GetContainers()); {
	case n == 0:
		errs.add(cp, "at least one container is required")
	case n > MaxContainers:
		errs.add(cp, "at most %d containers, got %d", MaxContainers, n)
	}
	seen := map[string]int{}
	// Port names and numbers are unique across the whole pod: its
	// containers share one network namespace.
	portNames, portNums := map[string]bool{}, map[string]bool{}
	for i, c := range s.GetContainers() {
		p := cp.Index(i)
		if c == nil {
			errs.add(p, "container is empty")
			continue
		}
		if err := ValidateName(c.GetName()); err != nil {
			errs.add(p.Field("name"), "%v", err)
		} else if j, dup := seen[c.GetName()]; dup {
			errs.add(p.Field("name"), "duplicate container name %q (also containers[%d])", c.GetName(), j)
		} else {
			seen[c.GetName()] = i
		}
		if err := ValidateImage(c.GetImage()); err != nil {
			errs.add(p.Field("image"), "%v", err)
		}
		errs = append(errs, validateStrings(p.Field("command"), c.GetCommand())...)
		errs = append(errs, validateStrings(p.Field("args"), c.GetArgs())...)
		if len(c.GetEnv()) > maxEnv {
			errs.add(p.Field("env"), "at most %d variables", maxEnv)
		}
		for _, k := range sortedKeys(c.GetEnv()) {
			if !envNameRe.MatchString(k) {
				errs.add(p.Field("env").Key(k), "invalid environment variable name %q: must match [A-Za-z_][A-Za-z0-9_]*", k)
			}
			if v := c.GetEnv()[k]; strings.ContainsRune(v, 0) || len(v) > maxEnvValueBytes {
				errs.add(p.Field("env").Key(k), "value must not contain NUL bytes or exceed %d bytes", maxEnvValueBytes)
			}
		}
		if wd := c.GetWorkingDir(); wd != "" {
			if !path.IsAbs(wd) || strings.ContainsRune(wd, 0) {
				errs.add(p.Field("working_dir"), "must be an absolute path, got %q", wd)
			}
		}
		errs = append(errs, validatePorts(p.Field("ports"), c.GetPorts(), portNames, portNums)...)
		errs = append(errs, validateProbes(p, c)...)
		if q := c.GetCpu(); q != "" {
			if _, err := ParseCPU(q); err != nil {
				errs.add(p.Field("cpu"), "%v", err)
			}
		}
		if q := c.GetMemory(); q != "" {
			if b, err := ParseMemory(q); err != nil {
				errs.add(p.Field("memory"), "%v", err)
			} else if b < MinMemoryBytes {
				errs.add(p.Field("memory"), "memory limit %q is below the minimum of 6Mi", q)
			}
		}
		errs = append(errs, validateRequest(p.Field("cpu_request"), "CPU", ParseCPU, c.GetCpuRequest(), c.GetCpu())...)
		errs = append(errs, validateRequest(p.Field("memory_request"), "memory", ParseMemory, c.GetMemoryRequest(), c.GetMemory())...)
	}
	errs = append(errs, ValidatePodSecrets(s)...)
	errs = append(errs, ValidatePodVolumes(s)...)
	return errs
}

// validateRequest checks a request quantity and that it is at most its
// limit (when the limit is set and parses; a bad limit has its own error).
func validateRequest(p Path, kind string, parse func(string) (int64, error), req, limit string) FieldErrors {
	var errs FieldErrors
	if req == "" {
		return nil
	}
	r, err := parse(req)
	if err != nil {
		errs.add(p, "%v", err)
		return errs
	}
	if limit == "" {
		return nil
	}
	if l, err := parse(limit); err == nil && r > l {
		errs.add(p, "%s is above the %s limit %s", req, kind, limit)
	}
	return errs
}

var portNameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Port protocols.
const (
	ProtocolTCP = "TCP"
	ProtocolUDP = "UDP"
)

// ValidatePortName checks a port name: at most 15 of a-z, 0-9 and '-',
// with at least one letter (IANA service names, as Kubernetes uses).
func ValidatePortName(s string) error {
	if len(s) > 15 || !portNameRe.MatchString(s) || !strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz") || strings.Contains(s, "--") {
		return fmt.Errorf("invalid port name %q: at most 15 characters of a-z, 0-9 and '-', with a letter, no '--', not starting or ending with '-'", s)
	}
	return nil
}

func validatePorts(p Path, ports []*herdv1.ContainerPort, names, nums map[string]bool) FieldErrors {
	var errs FieldErrors
	for i, cp := range ports {
		pp := p.Index(i)
		if cp == nil {
			errs.add(pp, "port is empty")
			continue
		}
		if n := cp.GetName(); n != "" {
			if err := ValidatePortName(n); err != nil {
				errs.add(pp.Field("name"), "%v", err)
			} else if names[n] {
				errs.add(pp.Field("name"), "duplicate port name %q in the pod", n)
			}
			names[n] = true
		}
		if v := cp.GetContainerPort(); v < 1 || v > 65535 {
			errs.add(pp.Field("container_port"), "must be between 1 and 65535, got %d", v)
		}
		proto := cp.GetProtocol()
		switch proto {
		case "", ProtocolTCP, ProtocolUDP:
		default:
			errs.add(pp.Field("protocol"), "invalid protocol %q: must be TCP or UDP", proto)
		}
		if proto == "" {
			proto = ProtocolTCP
		}
		key := fmt.Sprintf("%s/%d", proto, cp.GetContainerPort())
		if nums[key] {
			errs.add(pp.Field("container_port"), "duplicate port %d/%s in the pod", cp.GetContainerPort(), proto)
		}
		nums[key] = true
	}
	return errs
}

func validateStrings(p Path, ss []string) FieldErrors {
	var errs FieldErrors
	if len(ss) > maxArgs {
		errs.add(p, "at most %d entries", maxArgs)
	}
	for i, s := range ss {
		if strings.ContainsRune(s, 0) || len(s) > maxArgBytes {
			errs.add(p.Index(i), "must not contain NUL bytes or exceed %d bytes", maxArgBytes)
		}
	}
	return errs
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// DefaultPodNamespace is the namespace of a pod that names none.
const DefaultPodNamespace = "default"

// PodNamespace is the namespace pod s is in. A replica made before pods
// had namespaces is in its deployment's.
func PodNamespace(s *herdv1.PodSpec) string {
	if ns := s.GetNamespace(); ns != "" {
		return ns
	}
	if ns := s.GetDeployment().GetNamespace(); ns != "" {
		return ns
	}
	return DefaultPodNamespace
}

// Defaulted returns a copy of s with defaults filled in: restart policy
// Always, a 30 s grace period and TCP for ports; the namespace "default"
// becomes empty.
func Defaulted(s *herdv1.PodSpec) *herdv1.PodSpec {
	out := proto.Clone(s).(*herdv1.PodSpec)
	// The default namespace is kept empty, its canonical form, so that a
	// pod named "default" explicitly and one made before pods had
	// namespaces hash alike.
	if out.Namespace == DefaultPodNamespace {
		out.Namespace = ""
	}
	if out.RestartPolicy == "" {
		out.RestartPolicy = RestartAlways
	}
	for _, c := range out.Containers {
		for _, p := range c.GetPorts() {
			if p.Protocol == "" {
				p.Protocol = ProtocolTCP
			}
		}
		for _, f := range c.GetConfigFiles() {
			if f.Mode == nil {
				m := uint32(DefaultConfigMode)
				f.Mode = &m
			}
		}
	}
	for _, d := range out.GetEmptyDirs() {
		if d.Medium == "" {
			d.Medium = EmptyDirDisk
		}
	}
	if out.TerminationGracePeriodSeconds == nil {
		g := int64(DefaultGracePeriod)
		out.TerminationGracePeriodSeconds = &g
	}
	if ref := out.GetDeployment(); ref != nil {
		// A replica carries its deployment's labels: services, the
		// BlueGreen gate and the driver's ListPods select by them.
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		out.Labels[LabelDeployment] = DeploymentLabel(ref.GetNamespace(), ref.GetName())
		out.Labels[LabelRevision] = strconv.FormatInt(ref.GetRevision(), 10)
	}
	return out
}

// Hash identifies a spec after defaulting: equal specs hash equally, which
// is what makes ApplyPod idempotent.
func Hash(s *herdv1.PodSpec) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(Defaulted(s))
	if err != nil {
		// Marshal of a valid message cannot fail; a panic here is a bug.
		panic(fmt.Sprintf("marshal pod spec: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
