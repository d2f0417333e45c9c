#!/usr/bin/env bash
# Re-measure every result that quotes the served student after a new one is shipped (SHIPPED in pointkd/demo.py;
# issue #29's third step), on this machine, then regenerate docs/results.md and the README's headline. About 11 min
# on a 2-core Zen 5. Times are taken, so nothing else may run: pause a campaign's training first
# (`kill -STOP`, then `kill -CONT`). Run from the repository root with the venv active: bash benchmarks/promote.sh
set -euo pipefail
student=$(python -c "import os; from pointkd.demo import SHIPPED, SHIPPED_DIR; print(os.path.relpath(SHIPPED_DIR / SHIPPED['student']))")
stem=$(basename "$student" .pt)
device=$(python -c "from pointkd.bench import device_id, device_info; print(device_id(device_info()))")
dir="benchmarks/results/$device"
step() { printf '\n[promote %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

step "pointkd bench $student (rows added to $dir/bench.json)"
pointkd bench "$student" --formats torch,onnx,onnx-int8,onnx-fused --out benchmarks/results --add --no-progress
artifacts=("$dir"/artifacts/"$stem"-*-onnx-fused)
artifact=${artifacts[0]}
[ -d "$artifact" ] || { echo "promote: no onnx-fused artifact of $stem under $dir/artifacts" >&2; exit 1; }
step "load test of $artifact"
python benchmarks/load_test.py "$artifact" --out "$dir/load_test_student_$stem"
step "edge memory bound"
python benchmarks/edge_memory.py "$artifact" --variant "default=" \
  --variant "glibc mmap threshold=--mmap-threshold-kib 0" --variant "no trim=--trim-after-mb 0"
step "edge protocol overhead"
python benchmarks/edge_overhead.py
step "outlier filter's cost"
OMP_NUM_THREADS=1 python benchmarks/robustness.py --prep-cost
step "per-class accuracy against the teacher"
python benchmarks/per_class.py
step "select"
bash benchmarks/select_report.sh "$device"
step "docs"
python scripts/results_doc.py
step "done: review git status and commit the result files"
