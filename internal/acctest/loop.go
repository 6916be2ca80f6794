package acctest

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// DetachLoopsUnder detaches every loop device whose backing file lies
// under dir (unmount them first). Without loop devices it does nothing.
func DetachLoopsUnder(dir string) error {
	out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	if err != nil {
		return fmt.Errorf("list loop devices: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		dev, back, ok := strings.Cut(strings.TrimSpace(line), " ")
		back = strings.TrimSuffix(strings.TrimSpace(back), " (deleted)")
		if !ok || !strings.HasPrefix(back, dir+"/") {
			continue
		}
		if b, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s (%s): %w: %s", dev, back, err, b))
		}
	}
	return errors.Join(errs...)
}
