package pods

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// With MaxPods 2, a third pod is refused with ErrTooManyPods and a message
// naming the node and its limit; a re-apply of a pod it holds is not a new
// pod, and a deleted pod's place can be taken again.
func TestMaxPods(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(t, func(c *Config) { c.MaxPods = 2; c.NodeName = "n1" })
	ctx := testContext(t)
	for _, name := range []string{"a", "b"} {
		if _, created, err := m.Apply(ctx, e.pod(name, "Always", "sleep", "3600")); err != nil || !created {
			t.Fatalf("Apply %s = created %v, %v; want a new pod", name, created, err)
		}
	}

	steps := []struct {
		name        string
		pod         string
		wantCreated bool
		wantErr     []string // substrings; nil: success
	}{
		{"third pod refused", "c", false, []string{"pod c: node n1 holds 2 pods, its limit (--max-pods)"}},
		{"re-apply of a held pod", "a", false, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			_, created, err := m.Apply(ctx, e.pod(st.pod, "Always", "sleep", "3600"))
			if st.wantErr == nil {
				if err != nil || created != st.wantCreated {
					t.Fatalf("Apply %s = created %v, %v; want created %v", st.pod, created, err, st.wantCreated)
				}
				return
			}
			if !errors.Is(err, ErrTooManyPods) {
				t.Fatalf("Apply %s: %v, want ErrTooManyPods", st.pod, err)
			}
			for _, w := range st.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, gerr := m.Get(ctx, st.pod); !errors.Is(gerr, ErrNotFound) {
				t.Errorf("Get %s after the refusal: %v, want ErrNotFound (nothing created)", st.pod, gerr)
			}
		})
	}

	grace := time.Duration(0)
	if _, err := m.Delete(ctx, "b", &grace); err != nil {
		t.Fatalf("Delete b: %v", err)
	}
	eventually(t, "pod b gone", func() bool {
		_, err := m.Get(ctx, "b")
		return errors.Is(err, ErrNotFound)
	})
	if _, created, err := m.Apply(ctx, e.pod("c", "Always", "sleep", "3600")); err != nil || !created {
		t.Fatalf("Apply c after deleting b = created %v, %v; want a new pod", created, err)
	}
	for _, name := range []string{"a", "c"} {
		if _, err := m.Delete(ctx, name, &grace); err != nil {
			t.Errorf("Delete %s: %v", name, err)
		}
	}
}
