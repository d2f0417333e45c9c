"""Start ``pointkd serve`` in a child process and wait until it is ready; stop it. Used by the load test and the
demo, which talk to the server over real HTTP as a client would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from pointkd.process import exit_with_parent


def server_stack(loop: str = "auto", http: str = "auto") -> tuple[str, str]:
    """The event loop and HTTP parser uvicorn runs for ``--loop`` / ``--http``: ``auto`` is uvloop and httptools
    (C implementations, in the serve extra) when importable, else asyncio and h11 (pure Python)."""
    if loop == "auto":
        loop = "uvloop" if find_spec("uvloop") else "asyncio"
    if http == "auto":
        http = "httptools" if find_spec("httptools") else "h11"
    return loop, http


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    artifact: str | os.PathLike,
    port: int,
    *serve_args: str,
    ready_timeout_s: float = 120.0,
    quiet: bool = False,
    tls_verify: object = None,
    headers: dict | None = None,
) -> subprocess.Popen:
    """``pointkd serve ARTIFACT --port PORT *serve_args`` in its own session; returns once ``/v2/health/ready``
    answers 200, raises RuntimeError if the server exits or is not ready in time. The server gets SIGTERM (a
    graceful shutdown) if this process dies without calling :func:`stop_server`. ``tls_verify`` (an
    ``ssl.SSLContext`` or a CA file): poll over HTTPS with it; ``headers``: sent with the poll (an API key)."""
    import httpx

    cmd = [sys.executable, "-m", "pointkd", "serve", str(Path(artifact)), "--port", str(port), *serve_args]
    out = subprocess.DEVNULL if quiet else None
    server = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=out, preexec_fn=exit_with_parent())
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        try:
            scheme = "http" if tls_verify is None else "https"
            url = f"{scheme}://127.0.0.1:{port}/v2/health/ready"
            if httpx.get(url, timeout=1, verify=tls_verify or True, headers=headers).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"the server did not become ready in {ready_timeout_s:.0f} s")


def stop_server(server: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group (uvicorn shuts down gracefully), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass
