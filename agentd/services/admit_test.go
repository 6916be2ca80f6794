package services

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// admitEvents is just enough of the cluster for one reconcile pass.
type admitEvents struct {
	Events
	svcs    []cluster.Object
	entries []cluster.Entry
}

func (e *admitEvents) Name() string                              { return "n1" }
func (e *admitEvents) List(string) []cluster.Object              { return e.svcs }
func (e *admitEvents) Entries(string) []cluster.Entry            { return e.entries }
func (e *admitEvents) Versions(string, string) map[string]uint64 { return nil }

type recordingDataplane struct{ got []nft.Service }

func (d *recordingDataplane) Sync(_ context.Context, s []nft.Service) error { d.got = s; return nil }
func (d *recordingDataplane) Apply(context.Context, []nft.Service, []string) error {
	return nil
}

// gateFunc is a Gate whose admission never changes.
type gateFunc func(map[string]string) bool

func (g gateFunc) Admit(l map[string]string) bool           { return g(l) }
func (g gateFunc) Affected(cluster.Event) map[string]string { return nil }

// TestAdmit: endpoints Admit refuses are no backends (in the data plane
// and in DNS); without Admit every ready endpoint is one.
func TestAdmit(t *testing.T) {
	svc := &herdv1.Service{
		Spec: &herdv1.ServiceSpec{Namespace: "default", Name: "web", Selector: map[string]string{"app": "web"},
			Ports: []*herdv1.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: 8080}}},
		Status: &herdv1.ServiceStatus{ClusterIp: "10.96.0.10"},
	}
	b, err := proto.Marshal(svc)
	if err != nil {
		t.Fatal(err)
	}
	ev := &admitEvents{
		svcs: []cluster.Object{{Kind: KindService, Key: "default/web", Value: b, Version: 1, Writer: "n1"}},
		entries: []cluster.Entry{
			entry(t, "n1", endpoint{Pod: "a", IP: "10.1.0.2", Ready: true, Labels: map[string]string{"app": "web", "rev": "1"}}),
			entry(t, "n2", endpoint{Pod: "b", IP: "10.1.1.2", Ready: true, Labels: map[string]string{"app": "web", "rev": "2"}}),
		},
	}
	for _, tc := range []struct {
		name  string
		admit func(map[string]string) bool
		want  []string
	}{
		{"nil admits all", nil, []string{"10.1.0.2", "10.1.1.2"}},
		{"only rev 2", func(l map[string]string) bool { return l["rev"] == "2" }, []string{"10.1.1.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := &recordingDataplane{}
			c := NewController(ev, dp, nil)
			if tc.admit != nil {
				c.Gate = gateFunc(tc.admit)
			}
			c.pass(context.Background(), passFull)
			if len(dp.got) != 1 {
				t.Fatalf("synced %d services", len(dp.got))
			}
			var got []string
			for _, e := range dp.got[0].Ports[0].Endpoints {
				got = append(got, e.IP.String())
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[len(got)-1] != tc.want[len(tc.want)-1]) {
				t.Fatalf("backends %v, want %v", got, tc.want)
			}
			d, _ := c.Service("default", "web")
			if len(d.ReadyEndpoints) != len(tc.want) {
				t.Fatalf("DNS endpoints %v, want %v", d.ReadyEndpoints, tc.want)
			}
		})
	}
}
