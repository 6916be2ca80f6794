package acctest

import (
	"os"
	"testing"
)

// TestMain tears down what the package's own tests share (SharedKube).
func TestMain(m *testing.M) { os.Exit(Main(m)) }
