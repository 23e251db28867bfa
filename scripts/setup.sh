#!/usr/bin/env bash
# Installs everything the build and tests need from Debian's packages. Idempotent:
# packages already present are skipped, so a second run costs seconds.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libdnnl-dev libprotobuf-dev protobuf-compiler libonnx-dev
      libboost-program-options-dev libgtest-dev libgmock-dev libbenchmark-dev
      clang-format libre2-dev libcpp-httplib-dev fortunes
      python3-dev pybind11-dev  # the Python module (import codebook; docs/python.md)
      openmpi-bin libopenmpi-dev  # data-parallel training under mpirun (docs/scale.md)
      chromium chromium-driver  # these two: the code browser's test in a headless browser
      clang lld libclang-rt-14-dev libomp-dev)  # the sanitizer and fuzz build (preset asan): clang, lld, libFuzzer/sanitizer runtimes, OpenMP
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python packages the tests use when present (the standard-ONNX export is
# checked on ONNX Runtime); they install in seconds. A machine without pip
# still builds and tests: those checks then skip.
if command -v python3 >/dev/null && ! python3 -c "import numpy, onnx, onnxruntime, selenium, pytest" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check numpy onnx onnxruntime selenium pytest 2>&1 | grep -v "Running pip as the 'root' user" ||
    true
  python3 -c "import numpy, onnx, onnxruntime" 2>/dev/null || echo "setup: numpy/onnx/onnxruntime not installed; the ONNX Runtime checks will skip" >&2
  python3 -c "import selenium" 2>/dev/null || echo "setup: selenium not installed; the browser test will skip" >&2
  python3 -c "import pytest" 2>/dev/null || echo "setup: pytest not installed; the Python package's tests will skip" >&2
fi
