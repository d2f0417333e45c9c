#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system libraries, a venv with the pinned CPU torch, pointkd with its
# extras, and the optional torch-cluster. Re-running it is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${POINTKD_VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

# 1. System libraries: libusb-1.0 (open3d will not import without it) and jemalloc (2-3.5x faster training).
missing=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
ldconfig -p | grep -q 'libjemalloc.so.2' || missing+=(libjemalloc2)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    log "warning: cannot install ${missing[*]} (not root, no sudo): open3d or jemalloc will be unavailable"
  else
    log "installing ${missing[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# 2. Virtual environment with torch pinned first: a bare `torch` requirement can pull a multi-GB CUDA build.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
stamp="$VENV/.pointkd-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing torch 2.13.0 (CPU) and pointkd[export,serve,grpc,dev]"
  "${PIP[@]}" install --upgrade pip
  "${PIP[@]}" install torch==2.13.0
  "${PIP[@]}" install -e ".[export,serve,grpc,dev]"
  "$VENV/bin/python" -c "import torch, open3d, onnxruntime, pointkd"
  echo "$want" >"$stamp"
fi

# 3. torch-cluster (opt-in): source-only on PyPI, its build imports torch (hence --no-build-isolation) and compiles
#    for 9-18 min on 2 cores, for no measured training gain (benchmarks/results/train_speed.md); pointkd's pure-torch
#    kNN does everything without it. POINTKD_TORCH_CLUSTER=1 builds it once into a wheelhouse outside the checkout;
#    a wheel already cached there is installed in seconds by every later set-up (new clones, CI), so its code path
#    stays tested wherever it was built once. POINTKD_TORCH_CLUSTER=0 skips even a cached wheel.
WHEELHOUSE=${POINTKD_WHEELHOUSE:-$HOME/.cache/pointkd/wheels/torch-2.13.0}
want_cluster=${POINTKD_TORCH_CLUSTER:-auto}
cached=$(ls "$WHEELHOUSE"/torch_cluster-1.6.3-*.whl 2>/dev/null | head -n 1 || true)
if [ "$want_cluster" != 0 ] && ! "$VENV/bin/python" -c "import torch_cluster" 2>/dev/null; then
  if [ -z "$cached" ] && [ "$want_cluster" = 1 ]; then
    mkdir -p "$WHEELHOUSE"
    log "building torch-cluster 1.6.3 into $WHEELHOUSE (9-18 min, once per machine)"
    "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEELHOUSE" torch-cluster==1.6.3 ||
      log "warning: torch-cluster did not build"
    cached=$(ls "$WHEELHOUSE"/torch_cluster-1.6.3-*.whl 2>/dev/null | head -n 1 || true)
  fi
  if [ -n "$cached" ]; then
    "${PIP[@]}" install --no-deps "$cached" || log "warning: the cached torch-cluster wheel did not install"
  fi
fi
log "ready: $VENV/bin/pointkd"
