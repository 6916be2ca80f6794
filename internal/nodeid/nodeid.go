// Package nodeid parses and formats the identifiers herd uses to address
// nodes and pods:
//
//   - a node id is NAME@ADDRESS, where NAME is the node's name (an RFC 1123
//     label, and the name its TLS certificate must carry) and ADDRESS is
//     either "host:port" (gRPC over mTLS) or "unix:///absolute/path.sock"
//     (agentd's local socket, plaintext);
//   - a pod id is NODEID/PODNAME. A unix ADDRESS contains '/', so a pod id is
//     split at its last '/'.
//
// It lives in its own package so that both the provider (client pool) and
// the resources can use it without an import cycle.
package nodeid

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// UnixScheme prefixes the address of a local agentd socket.
const UnixScheme = "unix://"

// Format returns the node id NAME@ADDRESS. It does not validate.
func Format(name, addr string) string { return name + "@" + addr }

// Parse splits a node id NAME@ADDRESS and validates both parts.
func Parse(id string) (name, addr string, err error) {
	name, addr, ok := strings.Cut(id, "@")
	if !ok {
		return "", "", fmt.Errorf("invalid node id %q: want NAME@ADDRESS, e.g. \"node-a@10.0.0.5:7443\" or \"node-a@unix:///run/herd/agentd.sock\" (the id of a herd_node)", id)
	}
	if err := spec.ValidateName(name); err != nil {
		return "", "", fmt.Errorf("invalid node id %q: node name %w", id, err)
	}
	if err := ValidateAddress(addr); err != nil {
		return "", "", fmt.Errorf("invalid node id %q: %w", id, err)
	}
	return name, addr, nil
}

// IsUnix reports whether addr is a local socket address (unix:///path).
func IsUnix(addr string) bool { return strings.HasPrefix(addr, UnixScheme) }

// ValidateAddress checks a node address: "host:port" with a port in
// 1..65535, or "unix:///absolute/path".
func ValidateAddress(addr string) error {
	if addr == "" {
		return errors.New("address must not be empty: want \"host:port\" or \"unix:///path/to/agentd.sock\"")
	}
	if IsUnix(addr) {
		p := strings.TrimPrefix(addr, UnixScheme)
		if !strings.HasPrefix(p, "/") || p == "/" || path.Clean(p) != p || strings.ContainsRune(p, 0) {
			return fmt.Errorf("invalid address %q: a unix socket address must be \"unix://\" followed by a clean absolute path, e.g. \"unix:///run/herd/agentd.sock\"", addr)
		}
		return nil
	}
	if strings.Contains(addr, "://") {
		return fmt.Errorf("invalid address %q: want \"host:port\" (no scheme) or \"unix:///path/to/agentd.sock\"", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want \"host:port\", e.g. \"10.0.0.5:7443\" or \"[fd00::5]:7443\", or \"unix:///path/to/agentd.sock\"", addr)
	}
	if host == "" || strings.ContainsAny(host, " /@") {
		return fmt.Errorf("invalid address %q: missing or invalid host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("invalid address %q: port must be a number between 1 and 65535", addr)
	}
	return nil
}

// FormatPod returns the pod id NODEID/NAME.
func FormatPod(nodeID, podName string) string { return nodeID + "/" + podName }

// ParsePod splits a pod id NODEID/NAME at its last '/' and validates both
// parts.
func ParsePod(id string) (nodeID, podName string, err error) {
	i := strings.LastIndex(id, "/")
	if i < 0 {
		return "", "", fmt.Errorf("invalid pod id %q: want NODEID/NAME where NODEID is a herd_node id (NAME@ADDRESS), e.g. \"node-a@10.0.0.5:7443/web\"", id)
	}
	nodeID, podName = id[:i], id[i+1:]
	if _, _, err := Parse(nodeID); err != nil {
		return "", "", fmt.Errorf("invalid pod id %q: %w", id, err)
	}
	if err := spec.ValidateName(podName); err != nil {
		return "", "", fmt.Errorf("invalid pod id %q: pod name %w", id, err)
	}
	return nodeID, podName, nil
}
