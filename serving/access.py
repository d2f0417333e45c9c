"""Access control: API keys (``Authorization: Bearer K`` or ``X-API-Key: K``), and where they come from.

:class:`ApiKeyGuard` is plain ASGI middleware that answers 401 (``{"error": ...}``, ``WWW-Authenticate: Bearer``)
before a guarded request's body is read. Every path is guarded except liveness and readiness (unless
``guard_health``) and ``/metrics`` when ``open_metrics``. The key a client sends is compared with every configured key
by :func:`hmac.compare_digest` (no early exit on the first match, so the time does not say which key is close).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from fastapi.responses import JSONResponse

HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
METRICS_PATH = "/metrics"
ENV_KEY = "POINTKD_API_KEY"


def load_api_keys(
    keys: Iterable[str] = (), files: Iterable[str | os.PathLike] = (), env: bool = True
) -> tuple[str, ...]:
    """The server's keys: ``keys`` (``--api-key``), each line of each of ``files`` (``--api-key-file``; blank lines
    and ``#`` comments skipped) and ``$POINTKD_API_KEY`` when ``env``. ValueError on a key with whitespace inside."""
    found = [k.strip() for k in keys]
    for f in files:
        lines = Path(f).read_text().splitlines()
        found += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if env and os.environ.get(ENV_KEY, "").strip():
        found.append(os.environ[ENV_KEY].strip())
    for k in found:
        if not k or any(c.isspace() for c in k):
            raise ValueError("an API key must be non-empty and hold no whitespace")
    return tuple(dict.fromkeys(found))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries: ``Authorization: Bearer K`` (the scheme case-insensitive) or ``X-API-Key: K``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.strip()
    return None


def key_matches(given: bytes, keys: tuple[bytes, ...]) -> bool:
    """Constant-time comparison of ``given`` with each key; every key is compared whatever the outcome."""
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(given, k)
    return ok


class ApiKeyGuard:
    """Answers 401 to a guarded request without a valid key; lets through open paths and requests with one."""

    def __init__(self, app, keys: tuple[str, ...], guard_health: bool = False, open_metrics: bool = False):
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.open_paths = (set() if guard_health else set(HEALTH_PATHS)) | ({METRICS_PATH} if open_metrics else set())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.keys or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        given = presented_key(scope.get("headers") or [])
        if given is not None and key_matches(given, self.keys):
            return await self.app(scope, receive, send)
        message = "this server needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        if given is not None:
            message = "the API key is not valid"
        headers = {"www-authenticate": 'Bearer realm="pointkd"'}
        await JSONResponse({"error": message}, status_code=401, headers=headers)(scope, receive, send)
