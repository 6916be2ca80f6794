package tests

import "os"

var builtDirs []string

// cleanupBuilt removes binaries the tests built.
func cleanupBuilt() {
	for _, d := range builtDirs {
		_ = os.RemoveAll(d)
	}
}
