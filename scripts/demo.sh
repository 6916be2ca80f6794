#!/usr/bin/env bash
# make demo / make demo-down: a local containerd + agentd with self-issued
# certificates, and examples/quickstart applied against it with OpenTofu.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
demo="$root/.demo"
bin="$root/bin"

down() {
  if [ -f "$demo/env" ] && [ -f "$demo/deployment/terraform.tfstate" ]; then
    # shellcheck disable=SC1091
    . "$demo/env"
    TF_VAR_node="$HERD_NODE" TF_VAR_namespace=rollout TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$(scripts/tool.sh tofu)" -chdir="$demo/deployment" destroy -auto-approve -no-color >/dev/null || true
  fi
  if [ -f "$demo/env" ] && [ -f "$demo/quickstart/terraform.tfstate" ]; then
    # shellcheck disable=SC1091
    . "$demo/env"
    TF_VAR_web_token=unused TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$(scripts/tool.sh tofu)" -chdir="$demo/quickstart" destroy -auto-approve -no-color >/dev/null || true
  fi
  if [ -f "$demo/serve.pid" ]; then
    pid="$(cat "$demo/serve.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
  fi
  rm -rf "$demo"
  echo "demo: down"
}

up() {
  tofu="$(scripts/tool.sh tofu)"
  if [ -f "$demo/serve.pid" ] && kill -0 "$(cat "$demo/serve.pid")" 2>/dev/null; then
    echo "demo: already running (make demo-down first to start over)"
  else
    rm -rf "$demo"; mkdir -p "$demo"
    go build -o "$bin/herd-demo" ./internal/demo
    HERD_AGENTD_BIN="$bin/agentd" setsid "$bin/herd-demo" --dir "$demo" >"$demo/serve.log" 2>&1 < /dev/null &
    echo $! > "$demo/serve.pid"
    for _ in $(seq 1 600); do
      [ -f "$demo/ready" ] && break
      kill -0 "$(cat "$demo/serve.pid")" 2>/dev/null || { cat "$demo/serve.log"; echo "demo: environment failed to start" >&2; exit 1; }
      sleep 0.2
    done
    [ -f "$demo/ready" ] || { cat "$demo/serve.log"; echo "demo: environment not ready after 120s" >&2; exit 1; }
  fi
  # shellcheck disable=SC1091
  . "$demo/env"
  cat > "$demo/cli.tfrc" <<EOT
provider_installation {
  dev_overrides {
    "herd-project/herd" = "$bin"
  }
  direct {}
}
EOT
  mkdir -p "$demo/quickstart"
  cp examples/quickstart/main.tf "$demo/quickstart/"
  # a fresh value for the quickstart's write-only secret; it lives only in
  # this shell's environment
  TF_VAR_web_token="demo-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  export TF_VAR_web_token
  echo "demo: node $HERD_NODE is up; applying examples/quickstart with OpenTofu"
  TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$tofu" -chdir="$demo/quickstart" apply -auto-approve -no-color 2>&1 \
    | grep -v -e 'Warning: Provider development overrides' -e 'provider_installation' || true
  test -f "$demo/quickstart/terraform.tfstate" || { echo "demo: apply failed" >&2; exit 1; }
  TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$tofu" -chdir="$demo/quickstart" plan -detailed-exitcode -no-color >/dev/null 2>&1 \
    && echo "demo: a second plan shows no changes" || echo "demo: note: the second plan is not empty"
  if grep -rqF "$TF_VAR_web_token" "$demo/quickstart"; then
    echo "demo: the secret's value is in the state!" >&2; exit 1
  fi
  echo "demo: the secret's value is nowhere in the state or plan files (write-only)"
  echo "demo: the pod's output (herdctl logs hello):"
  for _ in $(seq 1 50); do
    out="$("$bin/herdctl" logs hello)"; [ -n "$out" ] && break; sleep 0.1
  done
  echo "  $out"
  vip="$(TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$tofu" -chdir="$demo/quickstart" output -json service | sed -n 's/.*"cluster_ip":"\([^"]*\)".*/\1/p')"
  echo "demo: service web has cluster IP $vip; asking http://$vip/ from inside the node (the kernel's NAT rules, no proxy):"
  answer=""
  for _ in $(seq 1 20); do
    answer="$(nsenter --net="$HERD_DEMO_NETNS" timeout 5 busybox wget -q -O - "http://$vip/" 2>/dev/null)" && break
    sleep 0.5
  done
  echo "  ${answer:-no answer}"
  [ -n "$answer" ] || { echo "demo: the service did not answer" >&2; exit 1; }
  rollout "$tofu"
  echo "demo: try: . .demo/env && bin/herdctl pods && bin/herdctl services && bin/herdctl deployment -n rollout web; make demo-down to stop"
}

# rollout applies examples/deployment (three replicas behind a service),
# changes its one line, prints the plan's rollout summary and applies it
# while a client asks the service without pause.
rollout() {
  local tofu="$1" dir="$demo/deployment" vip answers loop
  # its own namespace: the quickstart has a service named web too
  export TF_VAR_node="$HERD_NODE" TF_VAR_namespace=rollout
  # tf CMD...: runs tofu in the example's directory, its output in
  # $dir/last.log; fails (showing the output) when tofu fails
  tf() {
    if ! TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$tofu" -chdir="$dir" "$@" -no-color >"$dir/last.log" 2>&1; then
      cat "$dir/last.log"; echo "demo: tofu $1 of examples/deployment failed" >&2; return 1
    fi
  }
  mkdir -p "$dir"
  # Pods have no namespace yet and services select them by label alone:
  # keep the replicas apart from the quickstart's pod labelled app=web.
  sed 's/app = "web"/app = "rollout-web"/' examples/deployment/main.tf > "$dir/main.tf"
  echo
  echo "demo: examples/deployment: a deployment of three replicas behind a service"
  tf apply -auto-approve
  grep -e '^Apply' "$dir/last.log"
  "$bin/herdctl" deployment -n rollout web | sed 's/^/  /'
  tf output -json service
  vip="$(sed -n 's/.*"cluster_ip":"\([^"]*\)".*/\1/p' "$dir/last.log")"
  sed -i 's/message = "hello from revision one"/message = "hello from revision two"/' "$dir/main.tf"
  echo "demo: changed one line (message = \"hello from revision two\"); the plan's rollout summary:"
  tf plan
  # the warning's text, unwrapped: from the summary to the end of its paragraph
  awk '/rollout\/web: revision/ { on = 1 } on && /^[│ ]*$/ { exit } on { sub(/^[│ ]*/, ""); printf "%s ", $0 } END { print "" }' "$dir/last.log" | sed 's/ *$//; s/^/  /'
  answers="$demo/rollout-answers"
  : > "$answers"
  : > "$answers.log"
  nsenter --net="$HERD_DEMO_NETNS" sh -c "while [ -f '$answers' ]; do timeout 5 busybox wget -q -O - 'http://$vip/' 2>/dev/null || echo FAILED; done >> '$answers.log'" &
  loop=$!
  echo "demo: applying the rolling update while a client asks http://$vip/ without pause"
  tf apply -auto-approve
  grep -e '^Apply' "$dir/last.log"
  rm -f "$answers"
  wait "$loop" 2>/dev/null || true
  echo "demo: answers during the rollout, in the order they first came (FAILED: failed requests):"
  sed 's/ (pod .*//' "$answers.log" | awk '{ n[$0]++; if (!($0 in seen)) { seen[$0] = 1; order[++k] = $0 } } END { for (i = 1; i <= k; i++) printf "  %6d  %s\n", n[order[i]], order[i] }'
  if grep -q FAILED "$answers.log"; then echo "demo: some requests failed during the rollout" >&2; fi
  TF_CLI_CONFIG_FILE="$demo/cli.tfrc" "$tofu" -chdir="$dir" plan -detailed-exitcode -no-color >/dev/null 2>&1 \
    && echo "demo: the next plan is empty" || echo "demo: note: the next plan is not empty"
  "$bin/herdctl" deployment -n rollout web | sed 's/^/  /'
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: demo.sh up|down" >&2; exit 2 ;;
esac
