package resources_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// The inputs the provider refuses at plan time (plan_validation_test.go)
// are refused again by a real agentd, which never trusts its client:
// InvalidArgument, with the path of the offending field, and nothing
// created. They are sent over mTLS as any remote client would.
func TestAgentdRefusesBadInput(t *testing.T) {
	t.Parallel()
	n := startAgent(t, "acc-valid")
	img := n.env.Image
	ok := func() *herdv1.ContainerSpec {
		return &herdv1.ContainerSpec{Name: "app", Image: img, Command: []string{"sleep", "60"}}
	}
	pod := func(mutate func(*herdv1.PodSpec)) *herdv1.PodSpec {
		s := &herdv1.PodSpec{Name: "web", Containers: []*herdv1.ContainerSpec{ok()}}
		mutate(s)
		return s
	}
	negative := int64(-1)

	cases := []struct {
		name string
		spec *herdv1.PodSpec
		want []string // each in the message, in order
	}{
		{"no spec", nil, []string{"spec: required"}},
		{"invalid pod name", pod(func(s *herdv1.PodSpec) { s.Name = "Bad_Name" }),
			[]string{`spec.name: "Bad_Name" must be a lowercase RFC 1123 label`}},
		{"invalid container name", pod(func(s *herdv1.PodSpec) { s.Containers[0].Name = "App" }),
			[]string{`spec.containers[0].name: "App" must be a lowercase RFC 1123 label`}},
		{"duplicate container names", pod(func(s *herdv1.PodSpec) { s.Containers = append(s.Containers, ok()) }),
			[]string{`spec.containers[1].name: duplicate container name "app" (also containers[0])`}},
		{"no container", pod(func(s *herdv1.PodSpec) { s.Containers = nil }),
			[]string{"spec.containers: at least one container is required"}},
		{"invalid image reference", pod(func(s *herdv1.PodSpec) { s.Containers[0].Image = "Not A/Valid:Image" }),
			[]string{`spec.containers[0].image: invalid image reference "Not A/Valid:Image"`}},
		{"empty image", pod(func(s *herdv1.PodSpec) { s.Containers[0].Image = "" }),
			[]string{"spec.containers[0].image: must not be empty"}},
		{"cpu with unknown unit", pod(func(s *herdv1.PodSpec) { s.Containers[0].Cpu = "12Q" }),
			[]string{`spec.containers[0].cpu: invalid CPU quantity "12Q"`}},
		{"memory that is not a quantity", pod(func(s *herdv1.PodSpec) { s.Containers[0].Memory = "lots" }),
			[]string{`spec.containers[0].memory:`, `"lots"`}},
		{"memory below the minimum", pod(func(s *herdv1.PodSpec) { s.Containers[0].Memory = "1Mi" }),
			[]string{`spec.containers[0].memory: memory limit "1Mi" is below the minimum of 6Mi`}},
		{"bad restart policy", pod(func(s *herdv1.PodSpec) { s.RestartPolicy = "Sometimes" }),
			[]string{`spec.restart_policy: invalid restart policy "Sometimes": must be one of Always, OnFailure, Never`}},
		{"negative grace period", pod(func(s *herdv1.PodSpec) { s.TerminationGracePeriodSeconds = &negative }),
			[]string{"spec.termination_grace_period_seconds: must be between 0 and"}},
		{"bad label key", pod(func(s *herdv1.PodSpec) { s.Labels = map[string]string{"-bad": "x"} }),
			[]string{`spec.labels`, `label key "-bad"`}},
		{"bad env name", pod(func(s *herdv1.PodSpec) { s.Containers[0].Env = map[string]string{"1X": "y"} }),
			[]string{`spec.containers[0].env["1X"]: invalid environment variable name "1X"`}},
		{"relative working dir", pod(func(s *herdv1.PodSpec) { s.Containers[0].WorkingDir = "tmp" }),
			[]string{`spec.containers[0].working_dir: must be an absolute path, got "tmp"`}},
		{"every problem at once", pod(func(s *herdv1.PodSpec) {
			s.Name = "Bad_Name"
			s.Containers[0].Cpu = "12Q"
			s.Containers = append(s.Containers, ok())
		}), []string{"spec.name:", "spec.containers[0].cpu:", "spec.containers[1].name: duplicate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.pods.ApplyPod(ctx(t), &herdv1.ApplyPodRequest{Spec: tc.spec})
			expectInvalid(t, err, tc.want...)
		})
	}

	// The other calls check their arguments too.
	t.Run("other calls", func(t *testing.T) {
		_, err := n.pods.GetPod(ctx(t), &herdv1.GetPodRequest{Name: "Bad_Name"})
		expectInvalid(t, err, `name: "Bad_Name" must be a lowercase RFC 1123 label`)
		_, err = n.pods.DeletePod(ctx(t), &herdv1.DeletePodRequest{Name: "web", GracePeriodSeconds: &negative})
		expectInvalid(t, err, "grace_period_seconds: must be between 0 and")
		_, err = n.pods.ListPods(ctx(t), &herdv1.ListPodsRequest{LabelSelector: map[string]string{"a": "bad value"}})
		expectInvalid(t, err, `label_selector`, `label value "bad value"`)
		_, err = n.nodes.SetNodeLabels(ctx(t), &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"zone/": "a"}})
		expectInvalid(t, err, "labels", `label key "zone/"`)
		stream, err := n.pods.PodLogs(ctx(t), &herdv1.PodLogsRequest{Pod: "web", TailLines: -1})
		if err == nil {
			_, err = stream.Recv()
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		expectInvalid(t, err, "tail_lines: must not be negative")
	})

	// Nothing was created or changed.
	if err := n.nothingLeft(t); err != nil {
		t.Fatal(err)
	}
	node, err := n.nodes.GetNode(ctx(t), &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.GetLabels()) != 0 {
		t.Fatalf("node labels changed: %v", node.GetLabels())
	}
}

func expectInvalid(t *testing.T, err error, want ...string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	msg := status.Convert(err).Message()
	rest := msg
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("message %q lacks %q (in order %q)", msg, w, want)
		}
		rest = rest[i+len(w):]
	}
}
