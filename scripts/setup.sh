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
  log "installing torch 2.13.0 (CPU) and pointkd[export,serve,dev]"
  "${PIP[@]}" install --upgrade pip
  "${PIP[@]}" install torch==2.13.0
  "${PIP[@]}" install -e ".[export,serve,dev]"
  "$VENV/bin/python" -c "import torch, open3d, onnxruntime, pointkd"
  echo "$want" >"$stamp"
fi

# 3. torch-cluster (optional): source-only on PyPI, and its build imports torch, so --no-build-isolation. The first
#    build compiles for ~18 min on 2 cores; the wheel is kept in a wheelhouse outside the checkout, so later set-ups
#    (new clones, CI) install it in seconds. POINTKD_TORCH_CLUSTER=0 skips it: pointkd then uses its pure-torch kNN.
WHEELHOUSE=${POINTKD_WHEELHOUSE:-$HOME/.cache/pointkd/wheels/torch-2.13.0}
if [ "${POINTKD_TORCH_CLUSTER:-1}" = 1 ] && ! "$VENV/bin/python" -c "import torch_cluster" 2>/dev/null; then
  mkdir -p "$WHEELHOUSE"
  if ! ls "$WHEELHOUSE"/torch_cluster-1.6.3-*.whl >/dev/null 2>&1; then
    log "building torch-cluster 1.6.3 into $WHEELHOUSE (~18 min, once per machine)"
    "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEELHOUSE" torch-cluster==1.6.3 ||
      log "warning: torch-cluster did not build"
  fi
  "${PIP[@]}" install --no-build-isolation --find-links "$WHEELHOUSE" torch-cluster==1.6.3 ||
    log "warning: torch-cluster unavailable; pointkd falls back to its pure-torch kNN"
fi
log "ready: $VENV/bin/pointkd"
