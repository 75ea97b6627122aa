#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine: system packages
# (ffmpeg for MP4 I/O, nats-server for the distributed transport and its tests, prometheus for the
# metrics test) and the npm dependencies. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(ffmpeg nats-server prometheus)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: system packages missing (${missing[*]}): without ffmpeg MP4 I/O falls back to the pure-npm encoder;" \
      "without nats-server the transport/nats tests cannot run (apt-get install -y nats-server)" >&2
  fi
fi

# onnxruntime-node's postinstall downloads GPU provider libraries, which this network cannot reach;
# the CPU provider ships inside the npm package.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
