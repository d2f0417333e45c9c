"""What a benchmark ran on: CPU (vendor, family, model, stepping, microarchitecture, the SIMD level and flags that
matter, caches), memory, cores, GPU, OS and runtime versions, and a stable id for its results folder.

The id names the vendor and model, the microarchitecture (from ``/proc/cpuinfo``'s vendor, cpu family and model;
``fam<F>-m<M>`` where the table below does not know them), the SIMD level and the logical core count, e.g.
``amd-epyc-zen5-avx512vnni-2c``: a virtual machine's CPU is often named just "AMD EPYC", so the name alone cannot
tell a Zen 3 from a Zen 5. The SIMD level is the highest of ``avx2`` / ``avx512`` / ``avx512vnni`` / ``amx`` the CPU
has: the fused kNN kernels dispatch on AVX2+FMA and AVX-512F (``knn_dispatch`` in the header), ONNX Runtime's int8
GEMMs on VNNI and AMX.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from ..process import cpu_model

# The /proc/cpuinfo flags a report records: what the fused kNN kernels (avx2, fma, avx512f) and ONNX Runtime's
# float and int8 kernels (avx512 subsets, VNNI, BF16, AMX) dispatch on.
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

# AMD Zen generations by (family, model range), as Linux's arch/x86/kernel/cpu/amd.c (bsp_init_amd) sets
# X86_FEATURE_ZEN1..ZEN6.
AMD_MICROARCH: dict[int, tuple[tuple[int, int, str], ...]] = {
    0x17: ((0x00, 0x2F, "zen1"), (0x50, 0x5F, "zen1"), (0x30, 0x4F, "zen2"), (0x60, 0x7F, "zen2"),
           (0x90, 0x91, "zen2"), (0xA0, 0xAF, "zen2")),
    0x19: ((0x00, 0x0F, "zen3"), (0x20, 0x5F, "zen3"), (0x10, 0x1F, "zen4"), (0x60, 0xAF, "zen4")),
    0x1A: ((0x00, 0x2F, "zen5"), (0x40, 0x4F, "zen5"), (0x60, 0x7F, "zen5"), (0x50, 0x5F, "zen6"),
           (0x80, 0xAF, "zen6"), (0xC0, 0xCF, "zen6")),
}  # fmt: skip

# Intel family 6 server cores by model number, as Linux's arch/x86/include/asm/intel-family.h names them.
INTEL_MICROARCH: dict[int, str] = {
    0x3F: "haswell-x",
    0x4F: "broadwell-x",
    0x56: "broadwell-d",
    0x6A: "icelake-x",
    0x6C: "icelake-d",
    0x8F: "sapphirerapids",
    0xCF: "emeraldrapids",
    0xAD: "graniterapids",
    0xAE: "graniterapids-d",
}


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


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of a ``/proc/cpuinfo`` text (keys as written there)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def microarch(vendor: str, family: int | None, model: int | None, stepping: int | None = None) -> str:
    """The microarchitecture of a ``vendor`` (``amd``, ``intel``) CPU from its family and model (``fam<F>-m<M>``
    where this table does not know them, ``unknown`` without a family)."""
    if family is None or model is None:
        return "unknown"
    if vendor == "amd":
        for lo, hi, name in AMD_MICROARCH.get(family, ()):
            if lo <= model <= hi:
                return name
    if vendor == "intel" and family == 6:
        if model == 0x55:  # Skylake-SP, Cascade Lake and Cooper Lake share model 85; the stepping tells them apart
            if stepping is not None and stepping <= 4:
                return "skylake-sp"
            if stepping is not None and 5 <= stepping <= 7:
                return "cascadelake"
            if stepping is not None and 10 <= stepping <= 11:
                return "cooperlake"
        elif model in INTEL_MICROARCH:
            return INTEL_MICROARCH[model]
    return f"fam{family}-m{model}"


def simd_level(flags: list[str] | set[str]) -> str:
    """The highest of ``amx`` > ``avx512vnni`` > ``avx512`` > ``avx2`` the ``flags`` (/proc/cpuinfo names) give,
    else ``generic``. ``avx2`` needs FMA too, as the fused kNN's AVX2 kernel does."""
    have = set(flags)
    if {"amx_tile", "amx_int8"} <= have:
        return "amx"
    if {"avx512f", "avx512_vnni"} <= have:
        return "avx512vnni"
    if "avx512f" in have:
        return "avx512"
    if {"avx2", "fma"} <= have:
        return "avx2"
    return "generic"


def knn_dispatch(flags: list[str] | set[str], machine: str | None = None, env: str | None = None) -> str:
    """The kernel the fused kNN library runs here: ``POINTKD_KNN_ISA`` (``env``) where set to one this CPU has, else
    ``avx512`` with AVX2, FMA and AVX-512F, ``avx2`` with AVX2 and FMA, ``generic`` otherwise or off x86-64
    (``choose_kernels`` in ``pointkd/export/knn_op/csrc/knn_dispatch.cpp``, mirrored)."""
    machine = (machine or platform.machine()).lower()
    have = set(flags)
    avx2 = machine in ("x86_64", "amd64") and {"avx2", "fma"} <= have
    avx512 = avx2 and "avx512f" in have
    auto = "avx512" if avx512 else "avx2" if avx2 else "generic"
    want = env if env is not None else os.environ.get("POINTKD_KNN_ISA", "auto")
    if want == "generic" or (want == "avx2" and avx2) or (want == "avx512" and avx512):
        return want
    return auto if want == "auto" else f"error ({want} not on this CPU)"


def cpu_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, str]:
    """CPU 0's caches, e.g. ``{"L1d": "48K", "L1i": "32K", "L2": "1024K", "L3": "32768K"}`` (empty where sysfs has
    none)."""
    caches: dict[str, str] = {}
    base = Path(root)
    if not base.is_dir():
        return caches
    for index in sorted(base.glob("index*")):
        level, kind, size = (_read(str(index / f)) for f in ("level", "type", "size"))
        if not (level and kind and size):
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind.strip(), "")
        caches[f"L{level.strip()}{suffix}"] = size.strip()
    return caches


def memory_gb(meminfo: str | None = None) -> float | None:
    """Total memory in GB (10^9 bytes) from ``/proc/meminfo``, or None."""
    text = meminfo if meminfo is not None else _read("/proc/meminfo")
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text or "", flags=re.M)
    return round(int(match.group(1)) * 1024 / 1e9, 1) if match else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def cpu_identity(cpuinfo: str | None = None, machine: str | None = None) -> dict[str, Any]:
    """Vendor, family, model, stepping, microarchitecture, SIMD level, the flags of :data:`SIMD_FLAGS` it has and
    the fused kNN's kernel, from a ``/proc/cpuinfo`` text (this machine's by default; unknown fields are None)."""
    text = cpuinfo if cpuinfo is not None else (_read("/proc/cpuinfo") or "")
    fields = parse_cpuinfo(text)
    vendor_id = fields.get("vendor_id", "")
    vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(vendor_id, _slug(vendor_id) or None)
    family, model, stepping = (_int(fields.get(k)) for k in ("cpu family", "model", "stepping"))
    flags = sorted(set(fields.get("flags", "").split()) & set(SIMD_FLAGS))
    arch = microarch(vendor or "", family, model, stepping)
    if arch == "unknown" and not vendor_id:  # no x86 fields (an Arm CPU, or no /proc): name the machine instead
        arch = _slug(machine or platform.machine()) or "unknown"
    return {
        "vendor": vendor,
        "family": family,
        "model": model,
        "stepping": stepping,
        "microarch": arch,
        "simd": simd_level(flags),
        "flags": flags,
        "knn_dispatch": knn_dispatch(flags, machine),
    }


def device_info(threads: list[int] | None = None) -> dict[str, Any]:
    """The header of a report: CPU model and identity (:func:`cpu_identity`), caches, memory, logical cores, the
    thread counts measured, GPU, OS, versions."""
    from .. import __version__

    return {
        "cpu": cpu_model(),
        **cpu_identity(),
        "caches": cpu_caches(),
        "memory_gb": memory_gb(),
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
    """A folder name for one device: model name, microarchitecture, SIMD level, cores (and GPU), e.g.
    ``amd-epyc-zen5-avx512vnni-2c`` or ``intel-xeon-platinum-8480-sapphirerapids-amx-64c-nvidia-h100``. A header
    written before the CPU's identity was recorded (no ``simd``) keeps its old name (model name and cores only)."""
    name = _slug(info["cpu"]) or "cpu"
    vendor = info.get("vendor")
    if vendor and not name.startswith(vendor):
        name = f"{vendor}-{name}"
    parts = [name]
    if info.get("simd"):
        arch = info.get("microarch") or "unknown"
        if arch not in name.split("-"):
            parts.append(arch)
        parts.append(info["simd"])
    parts.append(f"{info['cores']}c")
    if info.get("gpu"):
        parts.append(_slug(info["gpu"]))
    return "-".join(parts)
