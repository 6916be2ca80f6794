package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/herd-project/terraform-provider-herd/agentd/volumes"
)

// startVolumes opens the node's volumes and mounts them (reattaching their
// loop devices after a reboot).
func startVolumes(ctx context.Context, cfg Config, log *slog.Logger) (*volumes.Manager, error) {
	dir := cfg.VolumeDir
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, "volumes")
	}
	vols, err := volumes.New(dir, log.With("component", "volumes"))
	if err != nil {
		return nil, err
	}
	if err := vols.Start(ctx); err != nil {
		return nil, fmt.Errorf("start volumes: %w", err)
	}
	return vols, nil
}

// scratchImages gives size-limited disk empty_dirs volumes' ext4 images.
type scratchImages struct{}

func (scratchImages) Create(ctx context.Context, img string, size int64) error {
	return volumes.CreateImage(ctx, img, size)
}

func (scratchImages) Mount(ctx context.Context, img, mnt string) error {
	return volumes.Mount(ctx, img, mnt)
}

func (scratchImages) Unmount(ctx context.Context, img, mnt string) error {
	return volumes.Unmount(ctx, img, mnt)
}
