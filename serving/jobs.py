"""The work done off the event loop, in a parse worker (process or thread): request bytes -> prepared clouds.

A job is ``run_job(name, meta, body) -> (info, clouds)``: ``meta`` is a small JSON-able dict (the content type or
file name, the model's input size, the server's limits), ``body`` the request's bytes, ``info`` a small JSON-able
dict for the answer and ``clouds`` float32 ``[N, 3]`` (an upload) or ``[B, N, 3]`` (a v2 infer). The same functions
run in a worker process (:mod:`serving.worker_main`) or a thread, so both give identical answers. Bad input raises
one of :data:`REQUEST_ERRORS`, which a worker process sends back by name (never pickled) and the parent re-raises.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from .kserve import MAX_CLOUDS, BadRequest, infer_request
from .parsing import UnsupportedMedia, json_values_limit, parse_body, parse_file
from .preprocess import BadCloud, prepare
from .strict_json import BadJSON, BadNumbers

REQUEST_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (BadCloud, BadJSON, BadNumbers, BadRequest, UnsupportedMedia)
}


def prepare_upload(meta: dict, body: bytes) -> tuple[dict, np.ndarray]:
    """A ``/predict`` body (``meta['filename']`` for a multipart upload, else ``meta['ctype']``) -> the number of
    points received and the prepared ``[N, 3]`` cloud."""
    max_points = meta["max_points"]
    if meta.get("filename") is not None:
        points = parse_file(body, meta["filename"], max_points)
    else:
        points = parse_body(meta.get("ctype", ""), body, max_points)
    received = int(points.shape[0]) if points.ndim else 0
    prepared = prepare(points, meta["num_points"], meta["min_points"], max_points, meta.get("outliers", "none"))
    return {"received": received}, prepared


def prepare_infer(meta: dict, body: bytes) -> tuple[dict, np.ndarray]:
    """A v2 infer body (JSON, or with binary tensor data after ``meta['json_length']`` bytes) -> the request's
    options and the prepared ``[B, N, 3]`` clouds."""
    limit = json_values_limit(meta["max_points"], MAX_CLOUDS)
    options, clouds = infer_request(body, meta.get("json_length"), limit)
    n, k, most, outliers = meta["num_points"], meta["min_points"], meta["max_points"], meta.get("outliers", "none")
    return options.to_dict(), np.stack([prepare(c, n, k, most, outliers) for c in clouds])


JOBS: dict[str, Callable[[dict, bytes], tuple[dict, np.ndarray]]] = {
    "upload": prepare_upload,
    "infer": prepare_infer,
}


def run_job(name: str, meta: dict, body: bytes) -> tuple[dict, np.ndarray]:
    return JOBS[name](meta, body)


def warm_up(num_points: int) -> None:
    """Every reader and the resampler once on a small valid input, so a fresh worker's first request is not slow
    (imports, open3d's first call) and its memory baseline includes what they load."""
    rng = np.random.default_rng(0)
    cloud = rng.standard_normal((2 * num_points, 3)).astype(np.float32)
    meta = {"num_points": num_points, "min_points": 1, "max_points": 1 << 20}
    rows = "\n".join(" ".join(f"{v:.6g}" for v in p) for p in cloud).encode()
    n = str(len(cloud)).encode()
    ply = b"ply\nformat ascii 1.0\nelement vertex " + n + b"\nproperty float x\nproperty float y\nproperty float z\n"
    pcd = b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH " + n + b"\nHEIGHT 1\n"
    pcd += b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS " + n + b"\nDATA ascii\n"
    off = b"OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
    npy = io.BytesIO()
    np.save(npy, cloud)
    files = {"c.xyz": rows, "c.ply": ply + b"end_header\n" + rows, "c.pcd": pcd + rows, "c.off": off}
    files["c.npy"] = npy.getvalue()
    for filename, body in files.items():
        prepare_upload({**meta, "filename": filename}, body)
    prepare_upload({**meta, "ctype": "application/octet-stream"}, cloud.tobytes())
    doc = b'{"inputs": [{"name": "points", "shape": [1, 2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 7]}]}'
    prepare_infer({**meta, "min_points": 1}, doc)
    prepare_upload({**meta, "ctype": "application/octet-stream", "outliers": "sor"}, cloud.tobytes())
