package agent_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// agentd validates every request itself (the client here does not
// validate at all): bad input is InvalidArgument naming the field, and
// nothing is created.
func TestApplyPodValidation(t *testing.T) {
	t.Parallel()
	n := startNode(t, "validate")
	img := n.env.Image
	ctr := func(name string) *herdv1.ContainerSpec {
		return &herdv1.ContainerSpec{Name: name, Image: img, Command: []string{"sleep", "3600"}}
	}
	good := func() *herdv1.PodSpec {
		return &herdv1.PodSpec{Name: "bad", Containers: []*herdv1.ContainerSpec{ctr("app"), ctr("side")}}
	}
	i64 := func(v int64) *int64 { return &v }

	cases := []struct {
		name   string
		mutate func(*herdv1.PodSpec)
		path   string
		value  string // the offending value, quoted back in the message
	}{
		{"invalid pod name", func(s *herdv1.PodSpec) { s.Name = "Bad_Pod" }, "spec.name", "Bad_Pod"},
		{"pod name too long", func(s *herdv1.PodSpec) { s.Name = longName(64) }, "spec.name", ""},
		{"invalid container name", func(s *herdv1.PodSpec) { s.Containers[1].Name = "Side!" }, "spec.containers[1].name", "Side!"},
		{"duplicate container names", func(s *herdv1.PodSpec) { s.Containers[1].Name = "app" }, "spec.containers[1].name", "duplicate"},
		{"no containers", func(s *herdv1.PodSpec) { s.Containers = nil }, "spec.containers", ""},
		{"bad image reference", func(s *herdv1.PodSpec) { s.Containers[0].Image = "Not A/Valid::Image" }, "spec.containers[0].image", "Not A/Valid::Image"},
		{"empty image", func(s *herdv1.PodSpec) { s.Containers[1].Image = "" }, "spec.containers[1].image", ""},
		{"bad cpu", func(s *herdv1.PodSpec) { s.Containers[0].Cpu = "12Q" }, "spec.containers[0].cpu", "12Q"},
		{"bad memory", func(s *herdv1.PodSpec) { s.Containers[1].Memory = "-1Mi" }, "spec.containers[1].memory", "-1Mi"},
		{"bad restart policy", func(s *herdv1.PodSpec) { s.RestartPolicy = "Sometimes" }, "spec.restart_policy", "Sometimes"},
		{"grace period too long", func(s *herdv1.PodSpec) { s.TerminationGracePeriodSeconds = i64(7200) }, "spec.termination_grace_period_seconds", "7200"},
		{"negative grace period", func(s *herdv1.PodSpec) { s.TerminationGracePeriodSeconds = i64(-1) }, "spec.termination_grace_period_seconds", ""},
		{"bad env name", func(s *herdv1.PodSpec) { s.Containers[0].Env = map[string]string{"1X": "y"} }, `spec.containers[0].env["1X"]`, ""},
		{"relative working dir", func(s *herdv1.PodSpec) { s.Containers[0].WorkingDir = "tmp" }, "spec.containers[0].working_dir", ""},
		{"bad label key", func(s *herdv1.PodSpec) { s.Labels = map[string]string{"-bad": "x"} }, `spec.labels["-bad"]`, ""},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.mutate(s)
			_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s})
			want := []string{tc.path + ": "}
			if tc.value != "" {
				want = append(want, tc.value)
			}
			wantCode(t, err, codes.InvalidArgument, want...)
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		s := good()
		s.Name = "Bad_Pod"
		s.Containers[0].Cpu = "12Q"
		s.Containers[1].Memory = "-1Mi"
		_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s})
		wantCode(t, err, codes.InvalidArgument, "spec.name: ", "spec.containers[0].cpu: ", "spec.containers[1].memory: ")
	})
	t.Run("no spec", func(t *testing.T) {
		_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{})
		wantCode(t, err, codes.InvalidArgument, "spec")
	})
	t.Run("other calls", func(t *testing.T) {
		_, err := n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "../etc"})
		wantCode(t, err, codes.InvalidArgument, "name: ")
		_, err = n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "UPPER"})
		wantCode(t, err, codes.InvalidArgument, "name: ")
		_, err = n.pods.DeletePod(ctx, &herdv1.DeletePodRequest{Name: "ok", GracePeriodSeconds: i64(-5)})
		wantCode(t, err, codes.InvalidArgument, "grace_period_seconds")
		_, err = n.pods.ListPods(ctx, &herdv1.ListPodsRequest{LabelSelector: map[string]string{"bad key!": "x"}})
		wantCode(t, err, codes.InvalidArgument, "label_selector")
		_, err = n.nodes.SetNodeLabels(ctx, &herdv1.SetNodeLabelsRequest{Labels: map[string]string{"k": "bad value!"}})
		wantCode(t, err, codes.InvalidArgument, `labels["k"]`)
		stream, err := n.pods.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "Bad_Pod"})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, codes.InvalidArgument, "pod: ")
		stream, err = n.pods.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "ok", TailLines: -1})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, codes.InvalidArgument, "tail_lines")
	})
	// The same through the unix socket: local clients are not trusted
	// either.
	s := good()
	s.Containers[0].Cpu = "12Q"
	_, err := n.local.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: s})
	wantCode(t, err, codes.InvalidArgument, "spec.containers[0].cpu: ")

	n.mustEmpty(t)
}

func longName(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

// Every mutating call is idempotent, and conflicts and missing pods have
// their codes.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	n := startNode(t, "idem")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	spec := n.pod("web", "sleep 3600")
	spec.Labels = map[string]string{"app": "web"}
	first := n.apply(t, spec)
	if !first.GetCreated() || first.GetPod().GetUid() == "" {
		t.Fatalf("first ApplyPod: created=%v uid=%q, want created with a uid", first.GetCreated(), first.GetPod().GetUid())
	}
	second := n.apply(t, spec)
	if second.GetCreated() {
		t.Error("second ApplyPod with the same spec: created=true, want false")
	}
	if second.GetPod().GetUid() != first.GetPod().GetUid() || second.GetPod().GetSpecHash() != first.GetPod().GetSpecHash() {
		t.Errorf("second ApplyPod: uid %s hash %s, want %s %s", second.GetPod().GetUid(), second.GetPod().GetSpecHash(), first.GetPod().GetUid(), first.GetPod().GetSpecHash())
	}
	// Spelling out the defaults is the same spec.
	explicit := proto.Clone(spec).(*herdv1.PodSpec)
	explicit.RestartPolicy = "Always"
	g := int64(30)
	explicit.TerminationGracePeriodSeconds = &g
	if r := n.apply(t, explicit); r.GetCreated() || r.GetPod().GetUid() != first.GetPod().GetUid() {
		t.Errorf("ApplyPod with explicit defaults: created=%v uid=%s, want the existing pod", r.GetCreated(), r.GetPod().GetUid())
	}
	// Concurrent retries: still one pod.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: spec})
			if err == nil && (r.GetCreated() || r.GetPod().GetUid() != first.GetPod().GetUid()) {
				t.Errorf("concurrent ApplyPod: created=%v uid=%s", r.GetCreated(), r.GetPod().GetUid())
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent ApplyPod: %v", err)
		}
	}

	// Another spec under the same name is refused: pods are replaced,
	// never patched.
	changed := n.pod("web", "sleep 7200")
	_, err := n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: changed})
	wantCode(t, err, codes.AlreadyExists, "web")
	relabeled := proto.Clone(spec).(*herdv1.PodSpec)
	relabeled.Labels["app"] = "other"
	_, err = n.pods.ApplyPod(ctx, &herdv1.ApplyPodRequest{Spec: relabeled})
	wantCode(t, err, codes.AlreadyExists)
	if p := n.get(t, "web"); p.GetUid() != first.GetPod().GetUid() || !proto.Equal(p.GetSpec().GetContainers()[0], first.GetPod().GetSpec().GetContainers()[0]) {
		t.Errorf("after the refused ApplyPods the pod changed: %v", p)
	}

	// ListPods with and without a selector.
	list, err := n.pods.ListPods(ctx, &herdv1.ListPodsRequest{})
	if err != nil || len(list.GetPods()) != 1 {
		t.Fatalf("ListPods = %v, %v; want one pod", list, err)
	}
	list, err = n.pods.ListPods(ctx, &herdv1.ListPodsRequest{LabelSelector: map[string]string{"app": "nope"}})
	if err != nil || len(list.GetPods()) != 0 {
		t.Errorf("ListPods app=nope = %v, %v; want none", list, err)
	}
	list, err = n.pods.ListPods(ctx, &herdv1.ListPodsRequest{LabelSelector: map[string]string{"app": "web"}})
	if err != nil || len(list.GetPods()) != 1 {
		t.Errorf("ListPods app=web = %v, %v; want one", list, err)
	}

	n.waitRunning(t, "web")
	if !n.delete(t, "web", 0) {
		t.Error("first DeletePod: existed=false, want true")
	}
	if n.delete(t, "web", 0) {
		t.Error("second DeletePod: existed=true, want false")
	}
	_, err = n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "web"})
	wantCode(t, err, codes.NotFound, "web")
	_, err = n.pods.GetPod(ctx, &herdv1.GetPodRequest{Name: "never-existed"})
	wantCode(t, err, codes.NotFound, "never-existed")
	stream, err := n.pods.PodLogs(ctx, &herdv1.PodLogsRequest{Pod: "never-existed"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.NotFound)

	// Re-created under the same name: a new incarnation with a new uid,
	// and the changed spec is fine now.
	again := n.apply(t, changed)
	if !again.GetCreated() || again.GetPod().GetUid() == first.GetPod().GetUid() {
		t.Errorf("ApplyPod after delete: created=%v uid=%s (old %s), want a new pod", again.GetCreated(), again.GetPod().GetUid(), first.GetPod().GetUid())
	}
	n.waitRunning(t, "web")
	if !n.delete(t, "web", 0) {
		t.Error("DeletePod of the re-created pod: existed=false")
	}
	n.mustEmpty(t)
}
