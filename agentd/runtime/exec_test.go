package runtime

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestCappedBuffer(t *testing.T) {
	tests := []struct {
		name      string
		writes    []string
		want      string
		truncated bool
	}{
		{"fits", []string{"ab", "cd"}, "abcd", false},
		{"exactly", []string{"abcde"}, "abcde", false},
		{"cut in a write", []string{"abc", "defg"}, "abcde", true},
		{"full, then more", []string{"abcde", "f"}, "abcde", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &cappedBuffer{max: 5}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			got, truncated := b.result()
			if string(got) != tt.want || truncated != tt.truncated {
				t.Fatalf("got %q truncated=%v, want %q truncated=%v", got, truncated, tt.want, tt.truncated)
			}
		})
	}
}

// TestExec runs commands in a running container: exit codes, output (with
// the container's environment and working directory), the output cap, a
// timeout, and the refusals.
func TestExec(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	img, _, err := e.rt.EnsureImage(ctx, e.ref)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.rt.CreateContainer(ctx, ContainerConfig{Pod: "ex", PodUID: "u1", Image: img,
		Spec: &herdv1.ContainerSpec{Name: "c", Image: e.ref, Command: []string{"sleep", "300"},
			Env: map[string]string{"GREETING": "hello"}, WorkingDir: "/tmp"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.rt.RemoveContainer(testContext(t), c.ID()) })
	task, err := c.NewTask(ctx, filepath.Join(t.TempDir(), "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		argv      []string
		timeout   time.Duration
		wantCode  uint32
		wantOut   string
		wantErr   error
		truncated bool
	}{
		{"success with env and cwd", []string{"sh", "-c", "echo $GREETING; pwd"}, 10 * time.Second, 0, "hello\n/tmp\n", nil, false},
		{"stderr", []string{"sh", "-c", "echo oops >&2; exit 1"}, 10 * time.Second, 1, "oops\n", nil, false},
		{"exit code", []string{"sh", "-c", "exit 7"}, 10 * time.Second, 7, "", nil, false},
		{"output capped", []string{"sh", "-c", "yes | head -c 100000"}, 10 * time.Second, 0, strings.Repeat("y\n", MaxExecOutput/2), nil, true},
		{"timeout", []string{"sleep", "60"}, 300 * time.Millisecond, 137, "", ErrExecTimeout, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.rt.Exec(ctx, c.ID(), tt.argv, tt.timeout)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Code != tt.wantCode || !bytes.Equal(res.Output, []byte(tt.wantOut)) || res.Truncated != tt.truncated {
				t.Fatalf("got code %d output %.80q truncated=%v; want code %d output %.80q truncated=%v",
					res.Code, res.Output, res.Truncated, tt.wantCode, tt.wantOut, tt.truncated)
			}
		})
	}

	// The container's process is untouched by all of that.
	if st, err := task.Status(ctx); err != nil || st.State != "running" {
		t.Fatalf("task status = %v, %v; want running", st, err)
	}
	if _, err := e.rt.Exec(ctx, c.ID(), []string{"/no/such/binary"}, 10*time.Second); err == nil {
		t.Error("exec of a missing binary succeeded")
	}
	if _, err := e.rt.Exec(ctx, "herd-no-such", []string{"true"}, time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("exec in a missing container: err = %v, want ErrNotFound", err)
	}
	e.foreign(t, "herd-ex-foreign", "herd-ex-foreign")
	if _, err := e.rt.Exec(ctx, "herd-ex-foreign", []string{"true"}, time.Second); !errors.Is(err, ErrForeign) {
		t.Errorf("exec in a foreign container: err = %v, want ErrForeign", err)
	}
}
