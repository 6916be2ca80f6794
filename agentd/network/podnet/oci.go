//go:build linux

package podnet

import specs "github.com/opencontainers/runtime-spec/specs-go"

// LinuxNamespace is the OCI namespace entry that makes a pod's containers
// join its network namespace. The runtime adds it to every container of the
// pod:
//
//	oci.WithLinuxNamespace(res.LinuxNamespace())
func (r Result) LinuxNamespace() specs.LinuxNamespace {
	return specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: r.NetnsPath}
}
