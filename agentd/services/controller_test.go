package services

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/herd-project/terraform-provider-herd/agentd/cluster"
	"github.com/herd-project/terraform-provider-herd/agentd/network/nft"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func entry(t *testing.T, node string, e endpoint) cluster.Entry {
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return cluster.Entry{Owner: node, Kind: KindEndpoint, Key: e.Pod, Value: b}
}

// TestNFTService: what one service becomes in the data plane — ready
// endpoints only, named target ports resolved per pod (a pod without the
// named port is no backend for it), node ports and affinity carried over.
func TestNFTService(t *testing.T) {
	http := []endpointPort{{Name: "http", Port: 8080, Protocol: "TCP"}}
	alt := []endpointPort{{Name: "http", Port: 9090, Protocol: "TCP"}}
	entries := []cluster.Entry{
		entry(t, "n1", endpoint{Pod: "a", IP: "10.1.0.2", Ready: true, Labels: map[string]string{"app": "web"}, Ports: http}),
		entry(t, "n2", endpoint{Pod: "b", IP: "10.1.1.2", Ready: true, Labels: map[string]string{"app": "web", "x": "y"}, Ports: alt}),
		entry(t, "n2", endpoint{Pod: "c", IP: "10.1.1.3", Ready: false, Labels: map[string]string{"app": "web"}, Ports: http}),
		entry(t, "n3", endpoint{Pod: "d", IP: "10.1.2.2", Ready: true, Labels: map[string]string{"app": "web"}}),
		entry(t, "n3", endpoint{Pod: "e", IP: "10.1.2.3", Ready: true, Labels: map[string]string{"app": "db"}, Ports: http}),
	}
	svc := &herdv1.Service{
		Spec: &herdv1.ServiceSpec{Namespace: "default", Name: "web", Type: TypeNodePort, SessionAffinity: "ClientIP",
			Selector: map[string]string{"app": "web"},
			Ports: []*herdv1.ServicePort{
				{Name: "http", Protocol: "TCP", Port: 80, TargetPortName: "http", NodePort: 30080},
				{Name: "raw", Protocol: "UDP", Port: 53, TargetPort: 5353},
			}},
		Status: &herdv1.ServiceStatus{ClusterIp: "10.96.0.10"},
	}
	eps := selectEndpoints(decodeEndpoints(entries), svc.GetSpec().GetSelector())
	if len(eps) != 4 {
		t.Fatalf("selected %d endpoints, want a, b, c, d", len(eps))
	}
	got, ok := nftService("default/web", svc, eps)
	if !ok {
		t.Fatal("no data-plane service")
	}
	ip := netip.MustParseAddr
	want := nft.Service{Key: "default/web", ClusterIP: ip("10.96.0.10"), SessionAffinity: true, Ports: []nft.Port{
		{Protocol: nft.TCP, Port: 80, NodePort: 30080, Endpoints: []nft.Endpoint{{IP: ip("10.1.0.2"), Port: 8080}, {IP: ip("10.1.1.2"), Port: 9090}}},
		{Protocol: nft.UDP, Port: 53, Endpoints: []nft.Endpoint{{IP: ip("10.1.0.2"), Port: 5353}, {IP: ip("10.1.1.2"), Port: 5353}, {IP: ip("10.1.2.2"), Port: 5353}}},
	}}
	if len(got.Ports) != 2 || len(got.Ports[0].Endpoints) != 2 || len(got.Ports[1].Endpoints) != 3 ||
		got.Ports[0].Endpoints[1] != want.Ports[0].Endpoints[1] || got.Ports[1].Endpoints[2] != want.Ports[1].Endpoints[2] ||
		got.ClusterIP != want.ClusterIP || !got.SessionAffinity || got.Ports[0].NodePort != 30080 {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	d := dnsService(svc, eps)
	if len(d.ReadyEndpoints) != 3 || d.ClusterIP != ip("10.96.0.10") || d.Ports[1].Protocol != "udp" {
		t.Fatalf("dns view %+v", d)
	}
	// Headless: DNS only. An empty selector selects nothing.
	svc.Spec.Type, svc.Status.ClusterIp = TypeHeadless, ""
	if _, ok := nftService("default/web", svc, eps); ok {
		t.Fatal("a headless service in the data plane")
	}
	if got := selectEndpoints(decodeEndpoints(entries), nil); got != nil {
		t.Fatalf("empty selector selected %v", got)
	}
}
