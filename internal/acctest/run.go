package acctest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
)

const (
	// Snapshotter is the snapshotter the harness pulls into and creates
	// containers with. overlayfs works on Debian 12's ext4 root.
	Snapshotter = "overlayfs"
	// Platform is the platform the harness pulls.
	Platform = "linux/amd64"
)

// NewResolver returns a containerd resolver that speaks plain HTTP to host
// ("127.0.0.1:PORT") and, when username or password is set, answers that
// host's basic-auth challenge with them. Other hosts get HTTPS and no
// credentials.
func NewResolver(host, username, password string) remotes.Resolver {
	var authOpts []docker.AuthorizerOpt
	if username != "" || password != "" {
		authOpts = append(authOpts, docker.WithAuthCreds(func(h string) (string, string, error) {
			if h == host {
				return username, password, nil
			}
			return "", "", nil
		}))
	}
	httpClient := &http.Client{Timeout: 2 * time.Minute}
	authOpts = append(authOpts, docker.WithAuthClient(httpClient))
	hosts := docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(func(h string) (bool, error) { return h == host, nil }),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(authOpts...)),
		docker.WithClient(httpClient),
	)
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts})
}

// PullOpts are the client.Pull options the harness uses: resolver, the
// linux/amd64 platform, and unpacking into the overlayfs snapshotter.
func PullOpts(resolver remotes.Resolver) []client.RemoteOpt {
	return []client.RemoteOpt{
		client.WithResolver(resolver),
		client.WithPlatform(Platform),
		client.WithPullUnpack,
		client.WithPullSnapshotter(Snapshotter),
	}
}

// PullImage pulls ref with PullOpts(resolver) into the namespace of ctx
// (see Containerd.Context) and unpacks it.
func PullImage(ctx context.Context, cl *client.Client, ref string, resolver remotes.Resolver) (client.Image, error) {
	img, err := cl.Pull(ctx, ref, PullOpts(resolver)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

// NewContainer creates container id from img the way the harness runs
// containers: a fresh overlayfs snapshot "<id>-rootfs", the runc v2
// runtime with its state in RuncRoot (RuntimeOpt), and a default spec
// from the image config, then specOpts (oci.WithProcessArgs, ...).
// The namespace is taken from ctx, else c.Namespace.
func (c *Containerd) NewContainer(ctx context.Context, id string, img client.Image, specOpts ...oci.SpecOpts) (client.Container, error) {
	ctx = c.Context(ctx)
	spec := append([]oci.SpecOpts{oci.WithImageConfig(img)}, specOpts...)
	ctr, err := c.client.NewContainer(ctx, id,
		client.WithImage(img),
		client.WithSnapshotter(Snapshotter),
		client.WithNewSnapshot(id+"-rootfs", img),
		c.RuntimeOpt(),
		client.WithNewSpec(spec...),
	)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	return ctr, nil
}

// RunContainer runs args in a new container id from img (see
// NewContainer), with stdout and stderr appended to logPath (absolute;
// the shim creates it), waits for the process to exit and returns its exit
// code. The task, container and snapshot are deleted afterwards, also on
// error. The namespace is taken from ctx, else c.Namespace.
func (c *Containerd) RunContainer(ctx context.Context, img client.Image, id, logPath string, args ...string) (exitCode uint32, err error) {
	ctx = c.Context(ctx)
	if !filepath.IsAbs(logPath) {
		return 0, fmt.Errorf("run container %s: log path %q is not absolute", id, logPath)
	}
	ctr, err := c.NewContainer(ctx, id, img, oci.WithProcessArgs(args...))
	if err != nil {
		return 0, fmt.Errorf("run container: %w", err)
	}
	defer func() {
		// Clean up even if ctx is done already.
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), taskCleanupTimeout)
		defer cancel()
		if cerr := deleteContainer(cleanupCtx, ctr); cerr != nil {
			err = errors.Join(err, fmt.Errorf("run container %s: cleanup: %w", id, cerr))
		}
	}()

	task, err := ctr.NewTask(ctx, cio.LogFile(logPath))
	if err != nil {
		return 0, fmt.Errorf("run container %s: create task: %w", id, err)
	}
	// Wait before Start, so that a fast exit is not missed.
	exited, err := task.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("run container %s: wait: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return 0, fmt.Errorf("run container %s: start task: %w", id, err)
	}
	select {
	case status := <-exited:
		code, _, err := status.Result()
		if err != nil {
			return 0, fmt.Errorf("run container %s: exit status: %w", id, err)
		}
		return code, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("run container %s: %w", id, ctx.Err())
	}
}
