package server

import (
	"bufio"
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Volumes is the node's volume manager.
type Volumes interface {
	Apply(ctx context.Context, s *herdv1.VolumeSpec) (*herdv1.Volume, bool, error)
	Get(namespace, name string) (*herdv1.Volume, error)
	List(namespace string) ([]*herdv1.Volume, error)
	Delete(ctx context.Context, namespace, name, uid string) (bool, error)
	Backup(ctx context.Context, namespace, name string, w io.Writer) error
	Restore(ctx context.Context, namespace, name string, r io.Reader) (bytes, files int64, err error)
}

// volumeChunk is the size of the data messages of a backup: far below the
// message caps, large enough that framing costs nothing.
const volumeChunk = 256 << 10

// volumesServer implements VolumeService.
type volumesServer struct {
	herdv1.UnimplementedVolumeServiceServer
	s *Server
}

// SetVolumes gives the server the volume manager.
func (s *Server) SetVolumes(v Volumes) { s.volumes = v }

func (s *Server) registerVolumes(g *grpc.Server) {
	herdv1.RegisterVolumeServiceServer(g, &volumesServer{s: s})
}

func (v *volumesServer) need() (Volumes, error) {
	if v.s.volumes == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node has no volume directory (start agentd with --volume-dir)")
	}
	return v.s.volumes, nil
}

func checkVolumeName(namespace, name string) error {
	if namespace != "" {
		if err := checkName("namespace", namespace); err != nil {
			return err
		}
	}
	return checkName("name", name)
}

func volumeKey(namespace, name string) string {
	if namespace == "" {
		namespace = spec.DefaultVolumeNamespace
	}
	return namespace + "/" + name
}

func (v *volumesServer) ApplyVolume(ctx context.Context, req *herdv1.ApplyVolumeRequest) (*herdv1.ApplyVolumeResponse, error) {
	vols, err := v.need()
	if err != nil {
		return nil, err
	}
	if req.GetSpec() == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: required")
	}
	if errs := spec.ValidateVolume(req.GetSpec()); len(errs) > 0 {
		return nil, invalid(prefix(errs, "spec"))
	}
	key := volumeKey(req.GetSpec().GetNamespace(), req.GetSpec().GetName())
	vol, changed, err := vols.Apply(ctx, req.GetSpec())
	if err != nil {
		return nil, v.s.status(err, "apply volume "+key)
	}
	if changed {
		v.s.log.Info("volume applied", "volume", key, "uid", vol.GetUid(), "size", vol.GetSpec().GetSize(),
			"deletion_protection", vol.GetSpec().GetDeletionProtection())
	}
	return &herdv1.ApplyVolumeResponse{Volume: vol, Changed: changed}, nil
}

func (v *volumesServer) GetVolume(ctx context.Context, req *herdv1.GetVolumeRequest) (*herdv1.Volume, error) {
	vols, err := v.need()
	if err != nil {
		return nil, err
	}
	if err := checkVolumeName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	vol, err := vols.Get(req.GetNamespace(), req.GetName())
	return vol, v.s.status(err, "get volume "+volumeKey(req.GetNamespace(), req.GetName()))
}

func (v *volumesServer) ListVolumes(ctx context.Context, req *herdv1.ListVolumesRequest) (*herdv1.ListVolumesResponse, error) {
	vols, err := v.need()
	if err != nil {
		return nil, err
	}
	if ns := req.GetNamespace(); ns != "" {
		if err := checkName("namespace", ns); err != nil {
			return nil, err
		}
	}
	l, err := vols.List(req.GetNamespace())
	if err != nil {
		return nil, v.s.status(err, "list volumes")
	}
	return &herdv1.ListVolumesResponse{Volumes: l}, nil
}

func (v *volumesServer) DeleteVolume(ctx context.Context, req *herdv1.DeleteVolumeRequest) (*herdv1.DeleteVolumeResponse, error) {
	vols, err := v.need()
	if err != nil {
		return nil, err
	}
	if err := checkVolumeName(req.GetNamespace(), req.GetName()); err != nil {
		return nil, err
	}
	if err := checkDeleteUID(req.GetUid()); err != nil {
		return nil, err
	}
	key := volumeKey(req.GetNamespace(), req.GetName())
	existed, err := vols.Delete(ctx, req.GetNamespace(), req.GetName(), req.GetUid())
	if errors.Is(err, spec.ErrOtherIncarnation) {
		return nil, replacedStatus("delete volume "+key, err)
	}
	if err != nil {
		return nil, v.s.status(err, "delete volume "+key)
	}
	if existed {
		v.s.log.Info("volume deleted", "volume", key)
	}
	return &herdv1.DeleteVolumeResponse{Existed: existed}, nil
}

// chunkWriter sends what is written as VolumeChunk messages.
type chunkWriter struct {
	send func(*herdv1.VolumeChunk) error
	n    int64
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), volumeChunk)
		if err := w.send(&herdv1.VolumeChunk{Data: p[:n]}); err != nil {
			return written, err
		}
		written += n
		w.n += int64(n)
		p = p[n:]
	}
	return written, nil
}

func (v *volumesServer) BackupVolume(req *herdv1.BackupVolumeRequest, stream grpc.ServerStreamingServer[herdv1.VolumeChunk]) error {
	vols, err := v.need()
	if err != nil {
		return err
	}
	if err := checkVolumeName(req.GetNamespace(), req.GetName()); err != nil {
		return err
	}
	key := volumeKey(req.GetNamespace(), req.GetName())
	// Buffered so a backup sends full chunks, not one message per header.
	w := &chunkWriter{send: stream.Send}
	bw := bufio.NewWriterSize(w, volumeChunk)
	err = vols.Backup(stream.Context(), req.GetNamespace(), req.GetName(), bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return v.s.status(err, "back up volume "+key)
	}
	v.s.log.Info("volume backed up", "volume", key, "bytes", w.n, "by", CallerName(stream.Context()))
	return nil
}

// chunkReader reads the data of the messages after a restore's first.
type chunkReader struct {
	recv func() (*herdv1.RestoreVolumeRequest, error)
	buf  []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		m, err := r.recv()
		if err != nil {
			return 0, err // io.EOF at the end of the stream
		}
		if m.GetName() != "" || m.GetNamespace() != "" {
			return 0, status.Error(codes.InvalidArgument, "only the first message names the volume")
		}
		r.buf = m.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (v *volumesServer) RestoreVolume(stream grpc.ClientStreamingServer[herdv1.RestoreVolumeRequest, herdv1.RestoreVolumeResponse]) error {
	vols, err := v.need()
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return status.Error(codes.InvalidArgument, "restore: no first message naming the volume")
	}
	if err := checkVolumeName(first.GetNamespace(), first.GetName()); err != nil {
		return err
	}
	key := volumeKey(first.GetNamespace(), first.GetName())
	r := &chunkReader{recv: stream.Recv, buf: first.GetData()}
	n, files, err := vols.Restore(stream.Context(), first.GetNamespace(), first.GetName(), r)
	if err != nil {
		return v.s.status(err, "restore volume "+key)
	}
	v.s.log.Info("volume restored", "volume", key, "bytes", n, "files", files, "by", CallerName(stream.Context()))
	return stream.SendAndClose(&herdv1.RestoreVolumeResponse{Bytes: n, Files: files})
}
