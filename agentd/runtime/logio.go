package runtime

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/cio"
)

// logFile returns a cio.Creator that has the shim append the task's stdout
// and stderr to path itself, as cio.LogFile does, but without
// cio.LogFile's data loss.
//
// With cio.LogFile (the "file" URI scheme) the runc shim opens path once
// and shares the descriptor between its stdout and stderr copiers, but the
// stdout copier closes the descriptor itself when stdout ends, so stderr
// output still in flight when the process exits is lost (the last lines
// before a crash: the ones that matter). Measured here: 7 of 30 runs under
// CPU load lost a final stderr line (containerd 1.6.20; the code is the
// same in 2.1).
//
// Here stdout and stderr name the same file through two different paths
// ("dir/name" and "dir/./name"), so the shim opens it twice, O_APPEND:
// each copier owns its descriptor and nothing is cut short. The shim
// treats plain paths that are not FIFOs exactly like its "file" scheme
// (containerd's copyPipes); the file must exist, so it is created here.
func logFile(path string) cio.Creator {
	return func(string) (cio.IO, error) {
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("log path %q is not absolute", path)
		}
		path = filepath.Clean(path)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("create log dir: %w", err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("create log file: %w", err)
		}
		f.Close()
		alias := filepath.Dir(path) + "/./" + filepath.Base(path)
		return &shimFileIO{config: cio.Config{Stdout: path, Stderr: alias}}, nil
	}
}

// shimFileIO is IO the shim handles entirely: nothing to copy, wait for or
// close on this side.
type shimFileIO struct{ config cio.Config }

func (s *shimFileIO) Config() cio.Config { return s.config }
func (s *shimFileIO) Cancel()            {}
func (s *shimFileIO) Wait()              {}
func (s *shimFileIO) Close() error       { return nil }
