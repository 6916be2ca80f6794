#!/usr/bin/env bash
# Installs what herd's build, tests and demo need on a fresh Debian 12 machine
# (as root). Safe to run again: it only installs what is missing.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in containerd runc busybox-static containernetworking-plugins protobuf-compiler libprotobuf-dev nftables iproute2 procps; do
  have "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: need root to install: ${need[*]}" >&2; exit 1
  fi
  echo "deps.sh: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "deps.sh: Go 1.26 is required on PATH" >&2; exit 1; }
