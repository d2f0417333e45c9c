"""What a benchmark ran on: CPU, cores, GPU, OS and runtime versions, and a stable id for its results folder."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from ..process import cpu_model


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (``nvidia-smi``, then torch), or None."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA install must not stop a CPU benchmark
        pass
    return None


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception as err:  # ImportError, or TensorRT's placeholder wheel raising on import
        return f"not available ({type(err).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def device_info(threads: list[int] | None = None) -> dict[str, Any]:
    """The header of a report: CPU model, logical cores, the thread counts measured, GPU, OS, versions."""
    from .. import __version__

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "threads": list(threads or []),
        "gpu": gpu_name(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "versions": {
            "pointkd": __version__,
            "torch": _version("torch"),
            "onnxruntime": _version("onnxruntime"),
            "tensorrt": _version("tensorrt"),
        },
    }


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\b(processor|cpu|\d+-core)\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def cpu_flags(wanted: tuple[str, ...]) -> list[str]:
    """Which of the ``wanted`` CPU feature flags (``/proc/cpuinfo`` names, e.g. ``avx2``, ``avx512_vnni``) this
    CPU has, sorted; empty where /proc/cpuinfo cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in set(flags) if f in wanted)


def device_id(info: dict[str, Any]) -> str:
    """A folder name for one device, e.g. ``amd-epyc-7b13-2c`` or ``intel-xeon-gold-6338-64c-nvidia-h100``."""
    parts = [_slug(info["cpu"]) or "cpu", f"{info['cores']}c"]
    if info.get("gpu"):
        parts.append(_slug(info["gpu"]))
    return "-".join(parts)
