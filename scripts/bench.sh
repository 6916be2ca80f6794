#!/usr/bin/env bash
# make bench: the figures the issues ask for, each beside its baseline,
# measured in the same run on the same machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
count="${BENCH_COUNT:-30}"
echo "== pod start latency (image present): herd apply-to-Running vs raw containerd create+start, ${count} runs each"
go test -run '^$' -bench 'BenchmarkPodStart' -benchtime "${count}x" -count 1 ./internal/bench/ | tee "$out"
awk '
  /BenchmarkPodStart\/herd-apply-to-running/ { for (i=1;i<=NF;i++) if ($(i+1)=="ns/op") herd=$i }
  /BenchmarkPodStart\/containerd-create-start/ { for (i=1;i<=NF;i++) if ($(i+1)=="ns/op") raw=$i }
  END {
    if (herd == "" || raw == "") { print "bench: missing results"; exit 1 }
    printf "\n%-36s %10.1f ms\n", "herd ApplyPod -> Running:", herd/1e6
    printf "%-36s %10.1f ms\n", "containerd create+start (baseline):", raw/1e6
    printf "%-36s %10.2f x\n", "ratio herd / containerd:", herd/raw
  }' "$out"
