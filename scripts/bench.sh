#!/usr/bin/env bash
# make bench: the figures the issues ask for, each beside its baseline,
# measured in the same run on the same machine. Benchmarks report; they
# fail only on real errors, never because a machine is slow.
#
#   BENCH_COUNT=40            pod starts of each kind
#   BENCH_NFT_COUNT=20        endpoint changes per nftables figure
#   BENCH_PROP_COUNT=20       endpoint propagations measured
#   BENCH_ROLLOUT_COUNT=3     rollouts of 10 replicas (each beside its floor)
#   BENCH_REPLACE_COUNT=2     node deaths (a fresh three-node cluster each)
#   BENCH_PLAN_COUNT=3        plans of 100 deployments and of 100 terraform_data
#   BENCH_RPS_ROUNDS=15       RPS rounds (VIP and direct, new and kept-alive
#                             connections, BENCH_RPS_SECONDS each, default 1)
#   HERD_BENCH_KUBEPROXY_10K=1  also load kube-proxy's layout at 10k services
#                             (several minutes per load: off by default)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh
out="$(mktemp)"
all="$(mktemp)"
trap 'rm -f "$out" "$all"' EXIT
count="${BENCH_COUNT:-40}"
nft_count="${BENCH_NFT_COUNT:-20}"
prop_count="${BENCH_PROP_COUNT:-20}"
rps_rounds="${BENCH_RPS_ROUNDS:-15}"
kp10k="${HERD_BENCH_KUBEPROXY_10K:-}"

# bench PKG REGEX N: runs the benchmarks N times each, shows their output
# and keeps it for the summary.
bench() {
  go test -run '^$' -bench "$2" -benchtime "$3x" -count 1 "$1" | tee "$out"
  cat "$out" >>"$all"
}

# metric NAME UNIT: the figure reported in UNIT by the benchmark whose name
# (without the -GOMAXPROCS suffix) is NAME; empty when it was not reported.
metric() {
  awk -v name="$1" -v unit="$2" '
    { n = $1; sub(/-[0-9]+$/, "", n) }
    n == name { for (i = 3; i <= NF; i++) if ($i == unit) v = $(i-1) }
    END { print v }' "$all"
}

echo "== pod start latency, image present: herd ApplyPod -> Running vs raw containerd create+start"
echo "   (${count} of each, alternating in one loop; medians)"
bench ./internal/bench/ 'BenchmarkPodStart' "$count"
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

echo
echo "== service rules: herd's nftables data plane vs kube-proxy's nftables layout (generated and"
echo "   loaded with nft -f by the benchmark, same kernel); 1k and 10k services x 10 endpoints"
sync_count=3
if [ -n "$kp10k" ]; then
  sync_count=1 # each 10k load of kube-proxy's layout takes minutes
else
  echo "   (kube-proxy's layout at 10k services skipped: HERD_BENCH_KUBEPROXY_10K=1 make bench loads it)"
fi
HERD_BENCH_KUBEPROXY_10K="$kp10k" bench ./agentd/network/nft/ 'BenchmarkFullSync/services=(1000|10000)$' "$sync_count"
HERD_BENCH_KUBEPROXY_10K="$kp10k" bench ./agentd/network/nft/ 'BenchmarkOneChange/services=(1000|10000)$' "$nft_count"

echo
echo "== endpoint propagation: a new pod Ready on node a (agentd's GetPod) -> first answer from it"
echo "   through the VIP, asked from a pod on node b (${prop_count} pods)"
bench ./internal/bench/ 'BenchmarkEndpointPropagation' "$prop_count"

echo
echo "== requests per second from a pod on node b to a server pod on node a: through the VIP vs"
echo "   the pod's IP, ${rps_rounds} alternating rounds"
bench ./internal/bench/ 'BenchmarkServiceRPS' "$rps_rounds"

echo
echo "== deployments: a rolling update of 10 replicas (surge 1 / unavailable 0) from ApplyDeployment to"
echo "   Complete vs 10 x one pod's start to Ready; re-placement after a node death; tofu plan of 100"
echo "   deployments (each dry-run by agentd) vs 100 terraform_data"
bench ./internal/bench/ 'BenchmarkRollout' "${BENCH_ROLLOUT_COUNT:-3}"
bench ./internal/bench/ 'BenchmarkReplacement' "${BENCH_REPLACE_COUNT:-2}"
bench ./internal/bench/ 'BenchmarkPlanDeployments' "${BENCH_PLAN_COUNT:-3}"

# row LABEL HERD BASELINE RATIO TARGET MET
row() { printf '%-36s %14s %24s %12s %14s %6s\n' "$@"; }
# num VALUE FORMAT SUFFIX: VALUE formatted, or "-" when missing
num() { if [ -n "$1" ]; then printf "$2%s" "$1" "$3"; else printf -- "-"; fi; }
# met EXPR: "yes"/"no" from an awk condition on $1, "-" without a value
met() { if [ -n "$1" ]; then awk -v x="$1" "BEGIN { print (($2) ? \"yes\" : \"no\") }"; else echo "-"; fi; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; fi; }

skipped="skipped (see below)"
fs1h="$(metric BenchmarkFullSync/services=1000 herd-ms)"
fs1k="$(metric BenchmarkFullSync/services=1000 kubeproxy-ms)"
fs10h="$(metric BenchmarkFullSync/services=10000 herd-ms)"
fs10k="$(metric BenchmarkFullSync/services=10000 kubeproxy-ms)"
oc1h="$(metric BenchmarkOneChange/services=1000 herd-ms)"
oc1k="$(metric BenchmarkOneChange/services=1000 kubeproxy-ms)"
oc10h="$(metric BenchmarkOneChange/services=10000 herd-ms)"
oc10k="$(metric BenchmarkOneChange/services=10000 kubeproxy-ms)"
p50="$(metric BenchmarkEndpointPropagation p50-ms)"
p99="$(metric BenchmarkEndpointPropagation p99-ms)"
ps_h="$(metric BenchmarkPodStart herd-ms)"
ps_c="$(metric BenchmarkPodStart containerd-ms)"
sp1="$(ratio "$fs1k" "$fs1h")"
sp10="$(ratio "$fs10k" "$fs10h")"

echo
echo "== summary (herd beside its baseline, same run, same machine)"
row "figure" "herd" "baseline" "ratio" "target" "met"
row "pod start (median)" "$(num "$ps_h" %.1f " ms")" "$(num "$ps_c" %.1f " ms") containerd" \
  "$(num "$(ratio "$ps_h" "$ps_c")" %s "x the time")" "-" "-"
row "full sync, 1k svc x 10 ep" "$(num "$fs1h" %.1f " ms")" "$(num "$fs1k" %.1f " ms") kube-proxy" \
  "$(num "$sp1" %s "x faster")" ">= 20x faster" "$(met "$sp1" 'x >= 20')"
row "full sync, 10k svc x 10 ep" "$(num "$fs10h" %.1f " ms")" "$([ -n "$fs10k" ] && num "$fs10k" %.0f " ms kube-proxy" || echo "$skipped")" \
  "$(num "$sp10" %s "x faster")" ">= 20x faster" "$(met "$sp10" 'x >= 20')"
row "one endpoint change, 1k svc" "$(num "$oc1h" %.2f " ms")" "$(num "$oc1k" %.1f " ms") kube-proxy" \
  "$(num "$(ratio "$oc1k" "$oc1h")" %s "x faster")" "-" "-"
row "one endpoint change, 10k svc" "$(num "$oc10h" %.2f " ms")" "$([ -n "$oc10k" ] && num "$oc10k" %.1f " ms kube-proxy" || echo "$skipped")" \
  "$(num "$(ratio "$oc10k" "$oc10h")" %s "x faster")" "< 20 ms" "$(met "$oc10h" 'x < 20')"
row "endpoint propagation p50" "$(num "$p50" %.0f " ms")" "-" "-" "-" "-"
row "endpoint propagation p99" "$(num "$p99" %.0f " ms")" "-" "-" "p99 < 1 s" "$(met "$p99" 'x < 1000')"
for mode in new keepalive; do
  label="RPS, new connection per request"
  [ "$mode" = keepalive ] && label="RPS, kept-alive connections"
  v="$(metric BenchmarkServiceRPS "vip-$mode-rps")"
  d="$(metric BenchmarkServiceRPS "direct-$mode-rps")"
  r="$(metric BenchmarkServiceRPS "ratio-$mode-pct")"
  target="-"; ok="-"
  if [ "$mode" = new ]; then target=">= 95 %"; ok="$(met "$r" 'x >= 95')"; fi
  row "$label" "$(num "$v" %.0f " VIP")" "$(num "$d" %.0f " pod IP")" "$(num "$r" %.1f " %")" "$target" "$ok"
done
ro="$(metric BenchmarkRollout rollout-s)"
rf="$(metric BenchmarkRollout floor-s)"
row "rollout, 10 replicas" "$(num "$ro" %.1f " s")" "$(num "$rf" %.1f " s") 10 x pod ready" \
  "$(num "$(metric BenchmarkRollout ratio)" %.2f "x the floor")" "-" "-"
rp="$(metric BenchmarkReplacement replace-ms)"
row "re-placement after death detected" "$(num "$rp" %.0f " ms")" "-" "-" "<= 10 s" "$(met "$rp" 'x <= 10000')"
rk="$(metric BenchmarkReplacement from-kill-ms)"
row "re-placement after agentd SIGKILL" "$(num "$rk" %.0f " ms")" "-" "-" "-" "-"
pl="$(metric BenchmarkPlanDeployments plan-s)"
pb="$(metric BenchmarkPlanDeployments baseline-s)"
row "plan, 100 deployments" "$(num "$pl" %.1f " s")" "$(num "$pb" %.1f " s") terraform_data" \
  "$(num "$(metric BenchmarkPlanDeployments ratio)" %.1f "x the time")" "-" "-"
if [ -z "$kp10k" ]; then
  echo
  echo "skipped: kube-proxy's layout at 10k services (one load took 217 s when last measured)."
  echo "         run HERD_BENCH_KUBEPROXY_10K=1 make bench for the 10k baseline rows (adds ~8 minutes)."
fi
q() { num "$(metric BenchmarkServiceRPS "ratio-$1-$2-pct")" %.1f ""; }
echo "notes: sync figures are means of ${sync_count} (full) and ${nft_count} (change) runs; propagation p99 is"
echo "       nearest-rank (with ${prop_count} samples, the slowest); RPS ratio is the median of per-round VIP/pod IP"
echo "       (quartiles over ${rps_rounds} rounds: new connections $(q new p25)-$(q new p75) %, kept-alive $(q keepalive p25)-$(q keepalive p75) %)."
