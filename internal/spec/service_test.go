package spec

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func validService() *herdv1.ServiceSpec {
	return &herdv1.ServiceSpec{
		Namespace: "shop",
		Name:      "web",
		Selector:  map[string]string{"app": "web", "example.com/tier": "front"},
		Ports: []*herdv1.ServicePort{
			{Name: "http", Port: 80, TargetPortName: "http"},
			{Name: "dns", Port: 53, Protocol: "UDP", TargetPort: 5353},
		},
	}
}

// Each case breaks one thing and must produce exactly one error, at the
// path that holds the problem.
func TestValidateService(t *testing.T) {
	nodePort := func(s *herdv1.ServiceSpec) {
		s.Type = ServiceTypeNodePort
		s.Ports[0].NodePort = 30080
	}
	tests := []mutationCase[herdv1.ServiceSpec]{
		{"valid", func(*herdv1.ServiceSpec) {}, "", ""},
		{"defaults left empty", func(s *herdv1.ServiceSpec) {
			s.Namespace, s.Ports = "", []*herdv1.ServicePort{{Port: 80}}
		}, "", ""},
		{"explicit defaults", func(s *herdv1.ServiceSpec) {
			s.Type, s.SessionAffinity, s.Ports[0].Protocol = ServiceTypeClusterIP, SessionAffinityNone, ProtocolTCP
		}, "", ""},
		{"node ports", nodePort, "", ""},
		{"allocated node port", func(s *herdv1.ServiceSpec) { s.Type = ServiceTypeNodePort }, "", ""},
		{"same node port for TCP and UDP", func(s *herdv1.ServiceSpec) {
			nodePort(s)
			s.Ports[1].NodePort = 30080
		}, "", ""},
		{"same port for TCP and UDP", func(s *herdv1.ServiceSpec) { s.Ports[1].Port = 80 }, "", ""},
		{"headless", func(s *herdv1.ServiceSpec) { s.Type = ServiceTypeHeadless }, "", ""},
		{"client IP affinity", func(s *herdv1.ServiceSpec) { s.SessionAffinity = SessionAffinityClientIP }, "", ""},
		{"bad namespace", func(s *herdv1.ServiceSpec) { s.Namespace = "Shop" }, "namespace", "RFC 1123"},
		{"bad name", func(s *herdv1.ServiceSpec) { s.Name = "web_1" }, "name", "RFC 1123"},
		{"empty name", func(s *herdv1.ServiceSpec) { s.Name = "" }, "name", "must not be empty"},
		{"no selector", func(s *herdv1.ServiceSpec) { s.Selector = nil }, "selector", "herd has no manual endpoints"},
		{"bad selector key", func(s *herdv1.ServiceSpec) { s.Selector["bad key!"] = "x" }, `selector["bad key!"]`, "label key"},
		{"bad selector value", func(s *herdv1.ServiceSpec) { s.Selector["app"] = "-web" }, `selector["app"]`, "label value"},
		{"bad type", func(s *herdv1.ServiceSpec) { s.Type = "LoadBalancer" }, "type", `invalid service type "LoadBalancer"`},
		{"bad affinity", func(s *herdv1.ServiceSpec) { s.SessionAffinity = "Sticky" }, "session_affinity", `invalid session affinity "Sticky"`},
		{"headless with affinity", func(s *herdv1.ServiceSpec) {
			s.Type, s.SessionAffinity = ServiceTypeHeadless, SessionAffinityClientIP
		}, "session_affinity", "Headless services have no cluster IP"},
		{"no ports", func(s *herdv1.ServiceSpec) { s.Ports = nil }, "ports", "at least one port"},
		{"too many ports", func(s *herdv1.ServiceSpec) {
			s.Ports = nil
			for i := range MaxServicePorts + 1 {
				s.Ports = append(s.Ports, &herdv1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(1000 + i)})
			}
		}, "ports", "at most 100 ports, got 101"},
		{"nil port", func(s *herdv1.ServiceSpec) { s.Ports[1] = nil }, "ports[1]", "port is empty"},
		{"port zero", func(s *herdv1.ServiceSpec) { s.Ports[1].Port = 0 }, "ports[1].port", "between 1 and 65535, got 0"},
		{"port too large", func(s *herdv1.ServiceSpec) { s.Ports[1].Port = 65536 }, "ports[1].port", "between 1 and 65535, got 65536"},
		{"bad protocol", func(s *herdv1.ServiceSpec) { s.Ports[1].Protocol = "SCTP" }, "ports[1].protocol", "TCP or UDP"},
		{"lowercase protocol", func(s *herdv1.ServiceSpec) { s.Ports[1].Protocol = "udp" }, "ports[1].protocol", "TCP or UDP"},
		{"duplicate port", func(s *herdv1.ServiceSpec) {
			s.Ports[1].Port, s.Ports[1].Protocol = 80, ""
		}, "ports[1].port", "duplicate port 80/TCP (also ports[0])"},
		{"bad port name", func(s *herdv1.ServiceSpec) { s.Ports[1].Name = "DNS_1" }, "ports[1].name", "invalid port name"},
		{"numeric port name", func(s *herdv1.ServiceSpec) { s.Ports[1].Name = "53" }, "ports[1].name", "invalid port name"},
		{"duplicate port name", func(s *herdv1.ServiceSpec) { s.Ports[1].Name = "http" }, "ports[1].name", `duplicate port name "http" (also ports[0])`},
		{"unnamed port among several", func(s *herdv1.ServiceSpec) { s.Ports[1].Name = "" }, "ports[1].name", "required when the service has more than one port"},
		{"negative target port", func(s *herdv1.ServiceSpec) { s.Ports[1].TargetPort = -1 }, "ports[1].target_port", "between 1 and 65535"},
		{"target port too large", func(s *herdv1.ServiceSpec) { s.Ports[1].TargetPort = 70000 }, "ports[1].target_port", "between 1 and 65535"},
		{"bad target port name", func(s *herdv1.ServiceSpec) { s.Ports[0].TargetPortName = "Http" }, "ports[0].target_port_name", "invalid port name"},
		{"both targets", func(s *herdv1.ServiceSpec) { s.Ports[0].TargetPort = 8080 }, "ports[0].target_port_name", "not both"},
		{"node port for ClusterIP", func(s *herdv1.ServiceSpec) { s.Ports[0].NodePort = 30080 }, "ports[0].node_port", "only allowed for type NodePort, not ClusterIP"},
		{"node port for Headless", func(s *herdv1.ServiceSpec) {
			s.Type, s.Ports[0].NodePort = ServiceTypeHeadless, 30080
		}, "ports[0].node_port", "only allowed for type NodePort, not Headless"},
		{"node port below range", func(s *herdv1.ServiceSpec) {
			nodePort(s)
			s.Ports[0].NodePort = 8080
		}, "ports[0].node_port", "between 30000 and 32767"},
		{"node port above range", func(s *herdv1.ServiceSpec) {
			nodePort(s)
			s.Ports[0].NodePort = 32768
		}, "ports[0].node_port", "between 30000 and 32767"},
		{"duplicate node port", func(s *herdv1.ServiceSpec) {
			nodePort(s)
			s.Ports[1].NodePort, s.Ports[1].Protocol = 30080, ""
		}, "ports[1].node_port", "duplicate node port 30080/TCP (also ports[0])"},
	}
	runMutations(t, tests, validService, ValidateService, true)
}

func TestValidateServiceReportsEverything(t *testing.T) {
	s := validService()
	s.Name, s.Selector, s.Ports[1].Port = "Web", nil, 0
	errs := ValidateService(s)
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path.String())
	}
	if got, want := strings.Join(paths, " "), "name selector ports[1].port"; got != want {
		t.Fatalf("error paths %q, want %q (%v)", got, want, errs)
	}
	if errs := ValidateService(nil); len(errs) != 1 {
		t.Fatalf("want one error for a nil spec, got %v", errs)
	}
}

func TestDefaultService(t *testing.T) {
	in := &herdv1.ServiceSpec{
		Name:     "web",
		Selector: map[string]string{"app": "web"},
		Ports: []*herdv1.ServicePort{
			{Name: "http", Port: 80},
			{Name: "named", Port: 81, TargetPortName: "web"},
			{Name: "num", Port: 82, Protocol: "UDP", TargetPort: 8082},
		},
	}
	orig := proto.Clone(in)
	got := DefaultService(in)
	want := &herdv1.ServiceSpec{
		Namespace:       "default",
		Name:            "web",
		Selector:        map[string]string{"app": "web"},
		Type:            "ClusterIP",
		SessionAffinity: "None",
		Ports: []*herdv1.ServicePort{
			{Name: "http", Port: 80, Protocol: "TCP", TargetPort: 80},
			{Name: "named", Port: 81, Protocol: "TCP", TargetPortName: "web"},
			{Name: "num", Port: 82, Protocol: "UDP", TargetPort: 8082},
		},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("DefaultService:\n got %v\nwant %v", got, want)
	}
	if !proto.Equal(in, orig) {
		t.Fatalf("DefaultService changed its argument: %v", in)
	}
	if !proto.Equal(DefaultService(got), got) {
		t.Fatal("DefaultService is not idempotent")
	}
	kept := &herdv1.ServiceSpec{Namespace: "shop", Type: "NodePort", SessionAffinity: "ClientIP",
		Ports: []*herdv1.ServicePort{{Port: 80, NodePort: 30080}}}
	if d := DefaultService(kept); d.Namespace != "shop" || d.Type != "NodePort" || d.SessionAffinity != "ClientIP" || d.Ports[0].NodePort != 30080 {
		t.Fatalf("DefaultService overwrote set values: %v", d)
	}
	if DefaultService(nil) != nil {
		t.Fatal("DefaultService(nil) != nil")
	}
}
