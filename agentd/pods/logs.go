package pods

// Container logs.
//
// The shim writes a task's stdout and stderr straight into
// LogDir/<pod>_<uid>/<container>.log (it opens the file O_WRONLY|O_APPEND,
// once per stream: see runtime.logFile for why not cio.LogFile), so
// containers keep running and logging while agentd is down, and agentd
// never has to drain a FIFO. Restarts of a container append to the same
// file. Only the order within one stream is kept: the shim copies stdout
// and stderr independently.
//
// Size cap ("copytruncate"): every LogCheckInterval, a log larger than
// LogMaxBytes/2 is rotated: its newest LogMaxBytes/2 bytes (from a line
// boundary) are copied to <container>.log.1, replacing the previous one,
// and the log is truncated to zero. Because the shim's descriptors have
// O_APPEND, its next write lands at the new end of file (offset 0): no
// sparse hole, no reopen needed (TestLogSizeCap checks both). A
// container's logs thus take at most about LogMaxBytes on disk (plus what
// it writes between two checks), and the newest LogMaxBytes/2 to
// LogMaxBytes bytes are kept. The price, the same as logrotate's
// copytruncate: bytes the container writes in the instant between the
// final copy and the truncate are lost.
//
// Readers (Logs) read .log.1 then .log. Rotation and reads of one file are
// serialized by a per-file lock, and a rotation counter lets a follower
// continue in .log.1 where it stopped before the truncate.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

const (
	// logChunk is the largest piece Logs sends at once.
	logChunk = 32 << 10
	// followPoll is how often a follower looks for new bytes.
	followPoll = 100 * time.Millisecond
	// followRead caps one follower read.
	followRead = 1 << 20
)

// logFiles tracks the log files agentd reads and rotates.
type logFiles struct {
	mu    sync.Mutex
	files map[string]*logFile
}

type logFile struct {
	mu  sync.Mutex
	gen int // rotations so far
	// skip is the offset, in the generation before the last rotation, of
	// the first byte .log.1 holds.
	skip int64
}

func (l *logFiles) get(path string) *logFile {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files == nil {
		l.files = map[string]*logFile{}
	}
	f := l.files[path]
	if f == nil {
		f = &logFile{}
		l.files[path] = f
	}
	return f
}

func (l *logFiles) forget(path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.files, path)
}

// rotateLog rotates path if it exceeds half the cap (see the top of this
// file).
func (m *Manager) rotateLog(path string) error {
	threshold := m.cfg.LogMaxBytes / 2
	if threshold < 1 {
		threshold = 1
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= threshold {
		return nil
	}
	lf := m.logs.get(path)
	lf.mu.Lock()
	defer lf.mu.Unlock()

	src, err := os.Open(path)
	if err != nil {
		return nil // removed meanwhile
	}
	defer src.Close()
	size := fi.Size()
	start := max(size-threshold, 0)
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	r := bufio.NewReaderSize(src, 64<<10)
	if start > 0 {
		// Begin at a line boundary when there is one close by.
		if peek, _ := r.Peek(64 << 10); len(peek) > 0 {
			if i := bytes.IndexByte(peek, '\n'); i >= 0 && i+1 < len(peek) {
				_, _ = r.Discard(i + 1)
				start += int64(i + 1)
			}
		}
	}
	tmp := path + ".1.tmp"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	// Copy to EOF; then catch up with what was appended meanwhile, and
	// truncate right after the last catch-up.
	if _, err := io.Copy(dst, r); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := os.Truncate(path, 0); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := os.Rename(tmp, path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	lf.gen++
	lf.skip = start
	return nil
}

// logLoop checks log sizes every LogCheckInterval.
func (m *Manager) logLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.LogCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.rotateLogs()
	}
}

func (m *Manager) rotateLogs() {
	var paths []string
	m.mu.Lock()
	for _, e := range m.pods {
		for _, c := range e.spec.GetContainers() {
			paths = append(paths, m.logPath(e.name, e.uid, c.GetName()))
		}
	}
	m.mu.Unlock()
	for _, p := range paths {
		if err := m.rotateLog(p); err != nil {
			m.log.Warn("log rotation failed", "path", p, "err", err)
		}
	}
}

// Logs sends a container's log through send: the last tailLines lines (0:
// all that is kept), then, with follow, new output as it is written until
// ctx ends, the pod is deleted or the container terminated for good.
// container may be empty when the pod has a single container.
func (m *Manager) Logs(ctx context.Context, pod, container string, follow bool, tailLines int64, send func(container string, data []byte) error) error {
	m.mu.Lock()
	if !m.started {
		m.mu.Unlock()
		return ErrNotReady
	}
	e := m.pods[pod]
	if e != nil && e.hidden {
		e = nil
	}
	m.mu.Unlock()
	if e == nil {
		return newError(ErrNotFound, "pod %s not found", pod)
	}
	idx := -1
	var names []string
	for i, c := range e.spec.GetContainers() {
		names = append(names, c.GetName())
		if c.GetName() == container {
			idx = i
		}
	}
	switch {
	case container == "" && len(names) == 1:
		idx, container = 0, names[0]
	case container == "":
		return spec.FieldErrors{{Path: spec.Path{}.Field("container"), Msg: fmt.Sprintf("pod %s has %d containers: name one of %v", pod, len(names), names)}}
	case idx < 0:
		return newError(ErrNotFound, "pod %s has no container %s (it has %v)", pod, container, names)
	}
	if tailLines < 0 {
		return spec.FieldErrors{{Path: spec.Path{}.Field("tail_lines"), Msg: "must not be negative"}}
	}

	path := m.logPath(e.name, e.uid, container)
	lf := m.logs.get(path)
	// The current file is read through one descriptor: it survives the
	// truncation of a rotation (same inode) and the removal of a deleted
	// pod's logs, so a follower still gets the last words.
	var cur *os.File
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	open := func() error {
		if cur != nil {
			return nil
		}
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // not written yet
		}
		cur = f
		return err
	}

	lf.mu.Lock()
	gen := lf.gen
	old, err1 := readFrom(path+".1", 0, -1)
	err2 := open()
	var now []byte
	if err2 == nil {
		now, err2 = readAt(cur, 0, -1)
	}
	lf.mu.Unlock()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("read log: %w", err)
	}
	off := int64(len(now))
	data := slices.Concat(old, now)
	if tailLines > 0 {
		data = tail(data, tailLines)
	}
	if err := sendChunks(send, container, data); err != nil {
		return err
	}
	if !follow {
		return nil
	}

	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		// Sampled before reading: output written before the container
		// stopped (the shim flushed it before the task was deleted and the
		// status published) is read in this round.
		alive := m.stillLogging(e, idx)
		lf.mu.Lock()
		var chunk []byte
		var err error
		if lf.gen != gen {
			from := int64(0)
			if lf.gen == gen+1 {
				from = max(off-lf.skip, 0)
			}
			chunk, err = readFrom(path+".1", from, -1)
			gen, off = lf.gen, 0
		}
		err2 := open()
		var more []byte
		if err2 == nil {
			more, err2 = readAt(cur, off, followRead)
		}
		lf.mu.Unlock()
		if err := errors.Join(err, err2); err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		off += int64(len(more))
		chunk = append(chunk, more...)
		if err := sendChunks(send, container, chunk); err != nil {
			return err
		}
		if len(more) == followRead {
			continue // more is waiting
		}
		if !alive {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// readAt reads f from off, at most limit bytes (-1: to the end); nil f
// reads as empty.
func readAt(f *os.File, off, limit int64) ([]byte, error) {
	if f == nil {
		return nil, nil
	}
	var r io.Reader = io.NewSectionReader(f, off, 1<<62)
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	return io.ReadAll(r)
}

// stillLogging reports whether the container can still write: its pod
// exists and it has not terminated for good.
func (m *Manager) stillLogging(e *podEntry, idx int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.gone || m.pods[e.name] != e {
		return false
	}
	cs := e.pod.GetStatus().GetContainers()
	if idx >= len(cs) {
		return false
	}
	return cs[idx].GetState() != StateTerminated
}

// readFrom reads path from off, at most limit bytes (-1: all). A missing
// file reads as empty.
func readFrom(path string, off, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	var r io.Reader = f
	if limit >= 0 {
		r = io.LimitReader(f, limit)
	}
	return io.ReadAll(r)
}

// tail returns the last n lines of data (an unterminated last line counts).
func tail(data []byte, n int64) []byte {
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}

func sendChunks(send func(string, []byte) error, container string, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), logChunk)
		if err := send(container, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
