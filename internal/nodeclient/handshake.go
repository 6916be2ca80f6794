package nodeclient

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// HandshakeError is an RPC that failed because the TLS connection to the
// node could not be set up. gRPC reports such failures as Unavailable with
// the cause flattened into text; HandshakeError keeps the status (Error and
// GRPCStatus are the RPC's) and the TLS error itself (Unwrap), so callers
// tell an untrusted node certificate (x509 errors,
// *tls.CertificateVerificationError) from the node refusing the client (a
// *net.OpError with Op "remote error", the node's TLS alert) with errors.As.
type HandshakeError struct {
	st  *status.Status
	err error
}

func (e *HandshakeError) Error() string              { return e.st.Err().Error() }
func (e *HandshakeError) GRPCStatus() *status.Status { return e.st }
func (e *HandshakeError) Unwrap() error              { return e.err }

// IsRemoteAlert reports whether err carries a TLS alert the node sent:
// it refused the handshake (with TLS 1.3 most often the client
// certificate, which the client learns only after its side is done).
func IsRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// handshakeRecorder remembers the last TLS failure of one client
// connection, so that the RPCs that fail because of it carry it. The next
// successful handshake forgets it; a connection refused in TLS once stays
// refused for its lifetime anyway (its certificates do not change).
type handshakeRecorder struct {
	mu   sync.Mutex
	last error
}

func (r *handshakeRecorder) set(err error) {
	r.mu.Lock()
	r.last = err
	r.mu.Unlock()
}

func (r *handshakeRecorder) get() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// annotate wraps an Unavailable RPC error in a HandshakeError when the
// connection's last attempt failed in TLS.
func (r *handshakeRecorder) annotate(err error) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	last := r.get()
	if last == nil {
		return err
	}
	return &HandshakeError{st: status.Convert(err), err: last}
}

func (r *handshakeRecorder) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return r.annotate(invoker(ctx, method, req, reply, cc, opts...))
}

func (r *handshakeRecorder) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	return s, r.annotate(err)
}

// dialOptions returns the options that record TLS failures of creds into r.
func (r *handshakeRecorder) dialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(&recordingCreds{TransportCredentials: creds, rec: r}),
		grpc.WithChainUnaryInterceptor(r.unary),
		grpc.WithChainStreamInterceptor(r.stream),
	}
}

// recordingCreds records the outcome of every client handshake.
type recordingCreds struct {
	credentials.TransportCredentials
	rec *handshakeRecorder
}

func (c *recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.rec.set(err)
	if err != nil {
		return nil, nil, err
	}
	rc := &recordingConn{Conn: conn, rec: c.rec}
	if sc, ok := conn.(syscall.Conn); ok {
		// Keep the socket reachable for gRPC's socket options.
		return &recordingSyscallConn{recordingConn: rc, sc: sc}, info, nil
	}
	return rc, info, nil
}

func (c *recordingCreds) Clone() credentials.TransportCredentials {
	return &recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), rec: c.rec}
}

// recordingConn records the node's TLS alert: with TLS 1.3 a refused
// client certificate arrives on the first read after the handshake.
type recordingConn struct {
	net.Conn
	rec *handshakeRecorder
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && IsRemoteAlert(err) {
		c.rec.set(err)
	}
	return n, err
}

type recordingSyscallConn struct {
	*recordingConn
	sc syscall.Conn
}

func (c *recordingSyscallConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }
