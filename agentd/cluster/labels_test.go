package cluster

import (
	"fmt"
	"maps"
	"testing"
	"time"
)

// labelsEverywhere checks the labels every node in cs sees on member name
// (nil: none, and the member may be dead or left).
func labelsEverywhere(name string, want map[string]string, cs ...*Cluster) func() string {
	return func() string {
		for _, c := range cs {
			got := memberOf(c, name).Labels
			if !maps.Equal(got, want) || (want == nil) != (got == nil) {
				return fmt.Sprintf("%s sees %s's labels %v, want %v", c.Name(), name, got, want)
			}
		}
		return ""
	}
}

// waitMemberEvent waits for EventMember of node; label changes must not
// show up as entry events.
func waitMemberEvent(t *testing.T, ch <-chan Event, node string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.Type == EventEntry {
				t.Errorf("label change emitted %+v", e)
			}
			if e == (Event{Type: EventMember, Node: node}) {
				return
			}
		case <-timeout:
			t.Fatalf("no member event for %s", node)
		}
	}
}

func TestLabels(t *testing.T) {
	a, b, c := newNode(t, "a"), newNode(t, "b"), newNode(t, "c")
	// Labels set before joining arrive with the join.
	early := map[string]string{"role": "early"}
	if err := c.SetLabels(early); err != nil {
		t.Fatal(err)
	}
	join(t, a)
	join(t, b, a)
	join(t, c, a)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	eventually(t, 10*time.Second, labelsEverywhere("c", early, a, b, c))

	subB := b.Subscribe()
	steps := []struct {
		name   string
		labels map[string]string
		want   map[string]string
	}{
		{"set", map[string]string{"zone": "eu-1", "gpu": "true"}, map[string]string{"zone": "eu-1", "gpu": "true"}},
		{"change", map[string]string{"zone": "eu-2"}, map[string]string{"zone": "eu-2"}},
		{"clear", nil, nil},
		{"set again", map[string]string{"disk": "ssd"}, map[string]string{"disk": "ssd"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := a.SetLabels(st.labels); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, labelsEverywhere("a", st.want, a, b, c))
			waitMemberEvent(t, subB, "a")
		})
	}
	time.Sleep(200 * time.Millisecond)
	for len(subB) > 0 {
		if e := <-subB; e.Type == EventEntry {
			t.Errorf("label change emitted %+v", e)
		}
	}
	// Members hands out copies.
	memberOf(b, "a").Labels["disk"] = "hdd"
	if why := labelsEverywhere("a", map[string]string{"disk": "ssd"}, b)(); why != "" {
		t.Error(why)
	}
	if err := a.SetLabels(map[string]string{"": "x"}); err == nil {
		t.Error("empty label key accepted")
	}

	// A member that dies or leaves is still listed for a while, without labels.
	if err := b.SetLabels(map[string]string{"role": "leaver"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, labelsEverywhere("b", map[string]string{"role": "leaver"}, a, c))
	subA := a.Subscribe()
	if err := c.Shutdown(); err != nil {
		t.Fatalf("shutting down c: %v", err)
	}
	eventually(t, 10*time.Second, func() string {
		if st := memberOf(a, "c").State; st != StateDead {
			return "a sees c " + string(st)
		}
		return labelsEverywhere("c", nil, a)()
	})
	waitEvent(t, subA, Event{Type: EventMember, Node: "c"})
	leave(t, b, a)
	eventually(t, 10*time.Second, labelsEverywhere("b", nil, a))
}
