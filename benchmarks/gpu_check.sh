#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) from the repository root, with its output kept beside the report.
# Needs python3 with torch (a CUDA build), numpy and pyyaml; see the script's docstring. Extra arguments pass on.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
log="${OUT:-runs}/gpu_check.log"
mkdir -p "$(dirname "$log")"
python3 benchmarks/gpu_check.py "$@" 2>&1 | tee "$log"
