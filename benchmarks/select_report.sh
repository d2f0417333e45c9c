#!/usr/bin/env bash
# `pointkd select` on one device's bench report, for the budgets the README quotes: writes
# benchmarks/results/<device-id>/select.md (each section is the command and its output).
# Run from the repository root: bash benchmarks/select_report.sh [DEVICE_ID]   (default: this machine's id)
set -u
device="${1:-$(python -c "from pointkd.bench import device_id, device_info; print(device_id(device_info()))")}"
report="benchmarks/results/$device/bench.json"
[ -f "$report" ] || { echo "no $report: run pointkd bench first" >&2; exit 2; }
{
  echo '# `pointkd select` on this device'
  for args in "--budget-ms 10" "--budget-ms 10 --threads 1" "--budget-ms 3"; do
    echo
    echo "## pointkd select $args --device-report $report"
    echo
    # shellcheck disable=SC2086  # $args is a list of words
    python -m pointkd select $args --device-report "$report"
    echo "(exit status $?)"
  done
} > "benchmarks/results/$device/select.md"
echo "wrote benchmarks/results/$device/select.md"
