"""Plain ASGI middleware of the server (rather than ``@app.middleware("http")``, whose BaseHTTPMiddleware adds a task
group and a response re-stream to every request): the body limit, request metrics, HEAD on GET routes, and the
in-flight request limit."""

from __future__ import annotations

import asyncio
import tempfile
import time

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from .access import HEALTH_PATHS
from .metrics import ServerMetrics

CLIENT_CLOSED = "499"  # nginx's status for a request whose client went away before the answer


class BodyLimit:
    """Reads the request body up to ``limit`` bytes and answers 413 beyond it, before anything parses it (at once
    from a Content-Length, else as a chunked body streams in); the app then sees the body. A client that
    disconnects mid-upload gets no answer and is counted as :data:`CLIENT_CLOSED`.

    A body past ``spool`` bytes (0: never) goes on to a temporary file as it arrives, rather than into memory: an
    upload still arriving holds at most ``spool`` bytes of RSS, and the complete body is read back once (one copy,
    where joining the chunks held two at the end)."""

    def __init__(self, app, limit: int, spool: int = 0):
        self.app = app
        self.limit = limit
        self.spool = spool

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._reject(scope, receive, send, int(length))
        chunks, size, more, spooled = [], 0, True, None
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    scope.setdefault("state", {})["client_closed"] = True
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    return await self._reject(scope, receive, send, size)
                if spooled is None and self.spool and size > self.spool:
                    spooled = tempfile.TemporaryFile(prefix="pointkd-body-")  # noqa: SIM115 (closed below)
                    spooled.writelines(chunks)
                    chunks.clear()
                if spooled is not None:
                    spooled.write(chunk)
                else:
                    chunks.append(chunk)
                more = message.get("more_body", False)
            if spooled is not None:
                spooled.seek(0)
                body = await asyncio.get_running_loop().run_in_executor(None, spooled.read)
            else:
                body = b"".join(chunks)
                chunks.clear()  # the joined body is the only copy while the app runs
        finally:
            if spooled is not None:
                spooled.close()
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send, size: int) -> None:
        message = f"request body of {size}+ bytes is over this server's limit of {self.limit} bytes"
        await JSONResponse({"error": message}, status_code=413)(scope, receive, send)


class RequestMetrics:
    """Counts requests by endpoint (the matched route's path) and status, and times them. A request that ends
    without an answer because its client left is counted as 499, apart from server errors (500)."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = None

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_status)
            failed = False
        except ClientDisconnect:
            failed = False
            scope.setdefault("state", {})["client_closed"] = True
        finally:
            if status is None:
                closed = (scope.get("state") or {}).get("client_closed")
                status = CLIENT_CLOSED if closed and not failed else "500"
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(endpoint, status).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


class HeadAsGet:
    """HEAD is answered as GET without the body (HTTP's rule), on every GET route; the server (uvicorn) still sees
    the request as HEAD."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def send_headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, receive, send_headers_only)
        finally:  # what routing put in the scope (the matched route, for the metrics' endpoint label)
            scope.update({k: v for k, v in inner.items() if k != "method"})


class InFlightLimit:
    """At most ``limit`` requests in the app at once (503 with ``Retry-After`` beyond); health is never refused."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.limit or scope["path"] in HEALTH_PATHS:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            message = f"the server is working on {self.limit} requests, its limit; retry shortly"
            response = JSONResponse({"error": message}, status_code=503, headers={"retry-after": "1"})
            return await response(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
