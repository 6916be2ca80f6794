package acctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// toolEnv names, per tool, the environment variable that points at a
// prebuilt binary and takes precedence over the cache.
var toolEnv = map[string]string{
	"pulumi":         "HERD_PULUMI_CLI",
	"kube-apiserver": KubeAPIServerEnv,
	"etcd":           EtcdEnv,
}

// Tool returns the path of a tool that scripts/tool.sh builds (tofu,
// terraform, pulumi, kube-apiserver, etcd, ...): the binary named by the
// tool's override variable when it has one and it is set, else the binary
// in tool.sh's cache at the version pinned under tools/. tool.sh itself
// (`tool.sh --path`) says where that is, so the cache location and version
// are worked out in one place. Tool never builds; the error says how to.
func Tool(name string) (string, error) {
	return tool(name, false)
}

// BuildTool is Tool, but builds the tool with scripts/tool.sh when it is not
// cached yet, which can take many minutes for the large ones.
func BuildTool(name string) (string, error) {
	return tool(name, true)
}

func tool(name string, build bool) (string, error) {
	if env := toolEnv[name]; env != "" {
		if p := os.Getenv(env); p != "" {
			if err := executable(p); err != nil {
				return "", fmt.Errorf("%s: %w", env, err)
			}
			return p, nil
		}
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("finding scripts/tool.sh for %s: %w", name, err)
	}
	args := []string{name}
	if !build {
		args = []string{"--path", name}
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "tool.sh"), args...)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/tool.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	p := strings.TrimSpace(string(out))
	if err := executable(p); err != nil {
		hint := "build it with `scripts/tool.sh " + name + "`"
		if env := toolEnv[name]; env != "" {
			hint = "set " + env + " or " + hint
		}
		return "", fmt.Errorf("no %s: %s (%w)", name, hint, err)
	}
	return p, nil
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
