#!/usr/bin/env bash
# Installs everything the build and tests need from Debian's packages. Idempotent:
# packages already present are skipped, so a second run costs seconds.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libdnnl-dev libprotobuf-dev protobuf-compiler libonnx-dev
      libboost-program-options-dev libgtest-dev libgmock-dev libbenchmark-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
