#!/usr/bin/env bash
# Fetch NVRTC (the CUDA run-time compiler) from PyPI for machines without a CUDA toolkit, so the
# trainer's kernel-compile tests run in CI. No GPU or driver is needed to compile CUDA C++ to PTX.
# Usage: eval "$(scripts/get-nvrtc.sh CACHE_DIR)"
# Prints the env exports on stdout (progress goes to stderr):
#   LD_LIBRARY_PATH   gains CACHE_DIR/nvidia/cuda_nvrtc/lib (libnvrtc.so.12 + its builtins)
#   CRIA_NVRTC_LIB    that folder, for scripts that want to name it
# The kernels (train-native/kernels) include no CUDA headers (bf16 is carried as raw bits, see
# common.cuh), so the ~10 MB nvidia-cuda-runtime-cu12 header wheel is not needed.
set -euo pipefail
cache="${1:?usage: get-nvrtc.sh CACHE_DIR}"
version=12.9.86
lib="$cache/nvidia/cuda_nvrtc/lib"
mkdir -p "$cache"
if [ ! -f "$lib/libnvrtc.so.12" ] || [ ! -f "$cache/.nvrtc-$version" ]; then
  echo "get-nvrtc: downloading nvidia-cuda-nvrtc-cu12==$version into $cache" >&2
  dl="$cache/wheels"
  mkdir -p "$dl"
  python3 -m pip download -q --no-deps --only-binary :all: --platform manylinux2014_x86_64 \
    --python-version 3.11 -d "$dl" "nvidia-cuda-nvrtc-cu12==$version" >&2
  whl=$(ls "$dl"/nvidia_cuda_nvrtc_cu12-"$version"-*.whl | head -1)
  # A wheel is a zip file; python's zipfile avoids depending on unzip being installed.
  python3 -m zipfile -e "$whl" "$cache" >&2
  rm -rf "$dl"
  [ -f "$lib/libnvrtc.so.12" ] || { echo "get-nvrtc: $lib/libnvrtc.so.12 missing after unpacking $whl" >&2; exit 1; }
  touch "$cache/.nvrtc-$version"
fi
# cudarc loads libnvrtc.so or libnvrtc.so.12; the wheel ships only the versioned name.
echo "export LD_LIBRARY_PATH=\"$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export CRIA_NVRTC_LIB=\"$lib\""
