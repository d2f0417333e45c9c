"""Build ``libpointkd_knn.so``, the fused kNN custom operator, with the system C++ compiler (an optional extra).

Two inputs come from outside the repository, at build time, into caches outside it:

* **ONNX Runtime's C/C++ API headers.** The PyPI wheel ships none; the npm package
  ``com.github.asus4.onnxruntime@0.4.9`` does (``ORT_API_VERSION`` 29: ONNX Runtime >= 1.29 runs the library).
  :func:`ort_headers` runs ``npm pack`` into ``~/.cache/pointkd/ort-headers/``, checks the tarball against the
  sha1 and sha512 the registry published for that version (pinned below, so a changed or substituted tarball is
  refused), and extracts only the six headers the operator includes. ``POINTKD_ORT_HEADERS=<dir>`` uses headers
  already on disk instead (an offline machine).
* **The compiler**: ``$CXX`` or ``g++`` / ``c++`` on ``PATH``. Without one, :func:`build_knn_op` raises
  :class:`KnnOpUnavailable`; the stock ONNX artifacts never need it.

The library goes to ``~/.cache/pointkd/knn_op/<key>/libpointkd_knn.so``, ``key`` a hash of the sources, the
headers, the compiler's version and the flags, so an edit or a new compiler rebuilds and a second call is a lookup.
No ``-march=native``: each instruction-set kernel is its own translation unit with fixed flags (baseline x86-64,
AVX2+FMA, AVX-512F), and the library picks one at run time from the CPU it runs on, so one build runs anywhere
the compiler's target does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ...runtime.errors import KnnOpUnavailable

NPM_PACKAGE = "com.github.asus4.onnxruntime"
NPM_VERSION = "0.4.9"
# dist.shasum and dist.integrity of that version (`npm view com.github.asus4.onnxruntime@0.4.9 dist`).
NPM_SHA1 = "3659f34012db8208ffb7f67d704204cb08792fed"
NPM_SHA512 = "BkzxduSZ9IkeDP6Q8lz2TFU2ie7hSSvS7ZIfzMooExoq0CNzJnuuGaUJ7IsojBgqO4ouD1jXah8OYyJbCN29Fg=="
HEADER_DIR = "package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64_x86_64-simulator/onnxruntime.framework/Headers"
HEADERS = (
    "onnxruntime_c_api.h",
    "onnxruntime_cxx_api.h",
    "onnxruntime_cxx_inline.h",
    "onnxruntime_ep_c_api.h",
    "onnxruntime_error_code.h",
    "onnxruntime_float16.h",
)

LIBRARY = "libpointkd_knn.so"
C_LIBRARY = "libpointkd_knn_c.so"  # the kNN alone behind a C function (knn_c_api.cpp), no ONNX Runtime headers
CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("knn_op.cpp", "gather_max.cpp", "knn_dispatch.cpp", "kernel_generic.cpp")
C_SOURCES = ("knn_c_api.cpp", "knn_dispatch.cpp", "kernel_generic.cpp")
X86_SOURCES = {
    "kernel_avx2.cpp": ("-mavx2", "-mfma"),
    "kernel_avx512.cpp": ("-mavx512f", "-mavx512vl", "-mavx2", "-mfma"),
}
# -ffp-contract=off: the score's rounding (FMA or mul-then-add) is chosen explicitly, never by the optimiser.
CXXFLAGS = (
    "-O3",
    "-std=c++17",
    "-fPIC",
    "-fvisibility=hidden",
    "-ffp-contract=off",
    "-Wall",
    "-Wextra",
    "-Wno-maybe-uninitialized",
    "-Wno-psabi",
)
BUILD_REVISION = 2  # bump when this script changes how the library is built


def cache_root() -> Path:
    return Path(os.environ.get("POINTKD_CACHE") or Path.home() / ".cache" / "pointkd")


def _verify_tarball(path: Path) -> None:
    data = path.read_bytes()
    sha1 = hashlib.sha1(data).hexdigest()
    sha512 = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if sha1 != NPM_SHA1 or sha512 != NPM_SHA512:
        raise KnnOpUnavailable(
            f"{path} does not match {NPM_PACKAGE}@{NPM_VERSION} as published (sha1 {sha1}, expected {NPM_SHA1}); "
            "delete it to download again"
        )


def ort_headers(cache: Path | None = None) -> Path:
    """A folder holding :data:`HEADERS` (ONNX Runtime's C/C++ API, ``ORT_API_VERSION`` 29): ``$POINTKD_ORT_HEADERS``,
    else extracted once from the verified npm tarball into ``<cache>/ort-headers/<version>/``."""
    if env := os.environ.get("POINTKD_ORT_HEADERS"):
        folder = Path(env)
        missing = [h for h in HEADERS if not (folder / h).is_file()]
        if missing:
            raise KnnOpUnavailable(f"POINTKD_ORT_HEADERS={folder} lacks {missing}")
        return folder
    base = (cache or cache_root()) / "ort-headers"
    folder = base / NPM_VERSION
    if all((folder / h).is_file() for h in HEADERS):
        return folder
    base.mkdir(parents=True, exist_ok=True)
    tarball = base / f"{NPM_PACKAGE}-{NPM_VERSION}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise KnnOpUnavailable(
                f"the ONNX Runtime headers come from the npm package {NPM_PACKAGE}@{NPM_VERSION}, and npm is not "
                "installed (or set POINTKD_ORT_HEADERS to a folder with onnxruntime_cxx_api.h and its includes)"
            )
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            proc = subprocess.run(
                [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            got = Path(tmp) / tarball.name
            if proc.returncode != 0 or not got.is_file():
                raise KnnOpUnavailable(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed: {proc.stderr.strip()[-500:]}")
            _verify_tarball(got)
            got.replace(tarball)
    _verify_tarball(tarball)
    staging = Path(tempfile.mkdtemp(dir=base))
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name in HEADERS:
                member = tar.getmember(f"{HEADER_DIR}/{name}")
                if not member.isfile():
                    raise KnnOpUnavailable(f"{tarball}: {member.name} is not a regular file")
                src = tar.extractfile(member)
                assert src is not None
                (staging / name).write_bytes(src.read())
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def find_compiler(compiler: str | None = None) -> str:
    """The C++ compiler to use: ``compiler``, ``$CXX``, else ``g++`` or ``c++`` on ``PATH``."""
    for name in (compiler, os.environ.get("CXX"), "g++", "c++"):
        if name and (path := shutil.which(name)):
            return path
        if compiler is not None:
            break
    raise KnnOpUnavailable(
        f"no C++ compiler ({compiler or 'CXX, g++ or c++'} not found): the fused kNN operator needs one to be "
        "built (e.g. apt-get install g++); the stock ONNX model does not"
    )


def _sources(names: tuple[str, ...] = SOURCES) -> dict[str, tuple[str, ...]]:
    """Translation unit -> its extra flags, for this machine's architecture."""
    units = {name: () for name in names}
    if platform.machine().lower() in ("x86_64", "amd64"):
        units.update(X86_SOURCES)
    return units


def build_key(compiler: str, headers: Path | None, sources: tuple[str, ...] = SOURCES) -> str:
    """Hash of everything the library depends on: sources, headers, compiler version, flags, this script."""
    digest = hashlib.sha256(f"revision {BUILD_REVISION}\n".encode())
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    digest.update(version.encode())
    digest.update(repr((CXXFLAGS, sorted(_sources(sources).items()), platform.machine())).encode())
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".h", ".cpp"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for name in HEADERS if headers is not None else ():
        digest.update(name.encode() + b"\0" + (headers / name).read_bytes())
    return digest.hexdigest()[:16]


def build_knn_op(compiler: str | None = None, cache: Path | None = None, verbose: bool = False) -> Path:
    """Path of ``libpointkd_knn.so`` for this machine, compiled on the first call (tens of seconds), looked up after.

    Raises :class:`KnnOpUnavailable` when there is no compiler, no headers, or the compile fails. The library is
    written to a temporary folder and renamed into ``<cache>/knn_op/<key>/`` only when complete."""
    cxx = find_compiler(compiler)
    return _build(cxx, ort_headers(cache), SOURCES, LIBRARY, cache, verbose)


def build_knn_c(compiler: str | None = None, cache: Path | None = None, verbose: bool = False) -> Path:
    """Path of ``libpointkd_knn_c.so`` (the fused kNN as the C function ``pointkd_knn_topk``), compiled on the
    first call, looked up after. Needs only a C++ compiler (no ONNX Runtime headers); :class:`KnnOpUnavailable`
    without one or when the compile fails."""
    return _build(find_compiler(compiler), None, C_SOURCES, C_LIBRARY, cache, verbose)


def _build(
    cxx: str, headers: Path | None, sources: tuple[str, ...], name: str, cache: Path | None, verbose: bool
) -> Path:
    key = build_key(cxx, headers, sources)
    out_dir = (cache or cache_root()) / "knn_op" / key
    library = out_dir / name
    if library.is_file():
        return library
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"pointkd: compiling {name} with {cxx}, once per machine (about a minute)", file=sys.stderr, flush=True)
    include = ["-I", str(headers)] if headers is not None else []
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        objects = []
        for source, flags in _sources(sources).items():
            obj = Path(tmp) / (Path(source).stem + ".o")
            _run([cxx, *CXXFLAGS, *flags, *include, "-c", str(CSRC / source), "-o", str(obj)], verbose)
            objects.append(str(obj))
        staged = Path(tmp) / name
        _run([cxx, "-shared", "-o", str(staged), *objects, "-pthread", "-Wl,--no-undefined"], verbose)
        final = Path(tmp) / "done"
        final.mkdir()
        staged.replace(final / name)
        try:
            final.replace(out_dir)
        except OSError:  # another process finished the same build first
            if not library.is_file():
                raise
    return library


def _run(cmd: list[str], verbose: bool) -> None:
    if verbose:
        print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KnnOpUnavailable(f"building the fused kNN operator failed:\n$ {' '.join(cmd)}\n{proc.stderr[-3000:]}")
