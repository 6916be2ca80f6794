#!/usr/bin/env bash
# make bench: the figures the issues ask for, each beside its baseline,
# measured in the same run on the same machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
count="${BENCH_COUNT:-40}"
echo "== pod start latency, image present: herd ApplyPod -> Running vs raw containerd create+start"
echo "   (${count} of each, alternating in one loop; medians)"
go test -run '^$' -bench 'BenchmarkPodStart' -benchtime "${count}x" -count 1 ./internal/bench/ | tee "$out"
awk '
  /^BenchmarkPodStart/ {
    for (i=1;i<=NF;i++) {
      if ($(i+1)=="herd-ms") herd=$i; if ($(i+1)=="containerd-ms") raw=$i
      if ($(i+1)=="herd-p90-ms") herd90=$i; if ($(i+1)=="containerd-p90-ms") raw90=$i
      if ($(i+1)=="ratio") ratio=$i
    }
  }
  END {
    if (herd == "" || raw == "") { print "bench: missing results"; exit 1 }
    printf "\n%-40s %8s %8s\n", "", "median", "p90"
    printf "%-40s %6.1f ms %6.1f ms\n", "herd ApplyPod -> Running", herd, herd90
    printf "%-40s %6.1f ms %6.1f ms\n", "containerd create+start (baseline)", raw, raw90
    printf "%-40s %8.2f x\n", "ratio herd / containerd (median)", ratio
  }' "$out"
