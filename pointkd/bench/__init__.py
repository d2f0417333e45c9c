"""``pointkd bench`` and ``pointkd select``: latency / accuracy reports per device and format, and the choice of a
model under a latency budget."""

from .device import device_id, device_info
from .report import STATUS, BenchRow, read_report, write_report
from .run import BenchOptions, run_bench
from .select import Selection, select_model

__all__ = [
    "STATUS",
    "BenchOptions",
    "BenchRow",
    "Selection",
    "device_id",
    "device_info",
    "read_report",
    "run_bench",
    "select_model",
    "write_report",
]
