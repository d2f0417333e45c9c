"""Device identity: fake /proc/cpuinfo texts of a Zen 3, Zen 4 and Zen 5 EPYC and an AMX Xeon get the
microarchitecture, SIMD level, fused-kNN kernel and folder id each should; two different CPUs behind the same model
name never share an id."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointkd.bench import device
from pointkd.bench.device import cpu_identity, device_id, knn_dispatch, microarch, simd_level

BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ssse3 sse4_1 sse4_2 popcnt aes xsave avx f16c"
AVX2 = f"{BASE} fma bmi1 avx2 bmi2"
AVX512 = f"{AVX2} avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 avx512vbmi"


def cpuinfo(vendor: str, family: int, model: int, stepping: int, name: str, flags: str, cpus: int = 2) -> str:
    block = (
        "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        "model name\t: {name}\nstepping\t: {stepping}\ncache size\t: 512 KB\nflags\t\t: {flags}\nbogomips\t: 5000\n"
    )
    return "\n".join(
        block.format(i=i, vendor=vendor, family=family, model=model, name=name, stepping=stepping, flags=flags)
        for i in range(cpus)
    )


ZEN3 = cpuinfo("AuthenticAMD", 25, 1, 1, "AMD EPYC", AVX2 + " vaes vpclmulqdq")  # Milan: no AVX-512, no VNNI
ZEN3_7B13 = cpuinfo("AuthenticAMD", 25, 1, 1, "AMD EPYC 7B13 64-Core Processor", AVX2)
ZEN4 = cpuinfo("AuthenticAMD", 25, 17, 1, "AMD EPYC 9654 96-Core Processor", AVX512)  # Genoa
ZEN5 = cpuinfo("AuthenticAMD", 26, 2, 1, "AMD EPYC", AVX512 + " avx_vnni avx512_vp2intersect")  # Turin
SPR = cpuinfo(
    "GenuineIntel", 6, 143, 8, "Intel(R) Xeon(R) Platinum 8480+", AVX512 + " avx512_fp16 amx_bf16 amx_tile amx_int8"
)


@pytest.mark.parametrize(
    "text, arch, simd, kernel, flags",
    [
        (ZEN3, "zen3", "avx2", "avx2", ["avx", "avx2", "f16c", "fma", "sse4_2"]),
        (ZEN4, "zen4", "avx512vnni", "avx512", None),
        (ZEN5, "zen5", "avx512vnni", "avx512", None),
        (SPR, "sapphirerapids", "amx", "avx512", None),
    ],
)
def test_cpu_identity_of_each_fake_cpuinfo(text, arch, simd, kernel, flags, monkeypatch):
    monkeypatch.delenv("POINTKD_KNN_ISA", raising=False)
    ident = cpu_identity(text, machine="x86_64")
    assert (ident["microarch"], ident["simd"], ident["knn_dispatch"]) == (arch, simd, kernel)
    assert ident["vendor"] in ("amd", "intel") and ident["family"] in (6, 25, 26) and ident["stepping"] is not None
    assert set(ident["flags"]) <= set(device.SIMD_FLAGS) and ident["flags"] == sorted(ident["flags"])
    if flags is not None:
        assert ident["flags"] == flags
    assert ("amx_int8" in ident["flags"]) == (simd == "amx")


def header(text: str, cores: int = 2, gpu: str | None = None) -> dict:
    return {"cpu": device.parse_cpuinfo(text)["model name"], "cores": cores, "gpu": gpu, **cpu_identity(text)}


def test_device_ids_name_vendor_model_microarch_simd_and_cores(monkeypatch):
    monkeypatch.delenv("POINTKD_KNN_ISA", raising=False)
    assert device_id(header(ZEN3)) == "amd-epyc-zen3-avx2-2c"
    assert device_id(header(ZEN3_7B13)) == "amd-epyc-7b13-zen3-avx2-2c"
    assert device_id(header(ZEN4, 4)) == "amd-epyc-9654-zen4-avx512vnni-4c"
    assert device_id(header(ZEN5)) == "amd-epyc-zen5-avx512vnni-2c"
    assert device_id(header(SPR, 64, "NVIDIA H100 80GB HBM3")) == (
        "intel-xeon-platinum-8480-sapphirerapids-amx-64c-nvidia-h100-80gb-hbm3"
    )


def test_same_cpu_same_id_and_different_cpus_never_share_one():
    texts = [ZEN3, ZEN4, ZEN5, SPR, cpuinfo("AuthenticAMD", 25, 17, 1, "AMD EPYC", AVX512)]
    ids = [device_id(header(t)) for t in texts]
    assert len(set(ids)) == len(ids)  # a Zen 3, a Zen 4 and a Zen 5 all named "AMD EPYC" included
    assert device_id(header(ZEN5)) == device_id(header(ZEN5.replace("5000", "5192.24")))  # bogomips varies per boot
    # a virtual machine that hides AVX-512 of the same Zen 4 is a different device for every kernel that runs
    assert device_id(header(cpuinfo("AuthenticAMD", 25, 17, 1, "AMD EPYC", AVX2))) == "amd-epyc-zen4-avx2-2c"


def test_legacy_headers_keep_their_old_folder_names():
    assert device_id({"cpu": "AMD EPYC", "cores": 2}) == "amd-epyc-2c"
    assert device_id({"cpu": "AMD EPYC 7B13 64-Core Processor", "cores": 2}) == "amd-epyc-7b13-2c"


@pytest.mark.parametrize(
    "vendor, family, model, stepping, want",
    [
        ("amd", 23, 0x31, 0, "zen2"),  # Rome
        ("amd", 25, 0x0F, 0, "zen3"),
        ("amd", 25, 0x21, 0, "zen3"),  # Vermeer
        ("amd", 25, 0x5F, 0, "zen3"),
        ("amd", 25, 0x10, 0, "zen4"),
        ("amd", 25, 0x61, 0, "zen4"),  # Raphael
        ("amd", 25, 0xA0, 0, "zen4"),  # Bergamo
        ("amd", 26, 0x02, 1, "zen5"),  # Turin
        ("amd", 26, 0x11, 0, "zen5"),  # Turin dense
        ("amd", 26, 0x30, 0, "fam26-m48"),  # no Zen generation in Linux's table: family and model
        ("amd", 27, 0x00, 0, "fam27-m0"),
        ("intel", 6, 143, 8, "sapphirerapids"),
        ("intel", 6, 207, 2, "emeraldrapids"),
        ("intel", 6, 173, 1, "graniterapids"),
        ("intel", 6, 106, 6, "icelake-x"),
        ("intel", 6, 108, 1, "icelake-d"),
        ("intel", 6, 85, 4, "skylake-sp"),
        ("intel", 6, 85, 7, "cascadelake"),
        ("intel", 6, 85, 11, "cooperlake"),
        ("intel", 6, 85, 8, "fam6-m85"),
        ("intel", 6, 151, 2, "fam6-m151"),  # Alder Lake: not in the server table
        ("amd", None, None, None, "unknown"),
    ],
)
def test_microarch_table(vendor, family, model, stepping, want):
    assert microarch(vendor, family, model, stepping) == want


def test_simd_level_and_knn_dispatch_follow_the_flags():
    assert simd_level([]) == "generic"
    assert simd_level(["avx2"]) == "generic"  # the AVX2 kernels also need FMA
    assert simd_level(["avx2", "fma"]) == "avx2"
    assert simd_level(["avx2", "fma", "avx_vnni"]) == "avx2"
    assert simd_level(["avx2", "fma", "avx512f"]) == "avx512"
    assert simd_level(["avx2", "fma", "avx512f", "avx512_vnni"]) == "avx512vnni"
    assert simd_level(["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]) == "amx"
    full = ["avx2", "fma", "avx512f"]
    assert knn_dispatch(full, "x86_64", "auto") == "avx512"
    assert knn_dispatch(["avx2", "fma"], "x86_64", "auto") == "avx2"
    assert knn_dispatch(["avx2"], "x86_64", "auto") == "generic"
    assert knn_dispatch(full, "aarch64", "auto") == "generic"
    assert knn_dispatch(full, "x86_64", "avx2") == "avx2" and knn_dispatch(full, "x86_64", "generic") == "generic"
    assert knn_dispatch(["avx2", "fma"], "x86_64", "avx512").startswith("error")


def test_knn_dispatch_mirrors_the_library_s_choice():
    """The C++ dispatch tests the same flags, in the same order, as :func:`knn_dispatch`."""
    root = Path(device.__file__).resolve().parents[1] / "export" / "knn_op" / "csrc" / "knn_dispatch.cpp"
    src = root.read_text()
    assert 'const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");' in src
    assert 'const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");' in src
    assert "avx512 ? knn_kernels_avx512() : avx2 ? knn_kernels_avx2() : knn_kernels_generic()" in src


def test_device_info_records_the_identity_caches_and_memory(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1M")]):
        (cache / f"index{i}").mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (cache / f"index{i}" / name).write_text(f"{value}\n")
    assert device.cpu_caches(str(cache)) == {"L1d": "48K", "L1i": "32K", "L2": "1M"}
    assert device.cpu_caches(str(tmp_path / "none")) == {}
    assert device.memory_gb("MemTotal:       24683772 kB\nMemFree: 1 kB\n") == 25.3
    assert device.memory_gb("") is None
    files = {"/proc/cpuinfo": ZEN5, "/proc/meminfo": "MemTotal: 1000000 kB\n"}
    monkeypatch.setattr(device, "_read", lambda path: files.get(path))
    monkeypatch.setattr(device, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(device.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("POINTKD_KNN_ISA", raising=False)
    info = device.device_info([1, 2])
    assert (info["vendor"], info["family"], info["model"], info["stepping"]) == ("amd", 26, 2, 1)
    assert info["microarch"] == "zen5" and info["simd"] == "avx512vnni" and info["knn_dispatch"] == "avx512"
    assert "avx512_vnni" in info["flags"] and "avx512_bf16" in info["flags"] and info["memory_gb"] == 1.0
    assert isinstance(info["caches"], dict) and info["threads"] == [1, 2]
    assert device_id({**info, "cores": 2, "gpu": None}) == "amd-epyc-zen5-avx512vnni-2c"
