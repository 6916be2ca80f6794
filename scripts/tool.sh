#!/usr/bin/env bash
# Builds a pinned tool from the Go module proxy once and prints its path.
# Tools are cached outside the repo, keyed by name and version, so a second
# run (or CI on the same machine) skips the build.
#   scripts/tool.sh [--path] tofu|terraform|protoc-gen-go|protoc-gen-go-grpc|tfplugindocs|pulumi|kube-apiserver|etcd|golangci-lint
# --path prints where the tool is (or would be) cached without building it;
# the tests look tools up that way (internal/acctest/tools.go).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${HERD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herd/tools}"
mkdir -p "$cache"

# version of a module as required by a tools go.mod
modver() { awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit}' "$root/$1/go.mod"; }

build=yes
if [ "${1:-}" = --path ]; then build=no; shift; fi
name="${1:?usage: scripts/tool.sh [--path] NAME}"
case "$name" in
  tofu)
    dir=tools/tofu; pkg=github.com/opentofu/opentofu/cmd/tofu
    ver=$(modver "$dir" github.com/opentofu/opentofu)
    ldflags="-X github.com/opentofu/opentofu/version.dev=no" ;;
  terraform)
    # tools/terraform stubs the remote state backends Terraform keeps in
    # nested modules. dev=no drops the "-dev" suffix from the version, which
    # the tests compare against. Measured cold: 7.5 min on 2 cores shared
    # with two other tool builds, 71 MB.
    dir=tools/terraform; pkg=github.com/hashicorp/terraform
    ver=$(modver "$dir" github.com/hashicorp/terraform)
    ldflags="-X github.com/hashicorp/terraform/version.dev=no" ;;
  protoc-gen-go)
    dir=tools; pkg=google.golang.org/protobuf/cmd/protoc-gen-go
    ver=$(modver "$dir" google.golang.org/protobuf); ldflags="" ;;
  protoc-gen-go-grpc)
    dir=tools; pkg=google.golang.org/grpc/cmd/protoc-gen-go-grpc
    ver=$(modver "$dir" google.golang.org/grpc/cmd/protoc-gen-go-grpc); ldflags="" ;;
  tfplugindocs)
    dir=tools; pkg=github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs
    ver=$(modver "$dir" github.com/hashicorp/terraform-plugin-docs); ldflags="" ;;
  pulumi)
    # Pulumi CLI for the end-to-end tests of the bridged provider (pulumi/).
    dir=tools/pulumi; pkg=github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    ver=$(modver "$dir" github.com/pulumi/pulumi/pkg/v3)
    ldflags="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$ver" ;;
  kube-apiserver)
    # Kubernetes API server for the KubeVirt tests (internal/acctest/kube.go);
    # tools/kube replaces the 31 staging modules. 4-7 min cold on 2 cores
    # (13 min on a busier machine), 2.1 GB peak, 146 MB.
    dir=tools/kube; pkg=k8s.io/kubernetes/cmd/kube-apiserver
    ver=$(modver "$dir" k8s.io/kubernetes); minor=${ver#v1.}; minor=${minor%%.*}
    ldflags="-X k8s.io/component-base/version.gitVersion=$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" ;;
  etcd)
    # etcd for kube-apiserver, at the version k8s.io/kubernetes requires.
    dir=tools/kube; pkg=go.etcd.io/etcd/server/v3
    ver=$(modver "$dir" go.etcd.io/etcd/server/v3); ldflags="" ;;
  golangci-lint)
    dir=tools/golangci-lint; pkg=github.com/golangci/golangci-lint/v2/cmd/golangci-lint
    ver=$(modver "$dir" github.com/golangci/golangci-lint/v2)
    ldflags="-X main.version=${ver#v}" ;;
  *) echo "tool.sh: unknown tool $name" >&2; exit 2 ;;
esac
[ -n "$ver" ] || { echo "tool.sh: no version for $name in $dir/go.mod" >&2; exit 2; }
out="$cache/$name-$ver/$name"
if [ "$build" = yes ] && [ ! -x "$out" ]; then
  echo "tool.sh: building $name $ver (cached in $cache)" >&2
  mkdir -p "$(dirname "$out")"
  (cd "$root/$dir" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg")
  mv "$out.tmp.$$" "$out"  # per-process temp: concurrent first builds (tests) do not clobber each other
fi
echo "$out"
