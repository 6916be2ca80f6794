package main

import (
	"errors"
	"flag"
	"io"
	"strings"
)

// newFlagSet returns a FlagSet that reports errors to the caller instead of
// printing them; parseArgs turns them into usage errors.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses args with fs, allowing flags before and after positional
// arguments (e.g. "certs node NAME --ip IP"); everything after "--" is
// positional. It returns the positional arguments. If -h/--help was given
// it prints usageText to stdout and returns help == true.
func parseArgs(fs *flag.FlagSet, args []string, usageText string, stdout io.Writer) (positional []string, help bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				_, _ = io.WriteString(stdout, usageText)
				return nil, true, nil
			}
			return nil, false, newUsageError(usageText, "%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), false, nil
		}
		if len(rest) == 0 {
			return positional, false, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable flag; each occurrence may also hold a
// comma-separated list.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
