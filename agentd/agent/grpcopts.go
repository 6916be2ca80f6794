package agent

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// maxRecvMsgBytes caps one request message (gRPC's default is 4 MiB). The
// largest request with a hard bound is ApplySecret: keys and values total
// at most spec.MaxSecretBytes (1 MiB), and protobuf adds at most 6 bytes
// per map entry of under 128 bytes. The worst case is therefore some 333 000
// keys of 1 to 4 characters with empty values: about 2.9 MiB in all (see
// TestMaxRecvMsgCoversLargestSecret). A pod (ApplyPod, a deployment's
// template) is bounded by what a container can be started with: execve
// takes 2 MiB of arguments and environment with the default 8 MiB stack
// limit, so a pod whose containers need more could not start anyway.
const maxRecvMsgBytes = 3 << 20

// Stream and keepalive limits of agentd's gRPC servers.
const (
	// maxConcurrentStreams bounds the RPCs one connection runs at once; a
	// client past it waits for a stream to end.
	maxConcurrentStreams = 256
	// keepaliveMinTime: clients pinging more often get GOAWAY (a ping flood
	// costs the server; herd's clients send no keepalive pings at all).
	keepaliveMinTime = 10 * time.Second
	// keepaliveTime and keepaliveTimeout: after a minute without traffic
	// the server pings, and closes the connection of a peer that does not
	// answer within 20 s (a vanished client must not keep its streams,
	// such as a followed log, forever).
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
	// maxConnectionIdle closes connections without an RPC for this long.
	maxConnectionIdle = 15 * time.Minute
)

// serverOptions are the limits shared by agentd's TCP and unix socket
// servers. It takes the Config so that a limit can become a flag without
// touching the callers; none is one yet.
func serverOptions(_ Config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvMsgBytes),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: maxConnectionIdle,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
	}
}
