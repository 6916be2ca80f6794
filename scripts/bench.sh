#!/usr/bin/env bash
# make bench: the figures the issues ask for, each beside its baseline,
# measured in the same run on the same machine. Benchmarks report; they
# fail only on real errors, never because a machine is slow.
#
#   BENCH_COUNT=40            pod starts of each kind
#   BENCH_APPLY_COUNT=5       tofu applies of one pod and of one terraform_data
#   BENCH_NFT_COUNT=20        endpoint changes per nftables figure
#   BENCH_SYNC_COUNT=3        full syncs of each size (each side)
#   BENCH_CHANGE_COUNT=200    endpoint changes through the controller alone
#   BENCH_SCALE_COUNT=20      endpoint changes in the 5-member 10k-service cluster
#   BENCH_SCALE_SERVICES=10000
#   BENCH_RSS_SERVICES=10000  services applied to a real agentd for its memory figure
#   BENCH_RSS_APPLY_SECONDS=600  ... or as many as fit in this time
#   BENCH_TIMEOUT=90m         go test's timeout per benchmark run
#   BENCH_PROP_COUNT=20       endpoint propagations measured
#   BENCH_DEAD5_COUNT=3       node deaths on five nodes (a fresh five-node cluster each)
#   BENCH_ROLLOUT_COUNT=3     rollouts of 10 replicas (each beside its floor)
#   BENCH_REPLACE_COUNT=2     node deaths (a fresh three-node cluster each)
#   BENCH_PLAN_COUNT=3        plans of 100 deployments and of 100 terraform_data
#   BENCH_PLAN_PODS_COUNT=3   plans of 500 applied pods and of 500 terraform_data
#   BENCH_VOLUME_COUNT=3      rounds of volume I/O (each side; a few seconds in all)
#   BENCH_STATE_DIR=$TMPDIR   the filesystem volume I/O runs on (put agentd's --state-dir's here)
#   BENCH_RPS_ROUNDS=15       RPS rounds (VIP and direct, new and kept-alive
#                             connections, BENCH_RPS_SECONDS each, default 1)
#   HERD_BENCH_KUBEPROXY_10K=0  skip kube-proxy's layout at 10k services
#                             (about 3.5 minutes per load; on by default: it is
#                             the baseline of the 10k rows)
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
kp10k="${HERD_BENCH_KUBEPROXY_10K:-1}"

# bench PKG REGEX N: runs the benchmarks N times each, shows their output
# and keeps it for the summary.
bench() {
  go test -run '^$' -bench "$2" -benchtime "$3x" -count 1 -timeout "${BENCH_TIMEOUT:-90m}" "$1" | tee "$out"
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
echo "== tofu apply of one small pod (image present), start to exit, vs tofu apply of one terraform_data"
bench ./internal/bench/ 'BenchmarkPodApply' "${BENCH_APPLY_COUNT:-5}"

echo
echo "== service rules, the kernel's part: herd's nftables data plane vs kube-proxy's nftables layout"
echo "   (generated and loaded with nft -f by the benchmark, same kernel); 1k and 10k services x 10 endpoints;"
echo "   medians with min-max"
sync_count="${BENCH_SYNC_COUNT:-3}"
if [ "$kp10k" = 0 ]; then
  echo "   (kube-proxy's layout at 10k services skipped: HERD_BENCH_KUBEPROXY_10K=0)"
fi
HERD_BENCH_KUBEPROXY_10K="$kp10k" bench ./agentd/network/nft/ 'BenchmarkFullSync/services=(1000|10000)$' "$sync_count"
HERD_BENCH_KUBEPROXY_10K="$kp10k" bench ./agentd/network/nft/ 'BenchmarkOneChange/services=(1000|10000)$' "$nft_count"

echo
echo "== service rules, agentd's part: the services controller alone (data plane a no-op) per endpoint"
echo "   change, at 1k and 10k services x 10 endpoints; before = the from-scratch pass it ran on every"
echo "   event until it became incremental (1k only: minutes at 10k)"
bench ./agentd/services/ 'BenchmarkEndpointChange' "${BENCH_CHANGE_COUNT:-200}"

echo
echo "== services at scale, end to end: 5 members (cluster store + controller + nftables, one netns each),"
echo "   ${BENCH_SCALE_SERVICES:-10000} services x 10 endpoints (synthetic, spread over the members); store write -> nft"
echo "   transaction on the writer and on the 4 others, every member's kernel rules checked"
BENCH_SCALE_SERVICES="${BENCH_SCALE_SERVICES:-10000}" bench ./internal/bench/ 'BenchmarkServicesScale' "${BENCH_SCALE_COUNT:-20}"

echo
echo "== endpoint propagation: a new pod Ready on node a (agentd's GetPod) -> first answer from it"
echo "   through the VIP, asked from a pod on node b (${prop_count} pods)"
bench ./internal/bench/ 'BenchmarkEndpointPropagation' "$prop_count"

echo
echo "== five nodes, checked on every node: a new pod Ready on node 1 -> first answer through the VIP from"
echo "   each of nodes 2-5 (${prop_count} pods x 4 nodes); a node's death (eth0 down + agentd SIGKILL) -> its"
echo "   endpoint gone from each survivor's nft backends map (${BENCH_DEAD5_COUNT:-3} deaths x 4 survivors)"
bench ./internal/bench/ 'BenchmarkPropagation5' "$prop_count"
bench ./internal/bench/ 'BenchmarkDeadNode5' "${BENCH_DEAD5_COUNT:-3}"

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

echo
echo "== agentd's own memory holding many services (2 real agentds, 10 pods each as endpoints of 10 services)"
BENCH_RSS_SERVICES="${BENCH_RSS_SERVICES:-10000}" BENCH_RSS_APPLY_SECONDS="${BENCH_RSS_APPLY_SECONDS:-600}" \
  bench ./internal/bench/ 'BenchmarkAgentdRSS' 1

echo
echo "== plan of 500 applied herd_pods (each refreshed from its node, nothing to change) vs 500 terraform_data with a state:"
echo "   the first plan after the creating apply, then (after an apply that changes nothing) the steady state"
bench ./internal/bench/ 'BenchmarkPlanPods' "${BENCH_PLAN_PODS_COUNT:-3}"

echo
echo "== volume I/O: 64 MiB in 1 MiB writes + one fsync, and 4 KiB write+fsync pairs, inside a loop-mounted"
echo "   ext4 volume vs a plain directory of the filesystem under it; ${BENCH_VOLUME_COUNT:-3} alternating rounds, medians"
bench ./internal/bench/ 'BenchmarkVolumeIO' "${BENCH_VOLUME_COUNT:-3}"

# row LABEL HERD BASELINE RATIO TARGET MET
row() { printf '%-36s %14s %24s %12s %14s %6s\n' "$@"; }
# num VALUE FORMAT SUFFIX: VALUE formatted, or "-" when missing
num() { if [ -n "$1" ]; then printf "$2%s" "$1" "$3"; else printf -- "-"; fi; }
# met EXPR: "yes"/"no" from an awk condition on $1, "-" without a value
met() { if [ -n "$1" ]; then awk -v x="$1" "BEGIN { print (($2) ? \"yes\" : \"no\") }"; else echo "-"; fi; }
# spread NAME SIDE: "(min-max)" of a benchmark reporting SIDE-min-ms and SIDE-max-ms
spread() {
  local lo hi
  lo="$(metric "$1" "$2-min-ms")"; hi="$(metric "$1" "$2-max-ms")"
  if [ -n "$lo" ] && [ -n "$hi" ]; then awk -v a="$lo" -v b="$hi" 'BEGIN { printf "(%.0f-%.0f)", a, b }'; fi
}
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
pa="$(metric BenchmarkPodApply apply-ms)"
pab="$(metric BenchmarkPodApply baseline-ms)"
row "tofu apply, one pod (median)" "$(num "$pa" %.0f " ms")" "$(num "$pab" %.0f " ms") terraform_data" \
  "$(num "$(metric BenchmarkPodApply ratio)" %.1f "x the time")" "-" "-"
row "  of which ApplyPod -> Running" "$(num "$(metric BenchmarkPodApply agentd-running-ms)" %.0f " ms")" "-" "-" "-" "-"
row "pod start ratio herd/containerd" "$(num "$(ratio "$ps_h" "$ps_c")" %s "x")" "-" "-" "<= 1.2x" "$(met "$(ratio "$ps_h" "$ps_c")" 'x <= 1.2')"
row "full sync, 1k svc x 10 ep (nft)" "$(num "$fs1h" %.1f " ms") $(spread BenchmarkFullSync/services=1000 herd)" \
  "$(num "$fs1k" %.1f " ms") $(spread BenchmarkFullSync/services=1000 kubeproxy) kube-proxy" \
  "$(num "$sp1" %s "x faster")" ">= 20x faster" "$(met "$sp1" 'x >= 20')"
row "full sync, 10k svc x 10 ep (nft)" "$(num "$fs10h" %.1f " ms") $(spread BenchmarkFullSync/services=10000 herd)" \
  "$([ -n "$fs10k" ] && echo "$(num "$fs10k" %.0f " ms") $(spread BenchmarkFullSync/services=10000 kubeproxy) kube-proxy" || echo "$skipped")" \
  "$(num "$sp10" %s "x faster")" ">= 20x faster" "$(met "$sp10" 'x >= 20')"
row "one change, 1k svc (nft)" "$(num "$oc1h" %.2f " ms")" "$(num "$oc1k" %.1f " ms") kube-proxy" \
  "$(num "$(ratio "$oc1k" "$oc1h")" %s "x faster")" "-" "-"
row "one change, 10k svc (nft)" "$(num "$oc10h" %.2f " ms")" "$([ -n "$oc10k" ] && num "$oc10k" %.1f " ms kube-proxy" || echo "$skipped")" \
  "$(num "$(ratio "$oc10k" "$oc10h")" %s "x faster")" "-" "-"
ec1="$(metric BenchmarkEndpointChange/services=1000 change-us)"
ecb="$(metric BenchmarkEndpointChange/services=1000 before-ms)"
ec10="$(metric BenchmarkEndpointChange/services=10000 change-us)"
row "one change, controller, 1k svc" "$(num "$ec1" %.0f " us")" "$(num "$ecb" %.0f " ms") from scratch" \
  "$(num "$(awk -v a="$ecb" -v b="$ec1" 'BEGIN { if (a != "" && b != "") printf "%.0f", a * 1000 / b }')" %s "x faster")" "-" "-"
row "one change, controller, 10k svc" "$(num "$ec10" %.0f " us")" "-" "-" "-" "-"
row "resync, controller, 10k svc" "$(num "$(metric BenchmarkEndpointChange/services=10000 resync-ms)" %.0f " ms")" "-" "-" "-" "-"
sl99="$(metric BenchmarkServicesScale local-p99-ms)"
sr99="$(metric BenchmarkServicesScale remote-p99-ms)"
srs="$(metric BenchmarkServicesScale resync-ms)"
row "event -> rule, 10k svc, p50" "$(num "$(metric BenchmarkServicesScale local-p50-ms)" %.1f " ms")" "-" "-" "-" "-"
row "event -> rule, 10k svc, p99" "$(num "$sl99" %.1f " ms")" "-" "-" "<= 20 ms" "$(met "$sl99" 'x <= 20')"
row "to the 4 other nodes, 10k svc, p50" "$(num "$(metric BenchmarkServicesScale remote-p50-ms)" %.0f " ms")" "-" "-" "-" "-"
row "to the 4 other nodes, 10k svc, p99" "$(num "$sr99" %.0f " ms")" "-" "-" "<= 1 s" "$(met "$sr99" 'x <= 1000')"
row "withdrawal, every node, p99" "$(num "$(metric BenchmarkServicesScale removal-p99-ms)" %.0f " ms")" "-" "-" "-" "-"
row "full resync, 10k svc (whole pass)" "$(num "$srs" %.0f " ms")" "-" "-" "<= 2 s" "$(met "$srs" 'x <= 2000')"
row "memory per node, 10k svc/100k ep" "$(num "$(metric BenchmarkServicesScale rss-mb-median)" %.0f " MB") median" \
  "$(num "$(metric BenchmarkServicesScale rss-mb-max)" %.0f " MB") max" "-" "-" "-"
row "endpoint propagation p50" "$(num "$p50" %.0f " ms")" "-" "-" "-" "-"
row "endpoint propagation p99" "$(num "$p99" %.0f " ms")" "-" "-" "p99 < 1 s" "$(met "$p99" 'x < 1000')"
p5="$(metric BenchmarkPropagation5 p50-ms)"
p599="$(metric BenchmarkPropagation5 p99-ms)"
p5all="$(metric BenchmarkPropagation5 all-p50-ms)"
row "propagation p50, 5 nodes, each node" "$(num "$p5" %.0f " ms")" "-" "-" "-" "-"
row "propagation p99, 5 nodes, each node" "$(num "$p599" %.0f " ms")" "-" "-" "p99 < 1 s" "$(met "$p599" 'x < 1000')"
row "propagation p50, all 4 other nodes" "$(num "$p5all" %.0f " ms")" "-" "-" "-" "-"
dk="$(metric BenchmarkDeadNode5 from-kill-p50-ms)"
dkm="$(metric BenchmarkDeadNode5 from-kill-max-ms)"
drm="$(metric BenchmarkDeadNode5 removal-max-ms)"
row "dead node out of rules, p50 (kill)" "$(num "$dk" %.0f " ms")" "-" "-" "-" "-"
row "dead node out of rules, max (kill)" "$(num "$dkm" %.0f " ms")" "-" "-" "<= 5 s" "$(met "$dkm" 'x <= 5000')"
row "rules after death detected, max" "$(num "$drm" %.0f " ms")" "-" "-" "-" "-"
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
rn="$(metric BenchmarkAgentdRSS services)"
row "agentd RSS, ${rn:-?} svc, node a" "$(num "$(metric BenchmarkAgentdRSS rss-a-mb)" %.0f " MB")" \
  "$(num "$(metric BenchmarkAgentdRSS rss-a-before-mb)" %.0f " MB") empty" "-" "-" "-"
row "agentd RSS, ${rn:-?} svc, node b" "$(num "$(metric BenchmarkAgentdRSS rss-b-mb)" %.0f " MB")" \
  "$(num "$(metric BenchmarkAgentdRSS rss-b-before-mb)" %.0f " MB") empty" "-" "-" "-"
row "apply ${rn:-?} svc, 32 clients" "$(num "$(metric BenchmarkAgentdRSS apply-s)" %.0f " s")" "-" "-" "-" "-"
pp="$(metric BenchmarkPlanPods plan-s)"; ppb="$(metric BenchmarkPlanPods baseline-s)"; ppr="$(metric BenchmarkPlanPods ratio)"
row "plan, 500 pods (steady state)" "$(num "$pp" %.1f " s")" "$(num "$ppb" %.1f " s") terraform_data" \
  "$(num "$ppr" %.1f "x the time")" "<= 5 s, <= 3x" "$(met "$pp" 'x <= 5')/$(met "$ppr" 'x <= 3')"
row "  CPU: OpenTofu / provider" "$(num "$(metric BenchmarkPlanPods tofu-cpu-s)" %.1f " s")/$(num "$(metric BenchmarkPlanPods provider-cpu-s)" %.1f " s")" \
  "$(num "$(metric BenchmarkPlanPods baseline-cpu-s)" %.1f " s") CPU, all of it" "-" "-" "-"
ppf="$(metric BenchmarkPlanPods first-plan-s)"; ppfb="$(metric BenchmarkPlanPods first-baseline-s)"
row "plan, 500 pods, first after create" "$(num "$ppf" %.1f " s")" "$(num "$ppfb" %.1f " s") terraform_data" \
  "$(awk -v a="$ppf" -v b="$ppfb" 'BEGIN { if (a != "" && b > 0) printf "%.1fx the time", a / b; else print "-" }')" "<= 5 s" "$(met "$ppf" 'x <= 5')"
row "volume: 64 MiB write + fsync" "$(num "$(metric BenchmarkVolumeIO volume-seq-MBps)" %.0f " MB/s")" \
  "$(num "$(metric BenchmarkVolumeIO host-seq-MBps)" %.0f " MB/s") plain dir" \
  "$(num "$(metric BenchmarkVolumeIO seq-overhead-pct)" %.0f " % slower")" "-" "-"
row "volume: 4 KiB write+fsync" "$(num "$(metric BenchmarkVolumeIO volume-fsync-ops)" %.0f " ops/s")" \
  "$(num "$(metric BenchmarkVolumeIO host-fsync-ops)" %.0f " ops/s") plain dir" \
  "$(num "$(metric BenchmarkVolumeIO fsync-overhead-pct)" %.0f " % slower")" "-" "-"
if [ "$kp10k" = 0 ]; then
  echo
  echo "skipped: kube-proxy's layout at 10k services (HERD_BENCH_KUBEPROXY_10K=0; one load took 217 s when last measured)."
fi
q() { num "$(metric BenchmarkServiceRPS "ratio-$1-$2-pct")" %.1f ""; }
echo "notes: nft figures are medians (min-max) of ${sync_count} (full) and ${nft_count} (change) runs; propagation p99 is"
echo "       nearest-rank (with ${prop_count} samples, the slowest); RPS ratio is the median of per-round VIP/pod IP"
echo "       (quartiles over ${rps_rounds} rounds: new connections $(q new p25)-$(q new p75) %, kept-alive $(q keepalive p25)-$(q keepalive p75) %)."
