#!/usr/bin/env bash
# Regenerates the Go code for api from its .proto files with pinned
# generators (tools/go.mod) and Debian 12's protoc, so the output is
# byte-for-byte reproducible.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v protoc >/dev/null || { echo "protoc missing: run scripts/deps.sh" >&2; exit 1; }
gen_go="$(scripts/tool.sh protoc-gen-go)"
gen_grpc="$(scripts/tool.sh protoc-gen-go-grpc)"
protoc -I api \
  --plugin=protoc-gen-go="$gen_go" --plugin=protoc-gen-go-grpc="$gen_grpc" \
  --go_out=api --go_opt=paths=source_relative \
  --go-grpc_out=api --go-grpc_opt=paths=source_relative \
  herd/v1/herd.proto
